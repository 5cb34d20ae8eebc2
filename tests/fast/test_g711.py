"""G.711: the standard's reference values, audioop as an oracle, round trips, compiled == reference."""

from __future__ import annotations

import struct
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay._fast import g711, g711_py

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # deprecated in 3.11, still the reference implementation's twin; used only as an oracle

ALL_PCM16 = struct.pack("<65536h", *range(-32768, 32768))
ALL_CODES = bytes(range(256))


def test_encoders_match_audioop_on_every_sample(impl) -> None:
    assert impl.ulaw_encode(ALL_PCM16) == audioop.lin2ulaw(ALL_PCM16, 2)
    assert impl.alaw_encode(ALL_PCM16) == audioop.lin2alaw(ALL_PCM16, 2)


def test_decoders_match_audioop_on_every_code(impl) -> None:
    assert impl.ulaw_decode(ALL_CODES) == audioop.ulaw2lin(ALL_CODES, 2)
    assert impl.alaw_decode(ALL_CODES) == audioop.alaw2lin(ALL_CODES, 2)


def _dec(fn, code: int) -> int:
    return struct.unpack("<h", fn(bytes([code])))[0]


def _enc(fn, sample: int) -> int:
    return fn(struct.pack("<h", sample))[0]


def test_reference_values(impl) -> None:
    # G.711 tables: mu-law 0xFF/0x7F are +0/-0, 0x80/0x00 the extremes (+-8031 in 14-bit units)
    assert _enc(impl.ulaw_encode, 0) == 0xFF
    assert _dec(impl.ulaw_decode, 0xFF) == 0 and _dec(impl.ulaw_decode, 0x7F) == 0
    assert _dec(impl.ulaw_decode, 0x80) == 32124 and _dec(impl.ulaw_decode, 0x00) == -32124
    assert _enc(impl.ulaw_encode, 32767) == 0x80 and _enc(impl.ulaw_encode, -32768) == 0x00
    # A-law: even-bit inversion (0x55), 0xD5/0x55 are the smallest positive/negative steps
    assert _enc(impl.alaw_encode, 0) == 0xD5 and _enc(impl.alaw_encode, -1) == 0x55
    assert _dec(impl.alaw_decode, 0xD5) == 8 and _dec(impl.alaw_decode, 0x55) == -8
    assert _dec(impl.alaw_decode, 0xAA) == 32256 and _dec(impl.alaw_decode, 0x2A) == -32256
    assert _enc(impl.alaw_encode, 32767) == 0xAA and _enc(impl.alaw_encode, -32768) == 0x2A


def test_round_trips(impl) -> None:
    u = impl.ulaw_decode(ALL_CODES)
    re_u = impl.ulaw_encode(u)
    # every mu-law code survives decode->encode except negative zero (0x7F), which becomes +0 (0xFF)
    assert [c for c in range(256) if re_u[c] != c] == [0x7F] and re_u[0x7F] == 0xFF
    assert impl.alaw_encode(impl.alaw_decode(ALL_CODES)) == ALL_CODES
    # encode is idempotent on decoded values, and quantisation error is bounded by the segment step
    for enc, dec, step in ((impl.ulaw_encode, impl.ulaw_decode, 1024), (impl.alaw_encode, impl.alaw_decode, 1024)):
        back = struct.unpack("<65536h", dec(enc(ALL_PCM16)))
        assert max(abs(a - b) for a, b in zip(back, range(-32768, 32768), strict=True)) <= step
        assert enc(dec(enc(ALL_PCM16))) == enc(ALL_PCM16)


def test_odd_pcm_length_is_rejected(impl) -> None:
    for fn in (impl.ulaw_encode, impl.alaw_encode):
        with pytest.raises(ValueError, match="whole 16-bit samples"):
            fn(b"\x00\x01\x02")
    assert impl.ulaw_encode(b"") == b"" and impl.ulaw_decode(b"") == b""
    assert impl.alaw_encode(b"") == b"" and impl.alaw_decode(b"") == b""


def test_accepts_bytes_like(impl) -> None:
    pcm = struct.pack("<4h", 0, 1000, -1000, 32767)
    assert impl.ulaw_encode(bytearray(pcm)) == impl.ulaw_encode(memoryview(pcm)) == impl.ulaw_encode(pcm)
    assert impl.alaw_decode(bytearray(b"\x01\x02")) == impl.alaw_decode(b"\x01\x02")


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=2000))
def test_compiled_equals_reference(data: bytes) -> None:
    pcm = data[: len(data) // 2 * 2]
    assert g711.ulaw_encode(pcm) == g711_py.ulaw_encode(pcm)
    assert g711.alaw_encode(pcm) == g711_py.alaw_encode(pcm)
    assert g711.ulaw_decode(data) == g711_py.ulaw_decode(data)
    assert g711.alaw_decode(data) == g711_py.alaw_decode(data)
