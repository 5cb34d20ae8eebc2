"""Microbenchmarks of the call core's per-frame and per-event paths (pytest-benchmark).

Run: ``pytest tests/bridge/test_core_bench.py --benchmark-enable``. With benchmarks
disabled (the default) each runs once as a plain test.
"""

from __future__ import annotations

import base64

import orjson
from bridge_helpers import make_assistant

from relay.bridge import CallCore
from relay.upstream import dialect as dl

DELTA_100MS = base64.b64encode(bytes(4800)).decode()


def _core(dialect: str = "beta") -> CallCore:
    core = CallCore(make_assistant(dialect=dialect), now=0.0)
    core.on_upstream_opened(0.0)
    core.drain_actions()
    return core


def test_bench_audio_delta_in_and_frames_out(benchmark) -> None:
    """One 100 ms upstream delta in + five 20 ms frames out (the downlink hot path of 100 ms of audio)."""
    core = _core()
    event = {"type": "response.audio.delta", "response_id": "r", "item_id": "i", "output_index": 0,
             "content_index": 0, "delta": DELTA_100MS}

    def run() -> int:
        core.on_upstream_event(event, 0.0)
        n = 0
        for _ in range(5):
            if core.pull_frame(0.0) is not None:
                n += 1
        core.drain_actions()
        return n

    assert benchmark(run) == 5


def test_bench_idle_pull_frame(benchmark) -> None:
    core = _core()
    assert benchmark(core.pull_frame, 0.0) is None


def test_bench_forward_transcript_event_ga_upstream(benchmark) -> None:
    core = _core("ga")
    event = {"type": "response.output_audio_transcript.delta", "response_id": "r", "item_id": "i",
             "output_index": 0, "content_index": 0, "delta": "hello"}

    def run() -> int:
        core.on_upstream_event(event, 0.0)
        return len(core.drain_actions())

    assert benchmark(run) == 1


def test_bench_device_message(benchmark) -> None:
    core = _core()
    raw = orjson.dumps({"type": "conversation.item.create", "item": {
        "type": "function_call_output", "call_id": "c", "output": '{"success": true}'}})

    def run() -> int:
        core.on_device_message(raw, 0.0)
        return len(core.drain_actions())

    assert benchmark(run) == 1


def test_bench_session_update_translation(benchmark) -> None:
    ev = {"type": "session.update", "session": {"modalities": ["text", "audio"], "voice": "alloy",
                                                "input_audio_format": "pcm16", "output_audio_format": "pcm16",
                                                "turn_detection": {"type": "server_vad"}, "instructions": "x"}}
    out = benchmark(dl.translate, ev, dl.BETA, dl.GA)
    assert out[0]["session"]["type"] == "realtime"
