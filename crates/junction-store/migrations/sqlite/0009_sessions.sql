-- Web UI sign-in (issue: web UI): people with a password, and browser
-- sessions (the cookie's SHA-256 digest, never the cookie itself).
CREATE TABLE users (
    name          TEXT PRIMARY KEY,
    role          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE TABLE sessions (
    digest     BLOB PRIMARY KEY,
    subject    TEXT NOT NULL,
    role       TEXT NOT NULL,
    token_id   TEXT,
    csrf       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
