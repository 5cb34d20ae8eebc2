"""Brute force stays throttled and the rightful device gets through, under a parallel attack
(issue: 5 wrong secrets/min for a client id kept its correct secret at 429; 50 failures across
12 client ids from one address locked out every device behind it)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

from relay.store import clients

from .helpers import db_of, device_headers, new_secret, post_session

LIMIT = 5


async def enrol(app, address: str | None = None) -> tuple[str, str]:
    cid, secret = (await clients.create(db_of(app), "default")).id, new_secret()
    headers = device_headers(cid, secret)
    if address:
        headers["X-Forwarded-For"] = address
    assert (await post_session(app, headers))[0] == 200
    return cid, secret


async def status_of(app, headers: dict[str, str]) -> int:
    return (await post_session(app, headers))[0]


async def test_distributed_parallel_guessing_is_capped_and_the_device_gets_through(make_app) -> None:
    app = await make_app(auth_fail_limit=LIMIT, auth_fail_window_s=60, trust_forwarded_for=True)
    cid, secret = await enrol(app, "192.0.2.10")
    guesses = [("attack", {**device_headers(cid, new_secret()), "X-Forwarded-For": f"198.51.100.{i % 20}"})
               for i in range(200)]
    rightful = [("device", {**device_headers(cid, secret), "X-Forwarded-For": "192.0.2.10"}) for _ in range(20)]
    mixed = guesses + rightful
    random.Random(7).shuffle(mixed)
    statuses = await asyncio.gather(*(status_of(app, h) for _, h in mixed))
    by_who: dict[str, Counter] = {"attack": Counter(), "device": Counter()}
    for (who, _), status in zip(mixed, statuses, strict=True):
        by_who[who][status] += 1
    print(f"\nattacker: {dict(by_who['attack'])}, device: {dict(by_who['device'])}")
    assert by_who["device"] == Counter({200: 20})  # every rightful attempt passed
    # secrets checked for the attacker: at most the budget, however many ran in parallel
    assert by_who["attack"][401] <= LIMIT and by_who["attack"][429] >= 200 - LIMIT


async def test_many_client_ids_failing_behind_one_address_do_not_lock_its_devices_out(make_app) -> None:
    """A reverse proxy without trust_forwarded_for: every device and the attacker share 127.0.0.1."""
    app = await make_app(auth_fail_limit=LIMIT, auth_fail_window_s=60)
    devices = [await enrol(app) for _ in range(12)]
    attack = [device_headers(devices[i % 12][0], new_secret()) for i in range(120)]
    rightful = [device_headers(cid, secret) for cid, secret in devices for _ in range(3)]
    mixed = [("attack", h) for h in attack] + [("device", h) for h in rightful]
    random.Random(11).shuffle(mixed)
    statuses = await asyncio.gather(*(status_of(app, h) for _, h in mixed))
    by_who: dict[str, Counter] = {"attack": Counter(), "device": Counter()}
    for (who, _), status in zip(mixed, statuses, strict=True):
        by_who[who][status] += 1
    print(f"\nattacker: {dict(by_who['attack'])}, devices: {dict(by_who['device'])}")
    assert by_who["device"] == Counter({200: 36})
    assert by_who["attack"][429] > 0 and by_who["attack"][200] == 0  # still throttled
    # a client id never seen from this address is refused while the address is over budget
    newcomer = (await clients.create(db_of(app), "default")).id
    assert await status_of(app, device_headers(newcomer, new_secret())) == 429
