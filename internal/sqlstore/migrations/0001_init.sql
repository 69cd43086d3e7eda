-- Workspace, users, invitations, access tokens, browser sign-ins and the audit log.

CREATE TABLE workspace (
	id INTEGER PRIMARY KEY CHECK (id = 1),
	name TEXT NOT NULL,
	billing_contact TEXT NOT NULL DEFAULT '',
	billing_email TEXT NOT NULL DEFAULT '',
	billing_address TEXT NOT NULL DEFAULT '',
	plan TEXT NOT NULL DEFAULT 'community',
	updated_at BIGINT NOT NULL DEFAULT 0
);
INSERT INTO workspace (id, name) VALUES (1, 'silo');

CREATE TABLE users (
	id @ID@,
	email TEXT NOT NULL UNIQUE,
	name TEXT NOT NULL DEFAULT '',
	-- comma-separated role names, wrapped in commas (",admin,model_builder,")
	-- so "has role" is a plain LIKE in both databases
	roles TEXT NOT NULL,
	disabled INTEGER NOT NULL DEFAULT 0,
	password_hash TEXT NOT NULL DEFAULT '',
	created_at BIGINT NOT NULL
);

CREATE TABLE invites (
	id @ID@,
	email TEXT NOT NULL,
	roles TEXT NOT NULL,
	created_by TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	expires_at BIGINT NOT NULL,
	accepted_at BIGINT,
	revoked_at BIGINT,
	token_hash TEXT NOT NULL UNIQUE
);
CREATE INDEX invites_email ON invites (email);

CREATE TABLE tokens (
	id TEXT PRIMARY KEY,
	user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	name TEXT NOT NULL,
	scopes TEXT NOT NULL DEFAULT '',
	hash TEXT NOT NULL UNIQUE,
	created_at BIGINT NOT NULL,
	expires_at BIGINT,
	last_used_at BIGINT,
	revoked_at BIGINT
);
CREATE INDEX tokens_user ON tokens (user_id);

CREATE TABLE logins (
	hash TEXT PRIMARY KEY,
	user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	csrf TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	expires_at BIGINT NOT NULL
);
CREATE INDEX logins_user ON logins (user_id);

CREATE TABLE audit (
	id @ID@,
	time BIGINT NOT NULL,
	actor TEXT NOT NULL,
	action TEXT NOT NULL,
	target TEXT NOT NULL DEFAULT '',
	outcome TEXT NOT NULL,
	detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_time ON audit (time);
