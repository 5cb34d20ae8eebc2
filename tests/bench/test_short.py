"""The short-response workload: chimes after pauses, heard by real devices through a real relay;
a relay that drops the first frame of each response is caught."""

from __future__ import annotations

import os
import wave

import numpy as np
import pytest

from bench.audio import build
from bench.report import text_summary
from bench.runner import Scenario, run
from bench.short import ShortTracker, is_chime_done
from relay.assistant.audio import chime
from relay.bridge.core import CallCore
from relay.client.codec import PacketDecoder, encode_pcm16_to_opus, resample_pcm16

pytestmark = pytest.mark.slow

RATE = 48000


def _turns_wav(path, turns: int = 8) -> str:
    """Short utterances (a voiced buzz, 400 ms) each followed by 900 ms of quiet: a turn every 1.3 s."""
    t = np.arange(int(0.4 * RATE)) / RATE
    buzz = sum(np.sin(2 * np.pi * 180 * k * t) / k for k in range(1, 12)) * 3000
    one = np.concatenate([buzz.astype(np.int16), np.zeros(int(0.9 * RATE), np.int16)])
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(np.tile(one, turns).tobytes())
    return str(path)


async def _short_run(url: str, audio) -> dict:
    return await run(
        Scenario(base_url=url, n=2, rate_per_s=20, duration_s=7.0, relay_pid=os.getpid(), label="relay",
                 progress=False, workload="short"),
        audio,
    )


async def test_short_workload_hears_every_chime_with_its_first_frame(relay_url_for, tmp_path):
    url = await relay_url_for("relay-short")
    audio = build(_turns_wav(tmp_path / "turns.wav"), markers=False)
    assert len(audio.turn_end_frames) == 8
    report = await _short_run(url, audio)
    assert report["calls_established"] == 2, report["errors"]
    sh = report["short"]
    assert sh["due"] >= 3, sh  # ~one chime per 2.6 s per device, over 7 s
    assert sh["heard"] == sh["due"] and sh["lost"] == 0 and sh["unmatched"] == 0, sh
    assert sh["without_first_frame"] == 0, sh
    lat = sh["latency_ms"]
    # end of turn -> chime: at least the assistant's 500 ms end-of-turn silence + its 200 ms pause
    # (a structural floor, not a timing bar: no upper bound on a shared machine)
    assert lat["n"] >= 3 and lat["p50"] > 650, lat
    assert "short responses:" in text_summary(report)


async def test_short_workload_catches_a_relay_that_drops_each_responses_first_frame(
    relay_url_for, tmp_path, monkeypatch
):
    real_pull = CallCore.pull_frame

    def pull_dropping_first(self, now):
        frame = real_pull(self, now)
        idle = getattr(self, "_bench_idle", True)
        self._bench_idle = frame is None
        return None if frame is not None and idle else frame  # the first frame after idle: gone

    monkeypatch.setattr(CallCore, "pull_frame", pull_dropping_first)
    url = await relay_url_for("relay-short")
    audio = build(_turns_wav(tmp_path / "turns.wav"), markers=False)
    report = await _short_run(url, audio)
    sh = report["short"]
    assert sh["heard"] >= 3, sh  # the bodies still arrive...
    assert sh["without_first_frame"] == sh["heard"], sh  # ...but never with their first frame


def test_tracker_pairs_onset_and_body_through_opus():
    """Offline: the chime, encoded and decoded as relay and a device would, found with its onset;
    without its first 20 ms, found without."""
    pcm48 = resample_pcm16(np.frombuffer(chime(), np.int16), 24000, RATE)
    quiet = np.zeros(RATE // 2, np.int16)
    for drop_first, expect_without in ((False, 0), (True, 1)):
        sig = pcm48[960:] if drop_first else pcm48
        packets = encode_pcm16_to_opus(np.concatenate([quiet, sig, quiet]), RATE)
        dec = PacketDecoder("opus", RATE)
        tr = ShortTracker(RATE)
        tr.on_turn_end(0.0)
        for i, p in enumerate(packets):
            tr.on_frame(dec.decode(p), 1.0 + i * 0.02, i)
        assert [w for _, w in tr.heard_at] == [not expect_without]
    # a stall between the onset frame and the next one (they arrive 300 ms apart) is no lost first frame
    packets = encode_pcm16_to_opus(np.concatenate([quiet, pcm48, quiet]), RATE)
    dec, tr = PacketDecoder("opus", RATE), ShortTracker(RATE)
    for i, p in enumerate(packets):
        tr.on_frame(dec.decode(p), 1.0 + i * 0.02 + (0.3 if i > 26 else 0.0), i)
    assert [w for _, w in tr.heard_at] == [True]
    ev = {"type": "response.done", "response": {"status": "completed", "output": [
        {"type": "message", "content": [{"type": "audio", "transcript": "[chime]"}]}]}}
    assert is_chime_done(ev)
    tr = ShortTracker(RATE)
    tr.on_event(ev, 10.0)
    tr.on_event({**ev, "response": {**ev["response"], "status": "cancelled"}}, 10.0)
    tr.on_event(ev, 20.0)
    tr.heard_at += [(10.05, True), (15.0, True), (20.05, False)]  # the 2nd matches no response.done
    assert tr.summary(10.5) == {"owed": 0, "heard": 0, "lost": 0, "without_first_frame": 0, "unmatched": 1}
    assert tr.summary(11.0) == {"owed": 1, "heard": 1, "lost": 0, "without_first_frame": 0, "unmatched": 1}
    assert tr.summary(21.0) == {"owed": 2, "heard": 2, "lost": 0, "without_first_frame": 1, "unmatched": 1}
