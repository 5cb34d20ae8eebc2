"""Microbenchmarks of the _fast kernels against the alternatives, per 20 ms frame.

Collected as ordinary tests (pyproject sets ``--benchmark-disable``: each body
runs once and its assertions hold). Full run, as recorded in docs/fast.md::

    pytest tests/fast --benchmark-enable --benchmark-only -q
"""

from __future__ import annotations

import math
import warnings

import av
import numpy as np
import pytest
import soxr
from aiortc import rtp

from relay._fast import g711, g711_py, pcm, pcm_py, playout, playout_py, resample, resample_py

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

RATE_PAIRS = [(48000, 24000), (24000, 48000), (16000, 24000)]
IDS = [f"{a // 1000}k-{b // 1000}k" for a, b in RATE_PAIRS]


def speech_like(rate_hz: int, ms: int = 20, seed: int = 1) -> bytes:
    n = rate_hz * ms // 1000
    t = np.arange(n) / rate_hz
    rng = np.random.default_rng(seed)
    x = 6000 * np.sin(2 * np.pi * 220 * t) + 3000 * np.sin(2 * np.pi * 1330 * t) + rng.normal(0, 800, n)
    return np.clip(np.round(x), -32768, 32767).astype("<i2").tobytes()


def _out_len_ok(out: bytes, in_hz: int, out_hz: int, n_in: int, slack: int) -> bool:
    return abs(len(out) // 2 - n_in * out_hz // in_hz) <= slack


# -- resampler ------------------------------------------------------------------------------------


@pytest.mark.parametrize("pair", RATE_PAIRS, ids=IDS)
def test_resample_relay_compiled(benchmark, pair) -> None:
    benchmark.group = f"resample {IDS[RATE_PAIRS.index(pair)]} per 20 ms"
    frame = speech_like(pair[0])
    r = resample.Resampler(*pair)
    r.process(frame)  # past the initial lookahead: steady state
    out = benchmark(r.process, frame)
    assert _out_len_ok(out, *pair, len(frame) // 2, 1)


@pytest.mark.parametrize("pair", RATE_PAIRS, ids=IDS)
def test_resample_relay_python_twin(benchmark, pair) -> None:
    benchmark.group = f"resample {IDS[RATE_PAIRS.index(pair)]} per 20 ms"
    frame = speech_like(pair[0])
    r = resample_py.Resampler(*pair)
    r.process(frame)
    out = benchmark.pedantic(r.process, (frame,), rounds=5, iterations=1)
    assert _out_len_ok(out, *pair, len(frame) // 2, 1)


@pytest.mark.parametrize("pair", RATE_PAIRS, ids=IDS)
def test_resample_av_audioresampler(benchmark, pair) -> None:
    benchmark.group = f"resample {IDS[RATE_PAIRS.index(pair)]} per 20 ms"
    in_hz, out_hz = pair
    frame = speech_like(in_hz)
    res = av.AudioResampler(format="s16", layout="mono", rate=out_hz)
    pts = [0]

    def step() -> bytes:
        f = av.AudioFrame.from_ndarray(np.frombuffer(frame, dtype="<i2").reshape(1, -1), format="s16", layout="mono")
        f.sample_rate = in_hz
        f.pts = pts[0]
        pts[0] += len(frame) // 2
        return b"".join(bytes(o.planes[0])[: o.samples * 2] for o in res.resample(f))

    step()
    out = benchmark(step)
    assert _out_len_ok(out, *pair, len(frame) // 2, 64)


@pytest.mark.parametrize("pair", RATE_PAIRS, ids=IDS)
def test_resample_soxr_stream(benchmark, pair) -> None:
    benchmark.group = f"resample {IDS[RATE_PAIRS.index(pair)]} per 20 ms"
    frame = speech_like(pair[0])
    stream = soxr.ResampleStream(pair[0], pair[1], 1, dtype="int16", quality="HQ")

    def step() -> bytes:
        return stream.resample_chunk(np.frombuffer(frame, dtype="<i2")).tobytes()

    out = benchmark(step)
    assert len(out) % 2 == 0
    # soxr emits in bursts; over many frames it keeps the rate (minus its fixed delay)
    total = sum(len(step()) for _ in range(50)) // 2
    assert abs(total - 50 * len(frame) // 2 * pair[1] // pair[0]) <= 2048


@pytest.mark.parametrize("pair", RATE_PAIRS, ids=IDS)
def test_resample_numpy_linear(benchmark, pair) -> None:
    benchmark.group = f"resample {IDS[RATE_PAIRS.index(pair)]} per 20 ms"
    in_hz, out_hz = pair
    frame = speech_like(in_hz)
    n_in = len(frame) // 2
    n_out = n_in * out_hz // in_hz
    xp = np.arange(n_in)
    x_out = np.arange(n_out) * (in_hz / out_hz)

    def step() -> bytes:
        y = np.interp(x_out, xp, np.frombuffer(frame, dtype="<i2"))
        return np.round(y).astype("<i2").tobytes()

    out = benchmark(step)
    assert len(out) == 2 * n_out


# -- G.711 ------------------------------------------------------------------------------------------

PCM_8K = speech_like(8000)  # a 20 ms G.711 frame: 160 samples
ULAW_8K = audioop.lin2ulaw(PCM_8K, 2)


@pytest.mark.parametrize(
    "name,fn",
    [("relay", g711.ulaw_encode), ("python twin", g711_py.ulaw_encode), ("audioop", lambda b: audioop.lin2ulaw(b, 2))],
)
def test_ulaw_encode(benchmark, name, fn) -> None:
    benchmark.group = "G.711 mu-law encode, 160 samples"
    assert benchmark(fn, PCM_8K) == ULAW_8K


@pytest.mark.parametrize(
    "name,fn",
    [("relay", g711.ulaw_decode), ("python twin", g711_py.ulaw_decode), ("audioop", lambda b: audioop.ulaw2lin(b, 2))],
)
def test_ulaw_decode(benchmark, name, fn) -> None:
    benchmark.group = "G.711 mu-law decode, 160 samples"
    assert benchmark(fn, ULAW_8K) == audioop.ulaw2lin(ULAW_8K, 2)


@pytest.mark.parametrize(
    "name,fn",
    [("relay", g711.alaw_encode), ("audioop", lambda b: audioop.lin2alaw(b, 2))],
)
def test_alaw_encode(benchmark, name, fn) -> None:
    benchmark.group = "G.711 A-law encode, 160 samples"
    assert benchmark(fn, PCM_8K) == audioop.lin2alaw(PCM_8K, 2)


# -- audio level ------------------------------------------------------------------------------------

PCM_48K = speech_like(48000)  # what aiortc's sender measures on every outgoing frame: 960 samples


def _av_frame(data: bytes) -> av.AudioFrame:
    f = av.AudioFrame.from_ndarray(np.frombuffer(data, dtype="<i2").reshape(1, -1), format="s16", layout="mono")
    f.sample_rate = 48000
    return f


def test_audio_level_relay(benchmark) -> None:
    benchmark.group = "audio level dBov, 960 samples"
    assert benchmark(pcm.audio_level_dbov, PCM_48K) == rtp.compute_audio_level_dbov(_av_frame(PCM_48K))


def test_audio_level_python_twin(benchmark) -> None:
    benchmark.group = "audio level dBov, 960 samples"
    assert benchmark(pcm_py.audio_level_dbov, PCM_48K) == rtp.compute_audio_level_dbov(_av_frame(PCM_48K))


def test_audio_level_aiortc(benchmark) -> None:
    benchmark.group = "audio level dBov, 960 samples"
    frame = _av_frame(PCM_48K)
    assert benchmark(rtp.compute_audio_level_dbov, frame) == pcm.audio_level_dbov(PCM_48K)


def test_rms_dbfs_relay(benchmark) -> None:
    benchmark.group = "rms dBFS, 960 samples"
    assert benchmark(pcm.rms_dbfs, PCM_48K) == pcm_py.rms_dbfs(PCM_48K)


def test_rms_dbfs_numpy(benchmark) -> None:
    benchmark.group = "rms dBFS, 960 samples"

    def step() -> float:
        x = np.frombuffer(PCM_48K, dtype="<i2").astype(np.float64)
        return 10.0 * math.log10(float(np.mean(x * x)) / 1073741824.0)

    assert benchmark(step) == pytest.approx(pcm.rms_dbfs(PCM_48K))


# -- playout buffer ---------------------------------------------------------------------------------

PCM_24K = speech_like(24000)


@pytest.mark.parametrize("name,cls", [("relay", playout.PlayoutBuffer), ("python twin", playout_py.PlayoutBuffer)])
def test_playout_push_pop(benchmark, name, cls) -> None:
    benchmark.group = "playout push 20 ms + pop one frame"
    buf = cls(48)
    buf.push("item", PCM_24K)

    def step() -> bytes | None:
        buf.push("item", PCM_24K)
        return buf.pop_frame()

    assert benchmark(step) == PCM_24K
    assert buf.buffered_ms == 20
