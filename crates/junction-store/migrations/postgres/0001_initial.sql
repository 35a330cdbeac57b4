-- Junction schema v1 (PostgreSQL). Names collate as bytes ("C"), as in SQLite,
-- so listings sort the same on both backends. Times are milliseconds since the Unix epoch;
-- JSON documents are TEXT. The SQLite twin of this file must stay in step.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE tokens (
    id           TEXT PRIMARY KEY,
    name         TEXT COLLATE "C" NOT NULL,
    role         TEXT NOT NULL,
    digest       BYTEA NOT NULL UNIQUE,
    company_id   TEXT,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT
);

-- Sealed values (encrypted configuration entries, masked parameters and
-- variables). The clear text never reaches a table.
CREATE TABLE secrets (
    scope      TEXT NOT NULL,
    name       TEXT COLLATE "C" NOT NULL,
    sealed     BYTEA NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (scope, name)
);

CREATE TABLE steps (
    name           TEXT COLLATE "C" PRIMARY KEY,
    latest_version BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

-- Kept when a step is deleted: runs refer to the version they ran.
CREATE TABLE step_versions (
    name        TEXT COLLATE "C" NOT NULL,
    version     BIGINT NOT NULL,
    language    TEXT NOT NULL,
    source      TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    description TEXT,
    parameters  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE applications (
    name            TEXT COLLATE "C" PRIMARY KEY,
    latest_revision BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

-- Kept when an application is deleted: runs refer to the revision they ran.
CREATE TABLE application_revisions (
    name       TEXT COLLATE "C" NOT NULL,
    revision   BIGINT NOT NULL,
    document   TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (name, revision)
);

CREATE TABLE configurations (
    name       TEXT COLLATE "C" PRIMARY KEY,
    document   TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- The engine's tables. They are created now so the engine adds columns,
-- not a second design.
CREATE TABLE runs (
    id              TEXT PRIMARY KEY,
    application     TEXT NOT NULL,
    app_revision    BIGINT NOT NULL,
    state           TEXT NOT NULL,
    queue           TEXT NOT NULL,
    trigger_kind    TEXT NOT NULL,
    triggered_by    TEXT,
    configuration   TEXT,
    params          TEXT NOT NULL,
    sealed_params   BYTEA,
    log_level       BIGINT,
    idempotency_key TEXT,
    created_at      BIGINT NOT NULL,
    started_at      BIGINT,
    finished_at     BIGINT
);
CREATE INDEX runs_by_application ON runs (application, created_at);
CREATE INDEX runs_by_state ON runs (state);
CREATE UNIQUE INDEX runs_by_idempotency_key ON runs (idempotency_key) WHERE idempotency_key IS NOT NULL;

CREATE TABLE tasks (
    id               TEXT PRIMARY KEY,
    run_id           TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step_name        TEXT NOT NULL,
    step_index       BIGINT NOT NULL,
    step_file        TEXT NOT NULL,
    step_version     BIGINT,
    state            TEXT NOT NULL,
    queue            TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    due_at           BIGINT NOT NULL,
    lease_owner      TEXT,
    lease_expires_at BIGINT,
    output           TEXT,
    result           TEXT,
    traceback        TEXT,
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT
);
CREATE INDEX tasks_claimable ON tasks (queue, state, due_at);
CREATE INDEX tasks_by_run ON tasks (run_id, step_index);
CREATE INDEX tasks_by_lease ON tasks (state, lease_expires_at);

CREATE TABLE task_logs (
    id      BIGSERIAL PRIMARY KEY,
    run_id  TEXT NOT NULL,
    task_id TEXT NOT NULL,
    ts      BIGINT NOT NULL,
    level   TEXT NOT NULL,
    line    TEXT NOT NULL
);
CREATE INDEX task_logs_by_task ON task_logs (task_id, id);
CREATE INDEX task_logs_by_run ON task_logs (run_id, id);
CREATE INDEX task_logs_by_ts ON task_logs (ts);

CREATE TABLE schedules (
    id           TEXT PRIMARY KEY,
    application  TEXT NOT NULL,
    entry_id     TEXT,
    kind         TEXT NOT NULL,
    spec         TEXT NOT NULL,
    timezone     TEXT NOT NULL DEFAULT 'UTC',
    params       TEXT NOT NULL DEFAULT '{}',
    enabled      BOOLEAN NOT NULL DEFAULT TRUE,
    next_fire_at BIGINT,
    last_fire_at BIGINT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX schedules_due ON schedules (enabled, next_fire_at);
CREATE INDEX schedules_by_application ON schedules (application);
