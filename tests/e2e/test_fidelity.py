"""Every device hears every sound: what the device decodes is what the upstream sent.

Real calls: relay on 127.0.0.1, a device from relay's SDK (a real aiortc peer whose receiver decodes
every packet relay sends with libopus), and a scripted upstream on a real WebSocket
(``tests.e2e.realtime_stub``) that answers exactly when the test says. Assertions are on the
decoded audio: the level of each burst against the level sent, and the residue in the silences.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator

import numpy as np
import pytest

from relay._fast import ulaw_encode
from tests.e2e.audio import Capture
from tests.e2e.fidelity import Burst, analyse, espeak_pcm16, silence, tone_burst, wait_for
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


@functools.cache
def word(text: str) -> Burst:
    return Burst(f"word {text!r}", espeak_pcm16(text, peak_dbfs=-6.0), None)


def fresh(burst: Burst, **changes) -> Burst:
    return Burst(**{**burst.__dict__, "level_db": None, **changes})


def report(title: str, bursts: list[Burst], gaps: list, residue: float) -> None:
    rows = ", ".join(f"{b.label} after {g}: {b.level_db:+.2f} dB" if b.level_db is not None else f"{b.label}: lost"
                     for b, g in zip(bursts, gaps, strict=True))
    print(f"\n{title}: {rows}; residue {residue:.1f} dBFS")


def check(bursts: list[Burst], residue: float) -> None:
    levels = {b.label: b.level_db for b in bursts if b.checked}
    assert all(v is not None and abs(v) <= LEVEL_TOLERANCE_DB for v in levels.values()), levels
    assert residue < RESIDUE_MAX_DBFS, residue


GAP_LABEL = {None: "0 ms (queued)", 0.02: "20 ms", 0.1: "100 ms", 0.4: "400 ms", 1.0: "1 s", 5.0: "5 s"}


@pytest.mark.parametrize("dtx", [False, True], ids=["dtx-off", "dtx-on"])
async def test_onsets_after_idle_gaps_decode_at_the_level_sent(relay_factory, stub, dtx):
    """Tone bursts (hard onsets) and short words, each a response of its own, after 0, 20, 100,
    400 ms, 1 s and 5 s of idle: each decodes at the device within 1 dB of the level sent, and the
    silences between carry nothing of the earlier sounds (< -60 dBFS)."""
    relay, device, capture, events = await start_call(relay_factory, stub, downlink_dtx=dtx)
    # each tone at its own pitch, so two sharing a loud stretch are told apart (Opus at 32 kbps keeps
    # a 40 ms hard-onset burst within 0.1-0.7 dB up to 1.5 kHz; its own loss nears 1 dB above)
    plan: list[tuple[float | None, Burst]] = [
        (None, tone(300.0, ms=200.0)),
        (None, tone(500.0)),  # queued right behind: no idle at all
        (0.02, tone(700.0)),
        (0.1, tone(900.0)),
        (0.1, word("yes")),
        (0.4, tone(1100.0)),
        (0.4, word("no")),
        (1.0, tone(1300.0)),
        (1.0, word("okay")),
        (5.0, tone(1500.0)),
    ]
    plan = [(gap, fresh(b)) for gap, b in plan]
    try:
        for gap, burst in plan:
            await play(stub, events, burst.pcm16, after_idle_s=gap)
        await finish(relay, device, stub, events)
    finally:
        await device.hangup()
    bursts = [b for _, b in plan]
    residue = analyse(capture.samples, capture.rate_hz, bursts)
    report(f"onsets, DTX {'on' if dtx else 'off'}", bursts, [GAP_LABEL[g] for g, _ in plan], residue)
    check(bursts, residue)


@pytest.mark.parametrize("dtx", [False, True], ids=["dtx-off", "dtx-on"])
async def test_after_a_barge_in_flush_the_next_response_is_clean(relay_factory, stub, dtx):
    """A barge-in cuts a loud response mid-frame; after 1 s of idle the next response (leading
    silence, then a burst) decodes at its level and its leading silence carries nothing of the cut
    audio (before the fix: a -47 dBFS click of it)."""
    relay, device, capture, events = await start_call(relay_factory, stub, downlink_dtx=dtx)
    cut = Burst("cut response", tone_burst(2000.0, -6.0, 400.0, ramp_ms=0.0), (310.0, 490.0), checked=False)
    after = tone(1000.0)
    lead = silence(100.0)
    try:
        await play(stub, events, cut.pcm16, after_idle_s=None)
        await wait_for(lambda: any(e.get("type") == "output_audio_buffer.started" for e in events))
        await asyncio.sleep(0.31)
        await stub.barge_in()
        await wait_for(lambda: any(e.get("type") == "output_audio_buffer.cleared" for e in events))
        stub.responses_sent = 0  # the cut response never reports stopped
        await asyncio.sleep(1.0)
        await play(stub, events, np.concatenate([lead, after.pcm16]), after_idle_s=None)
        await finish(relay, device, stub, events)
    finally:
        await device.hangup()
    bursts = [cut, after]
    residue = analyse(capture.samples, capture.rate_hz, bursts)
    report(f"barge-in, DTX {'on' if dtx else 'off'}", bursts, ["-", "flush + 1 s"], residue)
    check(bursts, residue)


async def test_after_an_upstream_recycle_onsets_decode_at_the_level_sent(relay_factory, stub):
    """The upstream is replaced mid-call (recycle): bursts on the fresh socket after idle decode at
    the level sent, and nothing of the audio before the recycle leaks into the silences."""
    relay, device, capture, events = await start_call(relay_factory, stub, upstream_recycle_s=1)
    plan = [(None, tone(500.0, ms=300.0)), (0.1, tone(1200.0)), (1.0, word("yes"))]
    try:
        await play(stub, events, plan[0][1].pcm16, after_idle_s=None)
        await wait_for(lambda: len(stub.sockets) >= 2, 10)
        for gap, burst in plan[1:]:
            await play(stub, events, burst.pcm16, after_idle_s=gap)
        await finish(relay, device, stub, events)
    finally:
        await device.hangup()
    bursts = [b for _, b in plan]
    residue = analyse(capture.samples, capture.rate_hz, bursts)
    report("recycle", bursts, ["start", "recycle + 100 ms", "1 s"], residue)
    check(bursts, residue)


async def test_g711_onsets_after_idle_decode_at_the_level_sent(relay_factory, stub):
    """G.711 has no codec state: bursts after idle decode at their level (within G.711's own
    quantisation) and silence stays silent."""
    relay = await relay_factory(upstream_url=stub.url, upstream_provider="compatible", upstream_model="stub")
    capture, events = Capture(), []
    device = relay.device()
    await device.connect(on_audio=capture, on_event=events.append, codecs=("pcmu",))
    await asyncio.wait_for(stub.connected.wait(), 10)
    bursts = [Burst(f"40 ms {hz:g} Hz", tone_burst(40.0, -6.0, hz, rate_hz=8000), (hz - 90.0, hz + 90.0))
              for hz in (400.0, 1000.0, 1600.0)]
    try:
        for i, burst in enumerate(bursts):
            await play(stub, events, np.frombuffer(ulaw_encode(burst.pcm16.tobytes()), np.uint8),
                       after_idle_s=None if i == 0 else 0.4)
        await finish(relay, device, stub, events)
    finally:
        await device.hangup()
    residue = analyse(capture.samples, capture.rate_hz, bursts, sent_rate_hz=8000)
    report("G.711", bursts, ["start", "400 ms", "400 ms"], residue)
    check(bursts, residue)
