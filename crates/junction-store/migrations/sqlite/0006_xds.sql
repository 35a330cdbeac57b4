-- Extensible Data Sources (spec 003). A source is a tool instance with an
-- association key; schemas are registered per (schema_id, version) and
-- never change; messages with the same remote_id (per source and schema)
-- are one activity, each message one of its sub-events; a change of an
-- important field adds an entry to the activity stream. Refused schema
-- and activity messages are kept with their reason.
CREATE TABLE xds_sources (
    id              INTEGER PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    association_key TEXT NOT NULL UNIQUE,
    schema_id       TEXT,
    created_at      BIGINT NOT NULL,
    associated_at   BIGINT
);
CREATE TABLE xds_schemas (
    schema_id     TEXT NOT NULL,
    version       BIGINT NOT NULL,
    name          TEXT NOT NULL,
    event_time    BIGINT NOT NULL,
    doc           TEXT NOT NULL,
    registered_at BIGINT NOT NULL,
    PRIMARY KEY (schema_id, version)
);
CREATE TABLE xds_activities (
    id               INTEGER PRIMARY KEY,
    source_id        INTEGER NOT NULL REFERENCES xds_sources (id),
    schema_id        TEXT NOT NULL,
    remote_id        TEXT NOT NULL,
    schema_version   BIGINT NOT NULL,
    status_type      TEXT,
    fields           TEXT NOT NULL,
    rendered         TEXT NOT NULL,
    first_event_time BIGINT NOT NULL,
    event_time       BIGINT NOT NULL,
    sub_event_count  BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    UNIQUE (source_id, schema_id, remote_id)
);
CREATE INDEX xds_activities_by_update ON xds_activities (updated_at, id);
CREATE TABLE xds_sub_events (
    id             INTEGER PRIMARY KEY,
    activity_id    INTEGER NOT NULL REFERENCES xds_activities (id),
    schema_version BIGINT NOT NULL,
    event_time     BIGINT NOT NULL,
    fields         TEXT NOT NULL,
    rendered       TEXT NOT NULL,
    received_at    BIGINT NOT NULL
);
CREATE INDEX xds_sub_events_by_activity ON xds_sub_events (activity_id, event_time, id);
CREATE TABLE xds_stream (
    id             INTEGER PRIMARY KEY,
    activity_id    INTEGER NOT NULL REFERENCES xds_activities (id),
    sub_event_id   INTEGER NOT NULL REFERENCES xds_sub_events (id),
    source_id      INTEGER NOT NULL REFERENCES xds_sources (id),
    schema_id      TEXT NOT NULL,
    schema_version BIGINT NOT NULL,
    remote_id      TEXT NOT NULL,
    event_time     BIGINT NOT NULL,
    changed        TEXT NOT NULL,
    rendered       TEXT NOT NULL,
    created_at     BIGINT NOT NULL
);
CREATE INDEX xds_stream_by_activity ON xds_stream (activity_id, id);
CREATE TABLE xds_rejections (
    id             INTEGER PRIMARY KEY,
    kind           TEXT NOT NULL,
    status         BIGINT NOT NULL,
    code           TEXT NOT NULL,
    reason         TEXT NOT NULL,
    details        TEXT NOT NULL,
    source_id      BIGINT,
    schema_id      TEXT,
    schema_version BIGINT,
    body           TEXT NOT NULL,
    body_bytes     BIGINT NOT NULL,
    received_at    BIGINT NOT NULL
);
