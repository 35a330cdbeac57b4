-- The scheduler (issue: scheduler, jobs grid). A schedule remembers why its
-- last tick did not start a run, and which run its last tick started.
ALTER TABLE schedules ADD COLUMN last_error TEXT;
ALTER TABLE schedules ADD COLUMN last_run_id TEXT;
-- "Is a run of this job still going?" and "its previous run" are asked on
-- every tick and every task start.
CREATE INDEX runs_by_application_state ON runs (application, state);
-- The due query pages in (next_fire_at, id) order.
CREATE INDEX schedules_due_order ON schedules (enabled, next_fire_at, id);
