-- The failed-secret throttle across workers and nodes (relay/store/auth_failures.py):
-- an attempt from an unknown address is charged up front (rows tagged with the attempt's
-- ``charge``, given back when it succeeds), and the (key, address) pairs that authenticated
-- are remembered for every worker and node. Both hashed.

ALTER TABLE auth_failures ADD COLUMN charge TEXT NOT NULL DEFAULT '';
CREATE INDEX auth_failures_charge ON auth_failures (charge);
CREATE TABLE auth_known (
    pair_hash TEXT PRIMARY KEY,
    ok_at REAL NOT NULL
)
