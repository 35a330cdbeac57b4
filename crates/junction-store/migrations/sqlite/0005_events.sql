-- Event ingestion (issue: events). Companies own Custom CD services and the
-- CI/CD jobs their agents report (spec 002); tokens may be bound to one.
CREATE TABLE companies (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
CREATE TABLE cicd_services (
    id         INTEGER PRIMARY KEY,
    company_id INTEGER NOT NULL REFERENCES companies (id),
    name       TEXT NOT NULL,
    kind       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (company_id, name)
);
-- Spec 002's "service user": who triggered a job, created on first sight.
CREATE TABLE service_users (
    id         INTEGER PRIMARY KEY,
    company_id INTEGER NOT NULL REFERENCES companies (id),
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (company_id, name)
);
CREATE TABLE cicd_jobs (
    id              INTEGER PRIMARY KEY,
    company_id      INTEGER NOT NULL REFERENCES companies (id),
    service_id      INTEGER NOT NULL REFERENCES cicd_services (id),
    job_id          TEXT NOT NULL,
    commit_sha      TEXT NOT NULL,
    status          TEXT NOT NULL,
    repo_id         TEXT,
    repo_name       TEXT,
    triggered_by    TEXT NOT NULL,
    service_user_id INTEGER NOT NULL REFERENCES service_users (id),
    job_type        TEXT NOT NULL,
    job_start_time  BIGINT NOT NULL,
    job_duration    BIGINT NOT NULL,
    optional        TEXT NOT NULL,
    received_at     BIGINT NOT NULL
);
CREATE INDEX cicd_jobs_by_company ON cicd_jobs (company_id, job_start_time, id);
