-- Event triggers (issue: events): which events start which application.
CREATE TABLE triggers (
    name        TEXT PRIMARY KEY,
    application TEXT NOT NULL,
    event       TEXT NOT NULL,
    company_id  BIGINT,
    filter      TEXT NOT NULL,
    arguments   TEXT NOT NULL,
    enabled     BOOLEAN NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
