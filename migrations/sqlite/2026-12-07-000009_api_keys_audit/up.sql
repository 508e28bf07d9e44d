-- Long-lived API keys for backends (docs/rest.md "API keys"): only a SHA-256 of the key is
-- stored; the key itself is shown once, when created.
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL,
    roles TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

-- What admins did to users' data and credentials: exports, erasures, API keys.
CREATE TABLE audit_log (
    id TEXT PRIMARY KEY NOT NULL,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX audit_log_created_idx ON audit_log (created_at);
