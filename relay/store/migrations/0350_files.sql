-- Files of the app API kept in the database (file_storage = database): every node that shares the
-- database serves every signed link, whichever node stored the file. Portable subset, as 0001_core.sql;
-- BLOB becomes BYTEA on PostgreSQL.

CREATE TABLE stored_files (
    key TEXT PRIMARY KEY,                    -- storage key, e.g. tts/20261206/<uuid>.mp3
    data BLOB NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX stored_files_created ON stored_files (created_at);

-- Keys relay generates once for the whole fleet (the URL-signing key when url_signing_key is empty).
CREATE TABLE fleet_keys (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created_at REAL NOT NULL
);
