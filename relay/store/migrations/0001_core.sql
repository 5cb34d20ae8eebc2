-- relay core schema (#2). Portable subset: TEXT, INTEGER, REAL; booleans 0/1; JSON as TEXT;
-- times as REAL unix seconds. No ';' inside literals (the runner splits on it).

CREATE TABLE workspaces (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    key_hash TEXT UNIQUE,                    -- sha256 hex of the workspace key (high-entropy; never stored plain)
    allow_self_enrol INTEGER NOT NULL DEFAULT 0,
    allow_secretless INTEGER NOT NULL DEFAULT 0,
    default_assistant_id TEXT,
    settings TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL
);

CREATE TABLE assistants (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    provider TEXT NOT NULL DEFAULT 'local',  -- local | openai | azure | compatible
    upstream_url TEXT NOT NULL DEFAULT '',
    api_key TEXT NOT NULL DEFAULT '',        -- needed in clear to call the upstream; never logged or returned
    model TEXT NOT NULL DEFAULT 'relay-echo',
    voice TEXT NOT NULL DEFAULT 'alloy',
    instructions TEXT NOT NULL DEFAULT '',
    tools TEXT NOT NULL DEFAULT '[]',        -- [{name, description, parameters, side: client|server, webhook_url}]
    device_tools INTEGER NOT NULL DEFAULT 1, -- enable the four client-side device tools of seed 000
    turn_detection TEXT,                     -- JSON or NULL
    transcription TEXT,                      -- JSON or NULL
    input_audio_format TEXT NOT NULL DEFAULT 'pcm16',
    output_audio_format TEXT NOT NULL DEFAULT 'pcm16',
    dialect TEXT NOT NULL DEFAULT 'beta',    -- beta | ga
    allow_g711 INTEGER NOT NULL DEFAULT 1,
    device_update_allow TEXT NOT NULL DEFAULT '[]',
    created_at REAL NOT NULL
);
CREATE INDEX assistants_workspace ON assistants (workspace_id);

CREATE TABLE clients (
    id TEXT PRIMARY KEY,                     -- UUID, lower-case
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    assistant_id TEXT REFERENCES assistants(id) ON DELETE SET NULL,
    name TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'active',   -- active | disabled
    secret_hash TEXT,                        -- HMAC-SHA256(salt, secret) hex; NULL until enrolled (TOFU)
    secret_salt TEXT,
    enrolled_at REAL,
    last_seen_at REAL,
    created_at REAL NOT NULL
);
CREATE INDEX clients_workspace ON clients (workspace_id);

CREATE TABLE sessions (
    id TEXT PRIMARY KEY,                     -- session_...
    client_id TEXT,
    workspace_id TEXT,
    assistant_id TEXT,
    demo INTEGER NOT NULL DEFAULT 0,
    modalities TEXT NOT NULL DEFAULT '[]',
    ice_servers TEXT NOT NULL DEFAULT '[]',  -- what was issued (urls, usernames; never the credential)
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX sessions_client ON sessions (client_id);

CREATE TABLE usage (
    id TEXT PRIMARY KEY,
    session_id TEXT,
    client_id TEXT,
    workspace_id TEXT,
    assistant_id TEXT,
    demo INTEGER NOT NULL DEFAULT 0,
    started_at REAL NOT NULL,
    ended_at REAL NOT NULL,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    input_audio_s REAL NOT NULL DEFAULT 0,
    output_audio_s REAL NOT NULL DEFAULT 0
);
CREATE INDEX usage_client ON usage (client_id);
CREATE INDEX usage_session ON usage (session_id);

INSERT INTO workspaces (id, name, created_at) VALUES ('default', 'Default', 0);
