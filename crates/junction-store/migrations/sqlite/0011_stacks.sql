-- Stacks (hosted integrator.io extension functions): a stack's current
-- settings and system token (its SHA-256 digest only), its immutable
-- versions with the uploaded bytes, and the record of its calls. Encrypted
-- env values are sealed in `secrets` under the scope `stack:NAME`; `env`
-- holds the plain entries and only the names of the encrypted ones.
CREATE TABLE stacks (
    name             TEXT PRIMARY KEY,
    latest_version   BIGINT NOT NULL,
    token_digest     BLOB NOT NULL,
    token_created_at BIGINT NOT NULL,
    timeout_seconds  BIGINT NOT NULL,
    max_concurrency  BIGINT NOT NULL,
    env              TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
-- Kept when the stack is deleted: calls name the version they ran, and a
-- re-created stack continues the numbering.
CREATE TABLE stack_versions (
    name       TEXT NOT NULL,
    version    BIGINT NOT NULL,
    sha256     TEXT NOT NULL,
    config     TEXT NOT NULL,
    format     TEXT NOT NULL,
    archive    BLOB NOT NULL,
    size       BIGINT NOT NULL,
    functions  TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE stack_calls (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    stack          TEXT NOT NULL,
    version        BIGINT NOT NULL,
    started_at     BIGINT NOT NULL,
    duration_ms    BIGINT NOT NULL,
    function       TEXT NOT NULL,
    kind           TEXT,
    target         TEXT,
    integration_id TEXT,
    flow_id        TEXT,
    trace_id       TEXT,
    outcome        TEXT NOT NULL,
    error_code     TEXT,
    response_size  BIGINT NOT NULL,
    log            TEXT NOT NULL
);
CREATE INDEX stack_calls_by_stack ON stack_calls (stack, id);
