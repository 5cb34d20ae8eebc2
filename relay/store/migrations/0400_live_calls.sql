-- The fleet's live-call registry (relay/store/live_calls.py): one row per live call, whichever
-- node and worker holds it, kept alive by a lease its holder renews. The per-client and
-- per-workspace live-call caps count these rows, so they hold across workers and nodes.

CREATE TABLE live_calls (
    call_id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    workspace_id TEXT NOT NULL DEFAULT '',
    edge TEXT NOT NULL DEFAULT 'webrtc',
    node TEXT NOT NULL,
    worker INTEGER NOT NULL DEFAULT 0,
    holder TEXT NOT NULL,
    started_at REAL NOT NULL,
    lease_until REAL NOT NULL,
    end_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX live_calls_client ON live_calls (client_id, lease_until);
CREATE INDEX live_calls_workspace ON live_calls (workspace_id, lease_until);
CREATE INDEX live_calls_holder ON live_calls (holder)
