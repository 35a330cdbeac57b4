-- What the runtime learned by loading a step version (issue: runtimes).
ALTER TABLE step_versions ADD COLUMN friendly_name TEXT;
ALTER TABLE step_versions ADD COLUMN declared_version TEXT;
