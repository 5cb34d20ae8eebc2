"""Interface enumeration for ICE host candidates is cached (not once per call set-up)."""

from __future__ import annotations

import aioice.ice
import pytest

from relay.media import ice


def _relay_gathers(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    """What aioice's agent of a relay peer is told to gather on."""
    with ice.gathering():
        return aioice.ice.get_host_addresses(use_ipv4=use_ipv4, use_ipv6=use_ipv6)


@pytest.fixture
def enumerations(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bool, bool]]:
    calls: list[tuple[bool, bool]] = []

    def fake(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        calls.append((use_ipv4, use_ipv6))
        return ["192.0.2.9"] if use_ipv4 else ["2001:db8::9"]

    monkeypatch.setattr(ice, "_enumerate_interfaces", fake)
    return calls


def test_no_allowlist_enumerates_once_per_ttl(enumerations, monkeypatch: pytest.MonkeyPatch) -> None:
    ice.configure_host_addresses([])
    for _ in range(3):
        assert _relay_gathers(use_ipv4=True, use_ipv6=False) == ["192.0.2.9"]
    assert enumerations == [(True, False)]
    assert _relay_gathers(use_ipv4=False, use_ipv6=True) == ["2001:db8::9"]
    assert enumerations == [(True, False), (False, True)]
    monkeypatch.setattr(ice, "INTERFACES_TTL_S", 0.0)  # expired: enumerated again
    _relay_gathers(use_ipv4=True, use_ipv6=False)
    assert enumerations[-1] == (True, False) and len(enumerations) == 3


def test_allowlist_checks_presence_from_the_cache_and_reconfiguring_clears_it(enumerations) -> None:
    ice.configure_host_addresses(["192.0.2.9", "192.0.2.10", "127.0.0.1"])
    for _ in range(3):
        assert _relay_gathers(use_ipv4=True, use_ipv6=False) == ["192.0.2.9", "127.0.0.1"]
    assert len(enumerations) == 1
    ice.configure_host_addresses(["192.0.2.9"])
    assert _relay_gathers(use_ipv4=True, use_ipv6=False) == ["192.0.2.9"]
    assert len(enumerations) == 2
    ice.configure_host_addresses(["127.0.0.1"])  # loopback only: no enumeration at all
    assert _relay_gathers(use_ipv4=True, use_ipv6=False) == ["127.0.0.1"]
    assert len(enumerations) == 2
