-- Saved step data that held a secret of its run: `output` keeps the copy
-- shown (the secrets masked), this the full data sealed to the task's slot
-- (`task:ID` / `output`) for the steps that read it.
ALTER TABLE tasks ADD COLUMN sealed_output BLOB;
