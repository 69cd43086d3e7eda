-- A session reserves the epsilon it asks for on each dataset when it is
-- accepted (privacy_ledger.reserved, alongside what it has spent so far in
-- epsilon); the reservation is released when the session ends. A token
-- minted with a scoped token records its parent: it never outlives it and
-- is revoked with it.

ALTER TABLE privacy_ledger ADD COLUMN reserved DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE tokens ADD COLUMN parent_id TEXT NOT NULL DEFAULT '';
CREATE INDEX tokens_parent ON tokens (parent_id);
