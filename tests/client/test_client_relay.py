"""The SDK against a real relay: session, SDP, audio both ways, events, device tools, late channel, errors."""

from __future__ import annotations

import asyncio
import uuid

import numpy as np
import pytest

from relay.client import PcmGeneratorTrack, RelayClient, RelayError, encode_pcm16_to_opus

pytestmark = pytest.mark.slow
RATE = 48000


def _tone(seconds_on: float, total_s: float, hz: float = 440.0, start_s: float = 0.3) -> np.ndarray:
    out = np.zeros(int(total_s * RATE), np.int16)
    n = int(seconds_on * RATE)
    t = np.arange(n) / RATE
    i = int(start_s * RATE)
    out[i : i + n] = (np.sin(2 * np.pi * hz * t) * 9000).astype(np.int16)
    return out


def _device(url: str, **kw) -> RelayClient:
    kw.setdefault("demo", True)
    return RelayClient(url, str(uuid.uuid4()), uuid.uuid4().hex * 2, host_addresses=["127.0.0.1"], **kw)


async def _until(pred, timeout_s: float = 15.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not pred():  # noqa: ASYNC110 - polling state the SDK updates from aiortc callbacks
            await asyncio.sleep(0.05)


async def test_session_connect_echo_and_hangup(relay_url):
    loud: list[float] = []
    types: list[str] = []
    async with _device(relay_url) as device:
        session = await device.create_session(["text", "audio"])
        assert isinstance(session["id"], str) and isinstance(session.get("iceServers", []), list)
        answer = await device.connect(
            audio_source=encode_pcm16_to_opus(_tone(0.8, 1.5), RATE),
            on_event=lambda e: types.append(e["type"]),
            on_audio=lambda pcm, r, ts: loud.append(ts) if np.abs(pcm).max() > 3000 else None,
        )
        assert "a=candidate" in answer and device.connected
        t = device.timings
        assert t.session_ms > 0 and t.sdp_ms > 0 and t.connect_ms is not None and t.datachannel_ms is not None
        await _until(lambda: "output_audio_buffer.stopped" in types)
        assert device.receiver.stats.packets > 0 and device.receiver.stats.lost == 0
        assert len(loud) >= 20  # ~0.8 s of echoed tone, 20 ms frames
    assert device.pc.connectionState == "closed"
    await device.hangup()  # idempotent


async def test_client_side_tool_answered_like_seed_000(relay_url):
    calls: list[dict] = []

    def set_volume(args: dict) -> dict:
        calls.append(args)
        return {"volume_level": args.get("volume_level")}

    async with _device(relay_url) as device:
        await device.connect(tools={"set_device_volume": set_volume})
        device.send_text("call set_device_volume")
        await device.next_event("response.done", timeout_s=10)  # the response that called the tool
        await _until(lambda: device.tool_calls == 1)
        # the function_call_output + response.create made the assistant answer again
        await device.next_event("response.done", timeout_s=10)
        assert len(calls) == 1 and isinstance(calls[0], dict)
        assert device.events_sent >= 4  # text item, response.create, function_call_output, response.create


async def test_pcm_generator_source_and_events_iterator(relay_url):
    pcm = _tone(0.6, 1.2)

    def chunks():
        for i in range(0, len(pcm), 4800):  # 100 ms chunks
            yield pcm[i : i + 4800].tobytes()

    async with _device(relay_url) as device:
        await device.connect(audio_source=PcmGeneratorTrack(chunks(), RATE))
        seen = []
        async with asyncio.timeout(15):
            async for event in device.events():
                seen.append(event["type"])
                if event["type"] == "output_audio_buffer.stopped":
                    break
        assert "input_audio_buffer.speech_started" in seen


async def test_late_esp_channel(relay_url):
    async with _device(relay_url) as device:
        await device.connect(late_datachannel=True, datachannel_label="esp_channel")
        assert device.channel is None and device.connected
        await asyncio.sleep(0.3)
        channel = device.open_datachannel()
        assert channel.label == "esp_channel"
        await device.wait_connected(5)
        device.send_text("hello")
        done = await device.next_event("response.done", timeout_s=10)
        assert done["type"] == "response.done"


async def test_errors_are_typed_with_seed_shape(relay_url):
    device = RelayClient(relay_url, "", None, host_addresses=["127.0.0.1"])
    with pytest.raises(RelayError) as info:
        await device.create_session()
    assert info.value.status in (400, 401) and info.value.code and info.value.type
    await device.hangup()

    device = _device(relay_url, demo=False)
    device.headers = lambda ct: {"Content-Type": "text/plain", "X-Client-Id": device.client_id}  # type: ignore
    with pytest.raises(RelayError) as info:
        await device.connect()
    assert info.value.status == 415 and set(info.value.error) == {"message", "type", "code"}
    assert device.pc.connectionState == "closed"
    await device.hangup()


def _candidate_hosts(sdp: str) -> set[str]:
    return {line.split()[4] for line in sdp.splitlines() if line.startswith("a=candidate")}


async def test_relay_and_the_sdk_in_one_process_each_gather_on_their_own_addresses(make_app):
    """One aioice hook (relay.media.compat.ice) serves relay and the device SDK in one process: relay's
    peer gathers on relay's ``ice_host_addresses`` (127.0.0.3), the SDK's on its ``host_addresses``
    (127.0.0.2), a plain aiortc peer on the process default (the tests': 127.0.0.1), and the call connects."""
    from aiortc import RTCConfiguration, RTCPeerConnection

    from relay.media import ice

    allowlist = ice.host_addresses()
    client = await make_app(demo_mode=True, ice_host_addresses=["127.0.0.3"])
    url = str(client.make_url("")).rstrip("/")
    try:
        device = RelayClient(url, str(uuid.uuid4()), uuid.uuid4().hex * 2, host_addresses=["127.0.0.2"], demo=True)
        async with device:
            answer = await device.connect()
            assert device.connected
            assert _candidate_hosts(device.pc.localDescription.sdp) == {"127.0.0.2"}
            assert _candidate_hosts(answer) == {"127.0.0.3"}
            plain = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            plain.addTransceiver("audio")
            await plain.setLocalDescription(await plain.createOffer())
            assert _candidate_hosts(plain.localDescription.sdp) == {"127.0.0.1"}
            await plain.close()
    finally:
        ice.configure_host_addresses(allowlist)
