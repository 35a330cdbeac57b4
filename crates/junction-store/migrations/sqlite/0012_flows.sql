-- Record flows (spec 001). A flow's documents are immutable revisions; the
-- connections' `encrypted` values are sealed in `secrets` under the scope
-- `flow:NAME` (entry `CONNECTION.KEY`) and the stored document holds
-- "********" in their place. A flow run is a run (application `.flow.NAME`)
-- with one task; `flow_progress` is its checkpoint, written in the same
-- transaction as each page's errors, so a resumed run starts after the
-- last page that went through every processor.
CREATE TABLE flows (
    name            TEXT PRIMARY KEY,
    latest_revision INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE TABLE flow_revisions (
    name       TEXT NOT NULL,
    revision   INTEGER NOT NULL,
    document   TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (name, revision)
);
-- Per export: the start of the last successful run (delta exports).
CREATE TABLE flow_exports (
    flow           TEXT NOT NULL,
    export         TEXT NOT NULL,
    last_export_at INTEGER NOT NULL,
    PRIMARY KEY (flow, export)
);
-- Connections a source or target took offline (401/403, connectionOffline).
CREATE TABLE flow_connections (
    flow       TEXT NOT NULL,
    connection TEXT NOT NULL,
    offline_at INTEGER NOT NULL,
    reason     TEXT NOT NULL,
    PRIMARY KEY (flow, connection)
);
CREATE TABLE flow_progress (
    run_id     TEXT PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    flow       TEXT NOT NULL,
    generator  INTEGER NOT NULL,
    state      TEXT,
    next_page  INTEGER NOT NULL,
    counters   TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE flow_errors (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    flow           TEXT NOT NULL,
    step           TEXT NOT NULL,
    run_id         TEXT NOT NULL,
    occurred_at    INTEGER NOT NULL,
    source         TEXT NOT NULL,
    code           TEXT NOT NULL,
    message        TEXT NOT NULL,
    trace_key      TEXT NOT NULL,
    retry_data_key TEXT,
    o_index        INTEGER NOT NULL,
    resolved_at    INTEGER,
    resolved_by    TEXT
);
CREATE INDEX flow_errors_by_step ON flow_errors (flow, step, id);
CREATE INDEX flow_errors_open_by_trace ON flow_errors (flow, step, trace_key) WHERE resolved_at IS NULL;
CREATE INDEX flow_errors_by_retry_key ON flow_errors (retry_data_key);
-- The record as it entered the step that failed it: a retry starts there.
CREATE TABLE flow_retry_data (
    retry_data_key TEXT PRIMARY KEY,
    flow           TEXT NOT NULL,
    step           TEXT NOT NULL,
    data           TEXT NOT NULL,
    updated_at     INTEGER NOT NULL
);
CREATE INDEX flow_retry_data_by_step ON flow_retry_data (flow, step);
