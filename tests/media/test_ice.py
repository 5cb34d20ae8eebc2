"""ICE configuration: host-address allowlist, no STUN, public-IP advertisement."""

from __future__ import annotations

import aioice.ice
import pytest

from relay.media import ice
from relay.media.compat import ice as compat_ice
from tests.media.conftest import golden_offer


def test_allowlist_returns_loopback_and_only_present_addresses():
    ice.configure_host_addresses(["127.0.0.1", "203.0.113.77"])  # the second is on no interface
    with ice.gathering():  # as relay's peers gather (aioice asks its module function)
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == ["127.0.0.1"]
        assert aioice.ice.get_host_addresses(use_ipv4=False, use_ipv6=True) == []


def test_empty_allowlist_restores_aioice_behaviour():
    ice.configure_host_addresses([])
    with ice.gathering():
        addresses = aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False)
    assert "127.0.0.1" not in addresses
    assert addresses == compat_ice.aioice_host_addresses(use_ipv4=True, use_ipv6=False)


def test_bad_address_is_refused():
    with pytest.raises(ValueError):
        ice.configure_host_addresses(["not-an-ip"])


def test_no_ice_servers_ever():
    assert ice.rtc_configuration().iceServers == []


def test_public_ip_rewrites_host_candidates_and_connection_lines():
    sdp = golden_offer("firefox")
    out = ice.advertise_public_ip(sdp, "198.51.100.7")
    assert "127.0.0.1" not in out
    assert "a=candidate:0 1 UDP 2122252543 198.51.100.7 51643 typ host" in out
    assert "c=IN IP4 198.51.100.7" in out
    # non-host lines and the rest of the SDP are untouched
    assert out.count("\r\n") == len(sdp.splitlines())
    assert "a=rtpmap:109 opus/48000/2" in out


def test_public_ip_keeps_the_unspecified_connection_address():
    out = ice.advertise_public_ip(golden_offer("chrome"), "198.51.100.7")
    assert "c=IN IP4 0.0.0.0" in out and "198.51.100.7 51642 typ host" in out
