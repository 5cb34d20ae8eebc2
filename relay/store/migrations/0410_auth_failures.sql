-- Failed attempts per throttle key, shared by every worker and node (relay/store/auth_failures.py).
-- Keys are stored hashed (they are client ids and addresses).

CREATE TABLE auth_failures (
    key_hash TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX auth_failures_key ON auth_failures (key_hash, at)
