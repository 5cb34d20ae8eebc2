"""The peer wrapper against a real aiortc device on 127.0.0.1 (no HTTP, no upstream).

The relay side loops the uplink back into the downlink through the media clock, so
a tone the device sends must come back at the same frequency.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque

import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack
from av import AudioFrame

from relay.call.metrics import MediaMetrics
from relay.media.clock import MediaClock
from relay.media.codecs import choose_audio_codec, parse_offer
from relay.media.downlink import DownlinkEncoder, PacketTrack
from relay.media.peer import Peer
from relay.media.uplink import UplinkSink


class Tone(AudioStreamTrack):
    def __init__(self, hz: float) -> None:
        super().__init__()
        self.hz, self.n = hz, 0

    async def recv(self) -> AudioFrame:
        frame = await super().recv()  # aiortc's paced silence frame: 20 ms, 48 kHz
        t = (np.arange(960) + self.n * 960) / 48000
        self.n += 1
        samples = (8000 * np.sin(2 * np.pi * self.hz * t)).astype("<i2").reshape(1, -1)
        out = AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        out.sample_rate, out.pts, out.time_base = 48000, frame.pts, frame.time_base
        return out


class Loopback:
    """Relay side: uplink chunks -> downlink frames, paced by the clock."""

    def __init__(self, offer: str, metrics: MediaMetrics, clock: MediaClock, mux=None) -> None:
        self.codec = choose_audio_codec(parse_offer(offer), allow_g711=True)
        self.encoder = DownlinkEncoder(self.codec)
        self.track = PacketTrack(self.encoder)
        self.frames: deque[bytes] = deque(maxlen=50)
        self.messages: list[str | bytes] = []
        self.closed_reasons: list[str] = []
        sink = UplinkSink(self.codec, chunk_ms=40, on_chunk=self.on_chunk, metrics=metrics)
        self.peer = Peer(codec=self.codec, track=self.track, sink=sink, metrics=metrics,
                         on_message=self.on_message, on_closed=self.closed_reasons.append, mux=mux)
        clock.register(self)

    def on_chunk(self, chunk: bytes, arrival: float) -> None:
        n = self.codec.frame_bytes
        for i in range(0, len(chunk), n):
            self.frames.append(chunk[i:i + n])

    def on_message(self, raw: str | bytes) -> None:
        self.messages.append(raw)
        self.peer.send_event('{"type":"ack"}')

    def tick(self, now: float) -> None:
        self.track.push(self.encoder.encode(self.frames.popleft() if self.frames else None))

    def clock_failed(self, exc: BaseException) -> None:
        raise AssertionError(exc)


async def wait_for(predicate, timeout_s=10.0):
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 -- polling state that has no event
            await asyncio.sleep(0.02)


async def connect_device(*, label: str | None, tone_hz: float = 440.0, codecs_filter=None):
    device = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    device.addTrack(Tone(tone_hz))
    received: list[np.ndarray] = []

    @device.on("track")
    def on_track(track):
        async def read():
            while True:
                try:
                    frame = await track.recv()
                except Exception:
                    return
                received.append(frame.to_ndarray().reshape(-1)[::len(frame.layout.channels)])
        device._reader = asyncio.ensure_future(read())

    if label:
        channel = device.createDataChannel(label)
    else:
        # declare SCTP in the offer (m=application) without opening a channel yet, as the
        # ESP32 client does: a pre-negotiated channel sends no DCEP open to relay
        channel = device.createDataChannel("sctp-only", negotiated=True, id=1000)
    await device.setLocalDescription(await device.createOffer())
    return device, channel, received


def dominant_hz(samples: np.ndarray, rate_hz: int) -> float:
    x = samples.astype(float)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate_hz / len(x))


async def test_tone_round_trip_late_channel_and_clean_close():
    metrics = MediaMetrics()
    clock = MediaClock(metrics)
    clock.start()
    device, _, received = await connect_device(label=None)  # audio only at offer time
    # the device declares SCTP but creates its channel later (ESP32 style)
    relay = Loopback(device.localDescription.sdp, metrics, clock)
    try:
        threads_before = {t.ident for t in threading.enumerate()}
        answer = await relay.peer.answer(device.localDescription.sdp)
        assert "127.0.0.1" in answer and "typ srflx" not in answer
        await device.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        await wait_for(lambda: relay.peer.connected)
        await wait_for(lambda: len(received) >= 60)
        # no decoder thread on relay's side: the only new audio thread is the device's own
        new_threads = [t.name for t in threading.enumerate() if t.ident not in threads_before]
        assert new_threads.count("audio-decoder") <= 1
        assert relay.peer.pc.getTransceivers()[0].receiver._RTCRtpReceiver__decoder_thread is None
        # echo check on the signal: the last second comes back at 440 Hz with real energy
        tail = np.concatenate(received[-50:])
        rate = len(received[-1]) * 50
        assert abs(dominant_hz(tail, rate) - 440) < 10
        assert np.sqrt(np.mean(tail.astype(float) ** 2)) > 1000
        assert metrics.rtp_in_packets > 50 and metrics.rtp_in_bad == 0
        # events queued before any channel exists are delivered when the late channel opens
        relay.peer.send_event('{"type":"early"}')
        got: list[str] = []
        channel = device.createDataChannel("esp_channel")
        channel.on("message", got.append)
        channel.on("open", lambda: channel.send('{"type":"hello"}'))
        await wait_for(lambda: len(got) >= 2)
        assert got == ['{"type":"early"}', '{"type":"ack"}'] and relay.messages == ['{"type":"hello"}']
    finally:
        await device.close()
        device._reader.cancel()
    await wait_for(lambda: relay.closed_reasons)
    assert relay.closed_reasons[0] in ("datachannel_closed", "device_closed")
    await relay.peer.close()
    await clock.stop()


async def test_failed_answer_leaves_nothing_behind():
    metrics = MediaMetrics()
    device, _, _ = await connect_device(label="messages")
    relay = Loopback(device.localDescription.sdp, metrics, MediaClock(metrics))
    bad = device.localDescription.sdp.replace("a=setup:actpass", "a=setup:bogus")
    try:
        await relay.peer.answer(bad)
    except Exception as exc:
        assert type(exc).__name__ == "OfferError"
    else:
        raise AssertionError("a bogus DTLS role must be refused")
    assert relay.peer.closed and relay.peer.pc is None
    await device.close()


async def test_relay_side_never_starts_a_decoder_thread(monkeypatch):
    """uplink.install replaces receive(): no thread is started (and joined on the loop) for relay's
    receiver; the RTCP task still runs and the receiver stops cleanly."""
    relay_queues: list[object] = []
    started: list[object] = []
    real_thread = threading.Thread

    class SpyThread(real_thread):
        def start(self) -> None:
            started.append(self._args[1] if len(self._args) > 1 else None)
            super().start()

    monkeypatch.setattr(threading, "Thread", SpyThread)
    metrics = MediaMetrics()
    clock = MediaClock(metrics)
    clock.start()
    device, _, received = await connect_device(label="messages")
    relay = Loopback(device.localDescription.sdp, metrics, clock)
    receiver = relay.peer.pc.getTransceivers()[0].receiver if relay.peer.pc else None
    try:
        answer = await relay.peer.answer(device.localDescription.sdp)
        receiver = relay.peer.pc.getTransceivers()[0].receiver
        relay_queues.append(receiver._RTCRtpReceiver__decoder_queue)
        await device.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        await wait_for(lambda: relay.peer.connected)
        await wait_for(lambda: len(received) >= 25)
        assert receiver._RTCRtpReceiver__started
        assert not any(q is relay_queues[0] for q in started)  # the device's own decoder may run
        assert receiver._RTCRtpReceiver__decoder_thread is None
        assert receiver._RTCRtpReceiver__rtcp_task is not None and not receiver._RTCRtpReceiver__rtcp_task.done()
    finally:
        await device.close()
        device._reader.cancel()
        await relay.peer.close()
        await clock.stop()
    assert receiver._RTCRtpReceiver__rtcp_task.done()
