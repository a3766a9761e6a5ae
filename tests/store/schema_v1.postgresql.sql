-- The schema (store and audit, version 1) as attest created it with SQLAlchemy Core
-- on PostgreSQL. A database created now must match it.
CREATE TABLE ak_clocks (
	ak_name VARCHAR(256) NOT NULL, 
	clock BIGINT NOT NULL, 
	reset_count BIGINT NOT NULL, 
	restart_count BIGINT NOT NULL, 
	seen_at BIGINT NOT NULL, 
	PRIMARY KEY (ak_name)
);
CREATE TABLE artifacts (
	jti VARCHAR(128) NOT NULL, 
	sha256 VARCHAR(64) NOT NULL, 
	parent_jti VARCHAR(128), 
	depth INTEGER NOT NULL, 
	exp BIGINT NOT NULL, 
	host VARCHAR(255) NOT NULL, 
	kid VARCHAR(256) NOT NULL, 
	ak_name VARCHAR(256) NOT NULL, 
	subject TEXT NOT NULL, 
	scope TEXT NOT NULL, 
	accepted_at BIGINT NOT NULL, 
	PRIMARY KEY (jti)
);
CREATE INDEX ix_artifacts_parent_jti ON artifacts (parent_jti);
CREATE TABLE hosts (
	host VARCHAR(255) NOT NULL, 
	first_enrolled_at BIGINT NOT NULL, 
	last_enrolled_at BIGINT NOT NULL, 
	PRIMARY KEY (host)
);
CREATE TABLE nonces (
	nonce VARCHAR(64) NOT NULL, 
	issued_at BIGINT NOT NULL, 
	expires_at BIGINT NOT NULL, 
	used_at BIGINT, 
	PRIMARY KEY (nonce)
);
CREATE INDEX ix_nonces_expires_at ON nonces (expires_at);
CREATE TABLE revocations (
	id SERIAL NOT NULL, 
	kind VARCHAR(8) NOT NULL, 
	subject VARCHAR(256) NOT NULL, 
	reason TEXT NOT NULL, 
	revoked_at BIGINT NOT NULL, 
	cascaded_from VARCHAR(128), 
	PRIMARY KEY (id), 
	CONSTRAINT uq_revocations_kind_subject UNIQUE (kind, subject)
);
CREATE TABLE schema_versions (
	component VARCHAR(32) NOT NULL, 
	version INTEGER NOT NULL, 
	PRIMARY KEY (component)
);
CREATE TABLE enrollments (
	ak_name VARCHAR(256) NOT NULL, 
	host VARCHAR(255) NOT NULL, 
	ak_public BYTEA NOT NULL, 
	ak_qualified_name BYTEA NOT NULL, 
	ek_certificate BYTEA, 
	enrolled_at BIGINT NOT NULL, 
	updated_at BIGINT NOT NULL, 
	PRIMARY KEY (ak_name), 
	FOREIGN KEY(host) REFERENCES hosts (host)
);
CREATE INDEX ix_enrollments_host ON enrollments (host);
CREATE TABLE audit_entries (
	idx BIGINT NOT NULL, 
	data BYTEA NOT NULL, 
	leaf_hash BYTEA NOT NULL, 
	PRIMARY KEY (idx)
);
CREATE TABLE audit_heads (
	size BIGINT NOT NULL, 
	signed_at BIGINT NOT NULL, 
	note TEXT NOT NULL, 
	PRIMARY KEY (size)
);
CREATE TABLE audit_nodes (
	level INTEGER NOT NULL, 
	idx BIGINT NOT NULL, 
	hash BYTEA NOT NULL, 
	PRIMARY KEY (level, idx)
);
CREATE TABLE audit_state (
	id INTEGER NOT NULL, 
	size BIGINT NOT NULL, 
	head_size BIGINT NOT NULL, 
	head_at BIGINT NOT NULL, 
	PRIMARY KEY (id)
);
