-- Task runners, their tasks and task logs.

CREATE TABLE runners (
	id @ID@,
	name TEXT NOT NULL,
	provider TEXT NOT NULL,
	-- the RunnerSpec as JSON, without its secrets
	spec TEXT NOT NULL,
	-- the spec's secrets as JSON, sealed with the server key (AES-GCM)
	sealed_secrets @BLOB@,
	status TEXT NOT NULL,
	status_reason TEXT NOT NULL DEFAULT '',
	token_hash TEXT NOT NULL DEFAULT '',
	created_by TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL,
	last_heartbeat BIGINT,
	agent_version TEXT NOT NULL DEFAULT '',
	agent_vcpu INTEGER NOT NULL DEFAULT 0,
	agent_memory_mb INTEGER NOT NULL DEFAULT 0
);
-- A deregistered runner frees its name.
CREATE UNIQUE INDEX runners_live_name ON runners (name) WHERE status <> 'deregistered';
CREATE INDEX runners_token ON runners (token_hash);

CREATE TABLE tasks (
	id TEXT PRIMARY KEY,
	runner_id BIGINT NOT NULL REFERENCES runners (id),
	type TEXT NOT NULL,
	payload TEXT NOT NULL DEFAULT '',
	vcpu INTEGER NOT NULL DEFAULT 0,
	memory_mb INTEGER NOT NULL DEFAULT 0,
	status TEXT NOT NULL,
	error TEXT NOT NULL DEFAULT '',
	output TEXT NOT NULL DEFAULT '',
	created_at BIGINT NOT NULL,
	started_at BIGINT,
	finished_at BIGINT
);
CREATE INDEX tasks_runner_status ON tasks (runner_id, status, created_at);

CREATE TABLE task_logs (
	id @ID@,
	task_id TEXT NOT NULL REFERENCES tasks (id),
	time BIGINT NOT NULL,
	level TEXT NOT NULL,
	message TEXT NOT NULL
);
CREATE INDEX task_logs_task ON task_logs (task_id, id);
