-- The session engine: a session kind keeps its own state (opaque to the
-- store); large binary values (model parameters, blinded sets) are session
-- blobs, stored once in chunks and referenced by tasks by name, not copied
-- into every task row.

-- Sessions driven by the previous engine cannot resume under this one.
UPDATE sessions SET status = 'failed', status_reason = 'the server was upgraded while this session ran: create it again'
	WHERE status IN ('pending', 'running');

ALTER TABLE sessions ADD COLUMN state @BLOB@;
-- The fewest answers the current step can close with.
ALTER TABLE sessions ADD COLUMN phase_quorum INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions DROP COLUMN params;
ALTER TABLE sessions DROP COLUMN strategy_state;
ALTER TABLE sessions DROP COLUMN preprocessing;
ALTER TABLE sessions DROP COLUMN best_value;
ALTER TABLE sessions DROP COLUMN best_params;

CREATE TABLE session_blobs (
	session_id TEXT NOT NULL REFERENCES sessions (id),
	name TEXT NOT NULL,
	size BIGINT NOT NULL,
	digest TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	PRIMARY KEY (session_id, name)
);

CREATE TABLE session_blob_chunks (
	session_id TEXT NOT NULL,
	name TEXT NOT NULL,
	seq INTEGER NOT NULL,
	data @BLOB@ NOT NULL,
	PRIMARY KEY (session_id, name, seq)
);

-- A task's binary inputs (JSON list of session blob names) and the largest
-- result it may send.
ALTER TABLE tasks ADD COLUMN parts TEXT NOT NULL DEFAULT '';
ALTER TABLE tasks ADD COLUMN max_result BIGINT NOT NULL DEFAULT 0;
