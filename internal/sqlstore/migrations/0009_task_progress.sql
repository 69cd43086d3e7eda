-- How far a running task is (JSON: done, total, unit), as its runner last
-- reported it: a session shows its current step's progress from it.
ALTER TABLE tasks ADD COLUMN progress TEXT NOT NULL DEFAULT '';
