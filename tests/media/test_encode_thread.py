"""The media clock encodes on its one encode thread: one batch per tick, encoders never freed under it."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from relay.call.metrics import MediaMetrics
from relay.media import downlink
from relay.media.clock import MediaClock
from relay.media.codecs import OPUS, PCMA
from relay.media.downlink import DownlinkEncoder, EncodeJob
from relay.media.opus import OpusDecoder, OpusError


def tone_frame(n: int, hz: float = 440.0) -> bytes:
    t = (np.arange(480) + n * 480) / 24000
    return (6000 * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()


class RecordingEncoder(DownlinkEncoder):
    """A real Opus encoder; ``recording`` notes the thread of each of its encodes (and can hold or fail them)."""

    def __init__(self, codec=OPUS) -> None:
        super().__init__(codec, complexity=4)
        self.threads: list[int] = []
        self.thread_names: set[str] = set()
        self.hold: threading.Event | None = None
        self.entered = threading.Event()
        self.fail = False
        if self._encoder is not None:
            _BY_STATE[self._encoder.state] = self


_BY_STATE: dict[int, RecordingEncoder] = {}
OPUS_INTERNAL_ERROR = -3


@pytest.fixture(autouse=True)
def recording(monkeypatch):
    """Wraps the batch kernel the clock's encode thread calls: records which thread encodes whose frame."""
    real = downlink.encode_batch

    def encode_batch(fn, states, frames, frame_samples):
        encoders = [_BY_STATE.get(state) for state in states]
        for enc in encoders:
            if enc is not None:
                enc.threads.append(threading.get_ident())
                enc.thread_names.add(threading.current_thread().name)
                enc.entered.set()
                if enc.hold is not None:
                    assert enc.hold.wait(5)
        results = real(fn, states, frames, frame_samples)
        return [OPUS_INTERNAL_ERROR if enc is not None and enc.fail else r for enc, r in zip(encoders, results, strict=True)]

    monkeypatch.setattr(downlink, "encode_batch", encode_batch)
    yield
    _BY_STATE.clear()


class Speaker:
    """A clock listener like a call: a tone frame each tick, encoded by the clock, payloads in order."""

    def __init__(self, encoder: DownlinkEncoder, frames: int = 10) -> None:
        self.encoder = encoder
        self.n = 0
        self.frames = frames
        self.payloads: list[bytes] = []
        self.order: list[int] = []
        self.failed: BaseException | None = None
        self.enough = asyncio.Event()

    def tick(self, now: float) -> EncodeJob | None:
        n, self.n = self.n, self.n + 1
        frame = tone_frame(n)
        payload = self.encoder.prepare(frame)
        if payload is not None:
            self._sent(payload, n)
            return None
        return self.encoder.job(frame, lambda p: self._sent(p, n))

    def _sent(self, payload: bytes, n: int) -> None:
        self.payloads.append(payload)
        self.order.append(n)
        if len(self.payloads) >= self.frames:
            self.enough.set()

    def clock_failed(self, exc: BaseException) -> None:
        self.failed = exc


async def test_frames_are_encoded_on_the_one_encode_thread_one_batch_per_tick_in_order():
    metrics = MediaMetrics()
    clock = MediaClock(metrics, ptime_ms=5)
    speakers = [Speaker(RecordingEncoder()) for _ in range(3)]
    for s in speakers:
        clock.register(s)
    clock.start()
    await asyncio.wait_for(asyncio.gather(*(s.enough.wait() for s in speakers)), 10)
    await clock.stop()
    loop_thread = threading.get_ident()
    threads = {t for s in speakers for t in s.encoder.threads}
    assert len(threads) == 1 and loop_thread not in threads  # one thread, not the loop's
    for s in speakers:
        assert s.order == list(range(len(s.order)))  # per-call frame order
        dec = OpusDecoder(24000)
        pcm = np.frombuffer(b"".join(dec.decode(p) for p in s.payloads), "<i2")
        assert np.sqrt(np.mean(pcm[2400:].astype(float) ** 2)) > 2000  # real encoded audio
    # every batch held all three calls' frames: one hop per tick, not per frame
    assert clock.encode_batches == len(speakers[0].encoder.threads)
    assert all(len(s.encoder.threads) == clock.encode_batches for s in speakers)
    assert metrics.clock_tick_blocked.count >= clock.encode_batches
    assert metrics.snapshot()["clock_tick_blocked"]["p50_ms"] is not None
    (name,) = {n for s in speakers for n in s.encoder.thread_names}
    assert name.startswith("relay-encode")


