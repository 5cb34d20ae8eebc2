"""PCM helpers: known values, aiortc's audio level as an oracle, errors, compiled == reference."""

from __future__ import annotations

import math
import struct

import av
import numpy as np
import pytest
from aiortc import rtp
from hypothesis import given, settings
from hypothesis import strategies as st

from relay._fast import pcm, pcm_py

samples16 = st.lists(st.integers(-32768, 32767), max_size=600)


def pack(xs) -> bytes:
    return struct.pack(f"<{len(xs)}h", *xs)


def unpack(b: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(b) // 2}h", b))


def aiortc_level(data: bytes, rate_hz: int = 48000) -> int:
    frame = av.AudioFrame.from_ndarray(np.frombuffer(data, dtype="<i2").reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate_hz
    return rtp.compute_audio_level_dbov(frame)


def sine(amp: float, n: int = 960, period: int = 48) -> bytes:
    return pack([round(amp * math.sin(2 * math.pi * i / period)) for i in range(n)])


def test_rms_dbfs_known_values(impl) -> None:
    assert impl.rms_dbfs(pack([32768 // 2] * 10)) == pytest.approx(20 * math.log10(0.5))
    assert impl.rms_dbfs(pack([-32768] * 7)) == 0.0
    assert impl.rms_dbfs(sine(32767)) == pytest.approx(-3.0103, abs=1e-3)
    assert impl.rms_dbfs(pack([0] * 100)) == impl.SILENCE_DBFS == -120.0
    assert impl.rms_dbfs(b"") == -120.0
    assert impl.rms_dbfs(pack([1] + [0] * 100000)) == -120.0  # floored, never below


def test_peak_abs(impl) -> None:
    assert impl.peak_abs(b"") == 0
    assert impl.peak_abs(pack([3, -7, 5])) == 7
    assert impl.peak_abs(pack([32767, -32768])) == 32768


def test_gain_rounds_and_saturates(impl) -> None:
    assert unpack(impl.gain(pack([100, -100, 3, -3, 20000, -20000]), 2.0)) == [200, -200, 6, -6, 32767, -32768]
    assert unpack(impl.gain(pack([1, -1, 3, -3]), 0.5)) == [1, 0, 2, -1]  # floor(x + 0.5)
    assert unpack(impl.gain(pack([-32768, 32767]), -1.0)) == [32767, -32767]
    assert impl.gain(b"", 3.0) == b""
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="finite"):
            impl.gain(pack([1]), bad)


def test_stereo_mono(impl) -> None:
    assert unpack(impl.mono_to_stereo(pack([1, -2, 32767]))) == [1, 1, -2, -2, 32767, 32767]
    assert unpack(impl.stereo_to_mono(pack([1, 2, -3, -4, 32767, 32767, -32768, -32768]))) == [1, -4, 32767, -32768]
    assert impl.stereo_to_mono(b"") == b"" and impl.mono_to_stereo(b"") == b""
    x = pack(list(range(-500, 500, 7)))
    assert impl.stereo_to_mono(impl.mono_to_stereo(x)) == x


@pytest.mark.parametrize("fn", ["rms_dbfs", "peak_abs", "mono_to_stereo", "audio_level_dbov"])
def test_partial_samples_are_rejected(impl, fn) -> None:
    with pytest.raises(ValueError, match="multiple of 2"):
        getattr(impl, fn)(b"\x01\x02\x03")


def test_partial_stereo_frames_are_rejected(impl) -> None:
    with pytest.raises(ValueError, match="multiple of 4"):
        impl.stereo_to_mono(b"\x01\x02\x03\x04\x05\x06")
    with pytest.raises(ValueError):
        impl.gain(b"\x01", 1.0)


@pytest.mark.parametrize("amp", [0, 1, 2, 3, 10, 100, 1000, 5000, 16384, 23170, 32767])
def test_audio_level_matches_aiortc(impl, amp) -> None:
    data = sine(amp)
    assert impl.audio_level_dbov(data) == aiortc_level(data)


def test_audio_level_takes_an_av_plane_directly(impl) -> None:
    # the drop-in for aiortc: audio_level_dbov(frame.planes[0]) (any buffer works, not only bytes)
    frame = av.AudioFrame.from_ndarray(
        np.frombuffer(sine(3000), dtype="<i2").reshape(1, -1), format="s16", layout="mono"
    )
    frame.sample_rate = 48000
    assert impl.audio_level_dbov(frame.planes[0]) == rtp.compute_audio_level_dbov(frame) == -24


def test_audio_level_range_and_empty(impl) -> None:
    assert impl.audio_level_dbov(pack([-32768] * 960)) == 0
    assert impl.audio_level_dbov(pack([0] * 960)) == -127
    assert impl.audio_level_dbov(b"") == -127


@settings(max_examples=150, deadline=None)
@given(xs=samples16.filter(bool))
def test_audio_level_matches_aiortc_on_random_frames(xs) -> None:
    data = pack(xs)
    want = aiortc_level(data)
    assert pcm.audio_level_dbov(data) == want
    assert pcm_py.audio_level_dbov(data) == want


@settings(max_examples=150, deadline=None)
@given(xs=samples16, factor=st.floats(-8.0, 8.0, allow_nan=False), extra=st.binary(max_size=3))
def test_compiled_equals_reference(xs, factor, extra) -> None:
    data = pack(xs)
    for name in ("rms_dbfs", "peak_abs", "mono_to_stereo", "audio_level_dbov"):
        assert getattr(pcm, name)(data) == getattr(pcm_py, name)(data), name
    assert pcm.gain(data, factor) == pcm_py.gain(data, factor)
    stereo = data[: len(data) // 4 * 4]
    assert pcm.stereo_to_mono(stereo) == pcm_py.stereo_to_mono(stereo)
    odd = data + extra
    for name in ("rms_dbfs", "peak_abs", "mono_to_stereo", "audio_level_dbov", "stereo_to_mono"):
        for mod in (pcm, pcm_py):
            frame = 4 if name == "stereo_to_mono" else 2
            if len(odd) % frame:
                with pytest.raises(ValueError):
                    getattr(mod, name)(odd)
