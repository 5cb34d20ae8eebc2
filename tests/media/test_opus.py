"""libopus via ctypes: mono 24 kHz round trip keeps the signal; errors are clean."""

from __future__ import annotations

import numpy as np
import pytest

from relay.media.opus import OpusDecoder, OpusEncoder, OpusError


def tone(hz: float, seconds: float, rate_hz: int = 24000, amp: int = 8000) -> bytes:
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    return (amp * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()


def dominant_hz(pcm16: bytes, rate_hz: int) -> float:
    x = np.frombuffer(pcm16, "<i2").astype(float)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate_hz / len(x))


@pytest.mark.parametrize("hz", [300.0, 440.0, 1000.0])
def test_round_trip_keeps_frequency_and_level(hz):
    enc, dec = OpusEncoder(24000, complexity=5), OpusDecoder(24000)
    pcm = tone(hz, 1.0)
    out = b"".join(dec.decode(enc.encode(pcm[i:i + 960])) for i in range(0, len(pcm), 960))
    assert len(out) == len(pcm)
    steady = out[len(out) // 4:]
    assert abs(dominant_hz(steady, 24000) - hz) < 5
    rms_in = np.sqrt(np.mean(np.frombuffer(pcm, "<i2").astype(float) ** 2))
    rms_out = np.sqrt(np.mean(np.frombuffer(steady, "<i2").astype(float) ** 2))
    assert 0.7 * rms_in < rms_out < 1.3 * rms_in


def test_decoder_reads_48k_encoded_stream_at_24k():
    enc, dec = OpusEncoder(48000), OpusDecoder(24000)
    pcm48 = tone(500, 0.5, rate_hz=48000)
    out = b"".join(dec.decode(enc.encode(pcm48[i:i + 1920])) for i in range(0, len(pcm48), 1920))
    assert len(out) == len(pcm48) // 2
    assert abs(dominant_hz(out[len(out) // 4:], 24000) - 500) < 5


def test_concealment_returns_a_frame():
    enc, dec = OpusEncoder(24000), OpusDecoder(24000)
    dec.decode(enc.encode(tone(440, 0.02)))
    assert len(dec.conceal(20)) == 960


def test_bad_input():
    enc, dec = OpusEncoder(24000), OpusDecoder(24000)
    with pytest.raises(ValueError):
        enc.encode(b"\x00" * 10)
    with pytest.raises(OpusError):
        dec.decode(b"\xff" * 3)  # code-3 packet with an invalid frame count
    with pytest.raises(ValueError):
        OpusEncoder(44100)
    assert dec.decode(b"") == b""


def test_max_playback_rate_limits_the_encoded_bandwidth():
    """A device that plays back at 16 kHz (ESP32) gets no audio above 8 kHz: bits are not wasted."""
    pcm = tone(10000.0, 0.5)  # a 10 kHz tone: audible to a 24 kHz listener, not to a 16 kHz one
    full, wide = OpusEncoder(24000), OpusEncoder(24000, max_playback_hz=16000)
    dec_full, dec_wide = OpusDecoder(24000), OpusDecoder(24000)
    out_full = b"".join(dec_full.decode(full.encode(pcm[i:i + 960])) for i in range(0, len(pcm), 960))
    out_wide = b"".join(dec_wide.decode(wide.encode(pcm[i:i + 960])) for i in range(0, len(pcm), 960))
    level = lambda b: float(np.sqrt(np.mean(np.frombuffer(b, "<i2")[2400:].astype(float) ** 2)))  # noqa: E731
    assert level(out_full) > 2000 and level(out_wide) < 0.1 * level(out_full)


def test_max_playback_rate_is_read_from_the_offer():
    from relay.media.codecs import opus_max_playback_hz, parse_offer
    from tests.media.conftest import golden_offer

    assert opus_max_playback_hz(parse_offer(golden_offer("esp32_opus"))) == 16000
    assert opus_max_playback_hz(parse_offer(golden_offer("chrome"))) is None
    assert opus_max_playback_hz(parse_offer(golden_offer("firefox"))) == 48000