async def test_a_call_ending_mid_batch_has_its_encoder_freed_only_after_the_batch():
    clock = MediaClock(MediaMetrics(), ptime_ms=5)
    ending, other = RecordingEncoder(), RecordingEncoder()
    a, b = Speaker(ending, frames=1000), Speaker(other)
    ending.hold = threading.Event()
    clock.register(a)
    clock.register(b)
    clock.start()
    try:
        assert await asyncio.to_thread(ending.entered.wait, 5)  # the thread is inside a's encode
        # the call ends now, on the loop (as Call.end + teardown do): unregister, close the encoder
        clock.unregister(a)
        sent_before = len(a.payloads)
        ending.close()
        assert ending.busy and ending._encoder is not None  # deferred: the thread still uses it
        ending.hold.set()
        await asyncio.wait_for(b.enough.wait(), 10)
    finally:
        ending.hold.set()
        await clock.stop()
    assert not ending.busy and ending._encoder is None  # freed once the batch was done
    assert len(a.payloads) == sent_before and a.failed is None  # nothing sent for an ended call
    assert b.failed is None and b.order == list(range(len(b.order)))


async def test_a_failing_encode_ends_only_that_call():
    clock = MediaClock(MediaMetrics(), ptime_ms=5)
    broken, fine = RecordingEncoder(), RecordingEncoder()
    broken.fail = True
    a, b = Speaker(broken), Speaker(fine)
    clock.register(a)
    clock.register(b)
    clock.start()
    await asyncio.wait_for(b.enough.wait(), 10)
    await clock.stop()
    assert isinstance(a.failed, OpusError) and "internal error" in str(a.failed) and a.payloads == []
    assert len(broken.threads) == 1  # unregistered after its first failure
    assert clock.listener_count == 1 and b.failed is None
    assert not broken.busy and not fine.busy


async def test_stop_during_a_batch_waits_for_it_and_releases_the_encoders():
    clock = MediaClock(MediaMetrics(), ptime_ms=5)
    enc = RecordingEncoder()
    enc.hold = threading.Event()
    clock.register(Speaker(enc))
    clock.start()
    assert await asyncio.to_thread(enc.entered.wait, 5)
    stopping = asyncio.ensure_future(clock.stop())
    await asyncio.sleep(0.05)
    assert enc.busy  # the thread still encodes: the encoder is held
    enc.hold.set()
    await asyncio.wait_for(stopping, 5)
    assert not enc.busy
    enc.close()
    assert enc._encoder is None


async def test_cached_and_passthrough_payloads_never_reach_the_encode_thread():
    metrics = MediaMetrics()
    clock = MediaClock(metrics, ptime_ms=5)
    g711 = RecordingEncoder(PCMA)

    class Silent(Speaker):
        def tick(self, now):
            payload = self.encoder.prepare(None if self.encoder is not g711 else b"\xd5" * 160)
            assert payload is not None
            self._sent(payload, len(self.payloads))

    silent_opus = RecordingEncoder()
    speakers = [Silent(silent_opus), Silent(g711)]
    for s in speakers:
        clock.register(s)
    clock.start()
    await asyncio.wait_for(asyncio.gather(*(s.enough.wait() for s in speakers)), 10)
    await clock.stop()
    assert clock.encode_batches == 0 and silent_opus.threads == [] and g711.threads == []
    assert metrics.clock_tick_blocked.count >= 10
