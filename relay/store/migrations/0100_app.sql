-- app REST API (#6): voice profiles, stories, and per-request analytics (X-App-Source).
-- Portable subset (see relay/store/db.py); no ';' inside literals.

CREATE TABLE app_voices (
    id TEXT PRIMARY KEY,                      -- UUID, lower-case
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    client_id TEXT,                           -- the creating device for category 'cloned'; NULL for workspace voices
    category TEXT NOT NULL,                   -- cloned (this device) | workspace (admin/dashboard)
    kind TEXT NOT NULL,                       -- clone | design
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    language TEXT NOT NULL DEFAULT 'en',
    design_prompt TEXT NOT NULL DEFAULT '',
    transcript TEXT NOT NULL DEFAULT '',      -- of the reference recording
    params TEXT NOT NULL DEFAULT '{}',        -- espeak-ng parameters (JSON)
    engine_ref TEXT NOT NULL DEFAULT '{}',    -- adapter registration: {"profile_id"} or {"voice_clone_prompt"} (JSON)
    reference_key TEXT,                       -- storage key of the reference WAV (also the preview)
    status TEXT NOT NULL DEFAULT 'ready',
    created_at REAL NOT NULL
);
CREATE INDEX app_voices_workspace ON app_voices (workspace_id, created_at);

CREATE TABLE app_stories (
    id TEXT PRIMARY KEY,                      -- UUID
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    slug TEXT,                                -- NULL: not listed and not addressable by the app API
    name TEXT NOT NULL,
    transcript TEXT NOT NULL DEFAULT '',
    excerpt TEXT,
    age_group TEXT,
    illustration_url TEXT,
    illustration_alt TEXT,
    sort_order INTEGER NOT NULL DEFAULT 0,
    default_voice_id TEXT REFERENCES app_voices(id) ON DELETE SET NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE UNIQUE INDEX app_stories_slug ON app_stories (workspace_id, slug);

CREATE TABLE app_requests (
    id TEXT PRIMARY KEY,                      -- UUID
    workspace_id TEXT,
    client_id TEXT,
    app_source TEXT,                          -- X-App-Source, trimmed to 64 characters
    endpoint TEXT NOT NULL,                   -- e.g. "tts", "voices.clone", "stories.read"
    status INTEGER NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX app_requests_source ON app_requests (app_source, at);
