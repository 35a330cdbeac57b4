-- The durable queue (issue: engine). A task waits on the number of its
-- inputs that have not succeeded; the last one to succeed makes it PENDING.
ALTER TABLE tasks ADD COLUMN waiting_on BIGINT NOT NULL DEFAULT 0;
-- Trigger context (spec 000 plutoraValues) and a run-level error.
ALTER TABLE runs ADD COLUMN context TEXT;
ALTER TABLE runs ADD COLUMN error TEXT;
CREATE INDEX runs_by_created ON runs (created_at);
