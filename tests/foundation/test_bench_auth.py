"""Microbenchmarks of the per-call-setup auth work (pytest-benchmark; run with --benchmark-enable).

    python -m pytest tests/foundation/test_bench_auth.py --benchmark-enable

Correctness is asserted too, so the default (benchmarks disabled: one run each) still tests something.
"""

from __future__ import annotations

import secrets

from relay.models import ClientRecord
from relay.settings import load_settings
from relay.store.clients import hash_secret, secret_matches
from relay.throttle import FailureThrottle
from relay.turn import ice_servers, turn_credential


def test_bench_secret_verify(benchmark) -> None:
    secret, salt = secrets.token_hex(24), secrets.token_hex(16)
    client = ClientRecord(id="c", workspace_id="w", secret_hash=hash_secret(secret, salt), secret_salt=salt)
    assert benchmark(secret_matches, client, secret) is True
    assert not secret_matches(client, secret[:-1] + ("0" if secret[-1] != "0" else "1"))


def test_bench_turn_credentials(benchmark) -> None:
    settings = load_settings(environ={}, turn_urls=["turn:127.0.0.1:3478"], turn_secret=["s" * 32])
    servers = benchmark(ice_servers, settings, "6f1c7e0e-58a2-4c1c-9d77-0c4a1b1a2b3c", now=1000.0)
    assert servers[0]["credential"] == turn_credential("s" * 32, servers[0]["username"])


def test_bench_throttle_check(benchmark) -> None:
    t = FailureThrottle(5, 60)
    for i in range(10_000):
        t.failure(f"client:{i}", 0.0)
    assert benchmark(t.retry_after_s, "client:42", 1.0) == 0.0
