-- Datasets (metadata only: rows stay on their runner), attachments and the
-- privacy ledger.

CREATE TABLE datasets (
	id @ID@,
	name TEXT NOT NULL,
	runner_id BIGINT NOT NULL REFERENCES runners (id),
	uri TEXT NOT NULL,
	description TEXT NOT NULL DEFAULT '',
	owner TEXT NOT NULL,
	privacy TEXT NOT NULL,
	status TEXT NOT NULL,
	error TEXT NOT NULL DEFAULT '',
	format TEXT NOT NULL DEFAULT '',
	files INTEGER NOT NULL DEFAULT 0,
	row_count BIGINT NOT NULL DEFAULT 0,
	columns TEXT NOT NULL DEFAULT '[]',
	connect_task TEXT NOT NULL DEFAULT '',
	created_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL,
	connected_at BIGINT,
	deregistered_at BIGINT
);
CREATE UNIQUE INDEX datasets_live_name ON datasets (name) WHERE deregistered_at IS NULL;

CREATE TABLE dataset_attachments (
	id @ID@,
	dataset_id BIGINT NOT NULL REFERENCES datasets (id),
	name TEXT NOT NULL,
	content_type TEXT NOT NULL,
	size BIGINT NOT NULL,
	data @BLOB@ NOT NULL,
	uploaded_by TEXT NOT NULL,
	uploaded_at BIGINT NOT NULL
);
CREATE INDEX dataset_attachments_dataset ON dataset_attachments (dataset_id);

CREATE TABLE privacy_ledger (
	id @ID@,
	dataset_id BIGINT NOT NULL REFERENCES datasets (id),
	session_id TEXT NOT NULL,
	epsilon DOUBLE PRECISION NOT NULL,
	delta DOUBLE PRECISION NOT NULL,
	recorded_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX privacy_ledger_entry ON privacy_ledger (dataset_id, session_id);
