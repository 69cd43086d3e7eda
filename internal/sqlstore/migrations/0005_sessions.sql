-- Training sessions: a persisted state machine, its rounds' metrics, and the
-- link from tasks to the session, round and phase they serve.

CREATE TABLE sessions (
	id TEXT PRIMARY KEY,
	name TEXT NOT NULL,
	status TEXT NOT NULL,
	status_reason TEXT NOT NULL DEFAULT '',
	config TEXT NOT NULL,
	created_by TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL,
	finished_at BIGINT,
	-- last completed round, and the phase (stats, fit, evaluate) of the
	-- round being worked on, since when
	round INTEGER NOT NULL DEFAULT 0,
	phase TEXT NOT NULL DEFAULT '',
	phase_round INTEGER NOT NULL DEFAULT 0,
	phase_started_at BIGINT NOT NULL DEFAULT 0,
	-- the model: global parameters, strategy state, preprocessing
	params @BLOB@,
	strategy_state @BLOB@,
	preprocessing TEXT NOT NULL DEFAULT '',
	clients TEXT NOT NULL DEFAULT '[]',
	latest TEXT NOT NULL DEFAULT '{}',
	best_round INTEGER NOT NULL DEFAULT 0,
	best_value DOUBLE PRECISION NOT NULL DEFAULT 0,
	best_params @BLOB@,
	-- which server replica drives the session, until when
	lease_owner TEXT NOT NULL DEFAULT '',
	lease_until BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX sessions_status ON sessions (status);

CREATE TABLE session_rounds (
	session_id TEXT NOT NULL REFERENCES sessions (id),
	round INTEGER NOT NULL,
	metrics TEXT NOT NULL,
	recorded_at BIGINT NOT NULL,
	PRIMARY KEY (session_id, round)
);

CREATE TABLE session_client_metrics (
	session_id TEXT NOT NULL REFERENCES sessions (id),
	round INTEGER NOT NULL,
	dataset TEXT NOT NULL,
	metrics TEXT NOT NULL,
	PRIMARY KEY (session_id, round, dataset)
);

ALTER TABLE tasks ADD COLUMN session_id TEXT NOT NULL DEFAULT '';
ALTER TABLE tasks ADD COLUMN round INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN dataset TEXT NOT NULL DEFAULT '';
CREATE INDEX tasks_session ON tasks (session_id, round, type);
