-- Server-client API tokens of the WebSocket edge (seed 003). Portable subset, as 0001_core.sql.
-- The token itself is relay-generated and high-entropy: only its SHA-256 is stored.

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,                     -- rtk_ + 16 hex: the public part of the token
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    assistant_id TEXT REFERENCES assistants(id) ON DELETE SET NULL,
    name TEXT NOT NULL DEFAULT '',
    token_hash TEXT NOT NULL,                -- sha256 hex of the whole token (never stored plain)
    created_at REAL NOT NULL,
    last_used_at REAL,
    revoked_at REAL
);
CREATE INDEX api_tokens_workspace ON api_tokens (workspace_id);
