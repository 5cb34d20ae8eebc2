"""GStreamer webrtcbin (Debian's, libnice, its default RSA certificate) calls relay.

relay is the DTLS client here (the offer says actpass) and webrtcbin's certificate is RSA: before
relay offered the ECDHE-RSA suites this call failed with "no shared cipher"."""

from __future__ import annotations

import json

import pytest

from .conftest import STACKS, assert_call_and_echo, device_headers, run_stack

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("device_setup", ["actpass", "active"])
async def test_gstreamer_webrtcbin_call(relay, tmp_path, device_setup: str) -> None:
    """``actpass`` (what webrtcbin offers): relay is the DTLS client and webrtcbin's RSA certificate picks
    an ECDHE-RSA suite. ``active`` (the offer rewritten): webrtcbin is the client and relay's ECDSA
    certificate picks an ECDHE-ECDSA suite, which webrtcbin's OpenSSL offers too."""
    out = tmp_path / "gst"
    result = await run_stack(["/usr/bin/python3", str(STACKS / "gst_client.py"), relay.base_url + "/v1/realtime",
                              json.dumps(device_headers()), str(out), device_setup], out)
    assert_call_and_echo(result)
    # the suite the two agreed, read on relay's side of the live call: webrtcbin's RSA certificate signed it
    call = relay.plane.registry.calls()[0]
    dtls_transport = call.peer.pc.getTransceivers()[0].receiver.transport
    relay_role, suite = ("client", "ECDHE-RSA-") if device_setup == "actpass" else ("server", "ECDHE-ECDSA-")
    assert dtls_transport._role == relay_role
    assert dtls_transport._ssl.get_cipher_name().startswith(suite), dtls_transport._ssl.get_cipher_name()
