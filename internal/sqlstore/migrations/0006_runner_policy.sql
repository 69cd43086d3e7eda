-- The data owner's policy each runner's agent holds (silo runner --policy),
-- as its last heartbeat reported it: JSON, '' when none is pinned.
ALTER TABLE runners ADD COLUMN policy TEXT NOT NULL DEFAULT '';
