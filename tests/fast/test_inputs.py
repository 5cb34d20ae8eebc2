"""Every kernel takes any bytes-like object the same way and rejects non-bytes clearly (TypeError)."""

from __future__ import annotations

import struct

import pytest

PCM = struct.pack("<8h", 0, 1000, -1000, 32767, -32768, 5, -5, 12345)


def calls(impl):
    r = impl.Resampler(16000, 24000)
    b = impl.PlayoutBuffer(2, frame_ms=2)
    return {
        "ulaw_encode": impl.ulaw_encode,
        "alaw_encode": impl.alaw_encode,
        "ulaw_decode": impl.ulaw_decode,
        "alaw_decode": impl.alaw_decode,
        "rms_dbfs": impl.rms_dbfs,
        "peak_abs": impl.peak_abs,
        "gain": lambda d: impl.gain(d, 1.5),
        "stereo_to_mono": impl.stereo_to_mono,
        "mono_to_stereo": impl.mono_to_stereo,
        "audio_level_dbov": impl.audio_level_dbov,
        "Resampler.process": lambda d: r.process(d) + r.flush(),
        "PlayoutBuffer.push": lambda d: (b.push(f"x{len(d)}-{id(d)}", d), b.pop_frame(), b.clear()),
    }


@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_bytes_like_inputs_give_the_same_result(impl, kind) -> None:
    want = {name: fn(PCM) for name, fn in calls(impl).items() if name != "PlayoutBuffer.push"}
    for name, fn in calls(impl).items():
        if name == "PlayoutBuffer.push":
            pushed, frame, _ = fn(kind(PCM))
            assert pushed == len(PCM) and frame == PCM[:4]
        else:
            assert fn(kind(PCM)) == want[name], name


@pytest.mark.parametrize("bad", ["text", 12, None])
def test_non_bytes_inputs_raise_type_error(impl, bad) -> None:
    for _name, fn in calls(impl).items():
        with pytest.raises(TypeError):
            fn(bad)


def test_playout_item_id_must_be_a_string(impl) -> None:
    b = impl.PlayoutBuffer(2)
    for bad in (None, 3, b"id"):
        with pytest.raises(TypeError):
            b.push(bad, b"\x00\x00")
    assert b.current_item is None and b.buffered_bytes == 0
