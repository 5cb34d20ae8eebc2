"""relay's host-candidate gatherer: sockets bound without the loop's address resolution, same candidates."""

from __future__ import annotations

import asyncio
import re

import aioice.ice
import pytest
from aiortc import RTCSessionDescription

from relay.call.metrics import MediaMetrics
from relay.media import ice
from relay.media.clock import MediaClock
from relay.media.compat import ice as compat_ice

from .test_peer import Loopback, connect_device, wait_for


async def test_answer_gathers_with_bound_sockets_and_connects(monkeypatch: pytest.MonkeyPatch) -> None:
    aioice_gathering: list[int] = []
    orig = aioice.ice.Connection.get_component_candidates

    async def counted(self, *args, **kwargs):
        aioice_gathering.append(1)
        return await orig(self, *args, **kwargs)

    monkeypatch.setattr(aioice.ice.Connection, "get_component_candidates", counted)
    loop = asyncio.get_running_loop()
    endpoints: list[dict] = []
    orig_endpoint = loop.create_datagram_endpoint

    async def endpoint(factory, *args, **kwargs):
        endpoints.append(kwargs)
        return await orig_endpoint(factory, *args, **kwargs)

    metrics = MediaMetrics()
    clock = MediaClock(metrics)
    clock.start()
    device, channel, _ = await connect_device(label="oai-events")  # the device gathers with aioice's own
    aioice_gathering.clear()
    monkeypatch.setattr(loop, "create_datagram_endpoint", endpoint)
    relay = Loopback(device.localDescription.sdp, metrics, clock)
    try:
        answer = await relay.peer.answer(device.localDescription.sdp)
        assert aioice_gathering == []  # relay's peer did not use aioice's gathering ...
        assert endpoints and all("sock" in kw and "local_addr" not in kw for kw in endpoints)  # ... nor resolve
        ports = {int(m) for m in re.findall(r"a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 (\d+) typ host", answer)}
        bound = {p.transport.get_extra_info("sockname")[1]
                 for conn in compat_ice.ice_connections(relay.peer.pc) for p in conn._protocols}
        assert ports and ports == bound
        await device.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        await wait_for(lambda: relay.peer.connected and channel.readyState == "open")
    finally:
        await device.close()
        device._reader.cancel()
        await relay.peer.close()
        await clock.stop()


def test_bind_udp_port_range_and_errors() -> None:
    sock = ice._bind_udp("127.0.0.1", (40000, 40100))
    assert sock is not None
    try:
        assert 40000 <= sock.getsockname()[1] <= 40100 and not sock.getblocking()
        # the only port of a one-port range is taken: no socket
        port = sock.getsockname()[1]
        assert ice._bind_udp("127.0.0.1", (port, port)) is None
    finally:
        sock.close()
    assert ice._bind_udp("192.0.2.123", None) is None  # not an address of this machine
    with pytest.raises(ValueError):
        ice.install_gatherer(object(), (10, 5))  # type: ignore[arg-type]
