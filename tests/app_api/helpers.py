"""Audio and request helpers for the app API tests (real espeak-ng speech, real PyAV codecs)."""

from __future__ import annotations

import io
import math
import struct
from typing import Any

import av
import numpy as np

from relay.tts import jobs

SPEECH = ("Once upon a time a little fox lived near a quiet river in the green forest. "
          "Every morning he walked down to the water to drink and to watch the fish. "
          "One day he met a wise old turtle who told him a story about the moon and the stars. ")


def speech_pcm(seconds: float, *, pitch: int = 50, rate_hz_out: int | None = None) -> tuple[bytes, int]:
    """At least ``seconds`` of espeak-ng speech, cut to exactly ``seconds``: (pcm16, rate_hz)."""
    text = SPEECH
    pcm, rate, _ = jobs.speak(text, {"pitch": pitch})
    while len(pcm) / 2 / rate < seconds:
        more, _, _ = jobs.speak(text, {"pitch": pitch})
        pcm += more
    return pcm[: int(seconds * rate) * 2], rate


def wav_bytes(pcm16: bytes, rate_hz: int) -> bytes:
    from relay.tts.audio import encode_wav

    return encode_wav(pcm16, rate_hz)


def encode_with(pcm16: bytes, rate_hz: int, fmt: str, codec: str) -> bytes:
    """Encode mono PCM into container ``fmt`` with ``codec`` (PyAV), e.g. ("ogg", "libvorbis"), ("flac", "flac")."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate_hz if codec != "libopus" else 48000, layout="mono")
        fmt_name = stream.codec_context.codec.audio_formats[0].name
        resampler = av.AudioResampler(format=fmt_name, layout="mono", rate=stream.rate)
        frame = av.AudioFrame.from_ndarray(np.frombuffer(pcm16, "<i2").reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate_hz
        for rf in resampler.resample(frame) + resampler.resample(None):
            for p in stream.encode(rf):
                out.mux(p)
        for p in stream.encode(None):
            out.mux(p)
    return buf.getvalue()


def silence_wav(seconds: float, rate_hz: int = 16000) -> bytes:
    return wav_bytes(b"\0\0" * int(seconds * rate_hz), rate_hz)


def tone_pcm(f0_hz: float, seconds: float, rate_hz: int = 16000) -> bytes:
    """A harmonic-rich periodic signal at ``f0_hz`` (for pitch estimation)."""
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    x = sum(np.sin(2 * math.pi * f0_hz * k * t) / k for k in range(1, 6))
    x = 0.3 * x / np.max(np.abs(x))
    return (x * 32767).astype("<i2").tobytes()


def decode(data: bytes) -> tuple[str, np.ndarray, int]:
    """(container format, mono float samples, rate) of encoded audio."""
    with av.open(io.BytesIO(data)) as c:
        fmt = c.format.name
        stream = c.streams.audio[0]
        parts, rate = [], stream.rate
        for frame in c.decode(stream):
            arr = frame.to_ndarray()
            if arr.dtype.kind == "i":
                arr = arr.astype(np.float32) / 32768.0
            parts.append(arr.reshape(frame.layout.nb_channels if not frame.format.is_planar else arr.shape[0], -1)[0]
                         if frame.format.is_planar else arr.reshape(-1)[:: frame.layout.nb_channels])
            rate = frame.sample_rate
    return fmt, np.concatenate(parts).astype(np.float32), rate


def rms_dbfs(x: np.ndarray) -> float:
    if len(x) == 0:
        return -200.0
    return 20 * math.log10(float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) + 1e-12)


def wav_header_fields(data: bytes) -> dict[str, Any]:
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    channels, rate = struct.unpack("<HI", data[22:28])
    bits = struct.unpack("<H", data[34:36])[0]
    return {"channels": channels, "rate": rate, "bits": bits}
