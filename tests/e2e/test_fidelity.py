"""Every device hears every sound: what the device decodes is what the upstream sent.

Real calls: relay on 127.0.0.1, a device from relay's SDK (a real aiortc peer whose receiver decodes
every packet relay sends with libopus), and a scripted upstream on a real WebSocket
(``tests.e2e.realtime_stub``) that answers exactly when the test says. Assertions are on the
decoded audio: the level of each burst against the level sent, and the residue in the silences.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest

from tests.e2e.audio import Capture
from tests.e2e.fidelity import Burst, analyse, tone_burst, wait_for
from tests.e2e.realtime_stub import RealtimeStub

LEVEL_TOLERANCE_DB = 1.0
RESIDUE_MAX_DBFS = -60.0


@pytest.fixture
async def stub() -> AsyncIterator[RealtimeStub]:
    s = await RealtimeStub().start()
    yield s
    await s.close()


async def start_call(relay_factory, stub: RealtimeStub, **settings):
    relay = await relay_factory(upstream_url=stub.url, upstream_provider="compatible", upstream_model="stub",
                                **settings)
    capture, events = Capture(), []
    device = relay.device()
    await device.connect(on_audio=capture, on_event=events.append)
    await asyncio.wait_for(stub.connected.wait(), 10)
    return relay, device, capture, events


def stopped_count(events) -> int:
    return sum(1 for e in events if e.get("type") == "output_audio_buffer.stopped")


async def play(stub: RealtimeStub, events, pcm16: np.ndarray, *, after_idle_s: float | None) -> None:
    """Have the upstream send ``pcm16`` as a one-delta response: right away (``after_idle_s=None``:
    queued behind what is playing), or once the device heard the last response end and
    ``after_idle_s`` more seconds of idle passed."""
    if after_idle_s is not None:
        played = stub.responses_sent
        await wait_for(lambda: stopped_count(events) >= played, 10)
        await asyncio.sleep(after_idle_s)
    await stub.respond(pcm16.tobytes())
    stub.responses_sent += 1


async def finish(relay, device, stub, events, tail_s: float = 0.3) -> None:
    await wait_for(lambda: stopped_count(events) >= stub.responses_sent, 10)
    await asyncio.sleep(tail_s)
    await device.hangup()
    await relay.wait_idle()


def report(title: str, bursts: list[Burst], gaps: list, residue: float) -> None:
    rows = ", ".join(f"{b.label} after {g}: {b.level_db:+.2f} dB" if b.level_db is not None else f"{b.label}: lost"
                     for b, g in zip(bursts, gaps, strict=True))
    print(f"\n{title}: {rows}; residue {residue:.1f} dBFS")


def check(bursts: list[Burst], residue: float) -> None:
    levels = {b.label: b.level_db for b in bursts if b.checked}
    assert all(v is not None and abs(v) <= LEVEL_TOLERANCE_DB for v in levels.values()), levels
    assert residue < RESIDUE_MAX_DBFS, residue


def tone(hz: float, ms: float = 40.0, dbfs_peak: float = -6.0, ramp_ms: float = 0.0) -> Burst:
    """A tone burst (hard onset by default: an earcon, a chime), measured in a +-90 Hz band."""
    return Burst(f"{ms:g} ms {hz:g} Hz", tone_burst(ms, dbfs_peak, hz, ramp_ms=ramp_ms), (hz - 90.0, hz + 90.0))


@pytest.mark.parametrize("hz", [300.0, 1000.0])
async def test_tone_burst_after_idle_decodes_at_the_level_sent(relay_factory, stub, hz):
    """The issue's case: a 40 ms, -6 dBFS tone burst sent as a one-delta response of its own after
    1.5 s of idle decodes at the device at the level sent, every time. Before the fix each burst
    after the first decoded 13-23 dB too quiet (the live encoder's state stayed frozen at the last
    burst while the device's decoder followed the cached silence), and the first lost ~1 dB (its
    last milliseconds stayed in the encoder's lookahead)."""
    relay, device, capture, events = await start_call(relay_factory, stub)
    bursts = [tone(hz) for _ in range(4)]
    marks = []  # where each burst's window starts in the decoded stream (1.5 s apart: no ambiguity)
    try:
        for i, burst in enumerate(bursts):
            if i:
                await wait_for(lambda: stopped_count(events) >= stub.responses_sent, 10)
                await asyncio.sleep(1.5)
            marks.append(len(capture.samples))
            await play(stub, events, burst.pcm16, after_idle_s=None)
        await finish(relay, device, stub, events)
    finally:
        await device.hangup()
    decoded = capture.samples
    bounds = [*marks, len(decoded)]
    residue = max(analyse(decoded[bounds[i]:bounds[i + 1]], capture.rate_hz, [burst])
                  for i, burst in enumerate(bursts))
    report(f"40 ms -6 dBFS {hz:g} Hz bursts", bursts, ["start", "1.5 s", "1.5 s", "1.5 s"], residue)
    sent_rms = 10 ** (-6 / 20) / np.sqrt(2)
    rms = [round(float(sent_rms * 10 ** (b.level_db / 20)), 3) if b.level_db is not None else None for b in bursts]
    print(f"decoded RMS of each burst (full scale; sent {sent_rms:.3f}): {rms}")
    check(bursts, residue)
