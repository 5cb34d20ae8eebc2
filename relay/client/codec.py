"""Audio helpers of the device SDK: WAV loading, one-shot Opus encoding, packet decoding.

Encoding happens once, up front (a simulated device must be cheap: it sends
pre-encoded packets, never encodes per frame on the hot path). Decoding of what
relay sends back is done in the event loop with libopus (~30 us per 20 ms frame).
"""

from __future__ import annotations

import fractions
import wave
from collections.abc import Iterable
from pathlib import Path

import av
import numpy as np

OPUS_RATE_HZ = 48000
PTIME_MS = 20
SAMPLES_PER_FRAME_48K = OPUS_RATE_HZ * PTIME_MS // 1000


def read_wav_pcm16(path: str | Path) -> tuple[np.ndarray, int]:
    """A WAV file as mono int16 samples and its rate. 16-bit PCM only; stereo is mixed down."""
    with wave.open(str(path), "rb") as wf:
        if wf.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV is supported (sample width {wf.getsampwidth()})")
        channels = wf.getnchannels()
        rate_hz = wf.getframerate()
        data = np.frombuffer(wf.readframes(wf.getnframes()), dtype="<i2")
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1).astype(np.int16)
    return data.astype(np.int16, copy=False), rate_hz


def resample_pcm16(samples: np.ndarray, rate_hz: int, to_rate_hz: int) -> np.ndarray:
    """Resample mono int16 with libswresample (used once at load time, not per frame)."""
    if rate_hz == to_rate_hz:
        return samples
    resampler = av.AudioResampler(format="s16", layout="mono", rate=to_rate_hz)
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate_hz
    out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(out).astype(np.int16) if out else np.zeros(0, np.int16)


class OpusEncoder:
    """Mono 48 kHz libopus encoder producing one packet per 20 ms frame."""

    def __init__(self, bitrate_bps: int = 32000, complexity: int = 5) -> None:
        self._ctx = av.CodecContext.create("libopus", "w")
        self._ctx.sample_rate = OPUS_RATE_HZ
        self._ctx.layout = "mono"
        self._ctx.format = "s16"
        self._ctx.bit_rate = bitrate_bps
        self._ctx.options = {
            "application": "voip",
            "frame_duration": str(PTIME_MS),
            "compression_level": str(complexity),
        }
        self._pts = 0

    def encode(self, frame_pcm16: np.ndarray) -> list[bytes]:
        """Encode one 20 ms frame (960 int16 samples at 48 kHz); returns 0 or more packets."""
        frame = av.AudioFrame.from_ndarray(frame_pcm16.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = OPUS_RATE_HZ
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, OPUS_RATE_HZ)
        self._pts += SAMPLES_PER_FRAME_48K
        return [bytes(p) for p in self._ctx.encode(frame)]

    def flush(self) -> list[bytes]:
        return [bytes(p) for p in self._ctx.encode(None)]


def frames_48k(samples_48k: np.ndarray) -> Iterable[np.ndarray]:
    """Split 48 kHz mono samples into 20 ms frames, zero-padding the last one."""
    n = SAMPLES_PER_FRAME_48K
    total = -(-len(samples_48k) // n) * n
    padded = np.zeros(total, np.int16)
    padded[: len(samples_48k)] = samples_48k
    return (padded[i : i + n] for i in range(0, total, n))


def encode_pcm16_to_opus(
    samples: np.ndarray, rate_hz: int, *, bitrate_bps: int = 32000, complexity: int = 5
) -> list[bytes]:
    """Encode a whole mono int16 signal to a list of 20 ms Opus packets (one per frame).

    The list has exactly ``ceil(duration / 20 ms)`` packets, so packet ``i``
    carries the audio starting at ``i * 20 ms`` (the encoder's lookahead is
    absorbed by flushing at the end).
    """
    samples_48k = resample_pcm16(np.asarray(samples, dtype=np.int16), rate_hz, OPUS_RATE_HZ)
    enc = OpusEncoder(bitrate_bps=bitrate_bps, complexity=complexity)
    frames = list(frames_48k(samples_48k))
    packets: list[bytes] = []
    for frame in frames:
        packets += enc.encode(frame)
    packets += enc.flush()
    return packets[: len(frames)]


def silence_packets(count: int = 3) -> list[bytes]:
    """A few packets of encoded silence (after the first, libopus emits 3-byte DTX-like frames)."""
    enc = OpusEncoder()
    zeros = np.zeros(SAMPLES_PER_FRAME_48K, np.int16)
    packets: list[bytes] = []
    for _ in range(count + 4):
        packets += enc.encode(zeros)
    return packets[-count:]


class PacketDecoder:
    """Decodes RTP payloads (Opus, PCMU, PCMA) to mono int16.

    Opus decodes at 48 kHz (libavcodec ignores a lower requested rate); when
    ``rate_hz`` differs, the output is resampled with libswresample (~50 us per
    frame). G.711 decodes at its native 8 kHz. ``rate_hz`` is the output rate.
    """

    _CODECS = {"opus": "libopus", "pcmu": "pcm_mulaw", "pcma": "pcm_alaw"}

    def __init__(self, codec: str = "opus", rate_hz: int = OPUS_RATE_HZ) -> None:
        name = self._CODECS.get(codec.lower())
        if name is None:
            raise ValueError(f"unsupported codec {codec!r}")
        self.codec = codec.lower()
        self._ctx = av.CodecContext.create(name, "r")
        native = OPUS_RATE_HZ if self.codec == "opus" else 8000
        self._ctx.sample_rate = native
        self._ctx.layout = "mono"
        self.rate_hz = rate_hz if self.codec == "opus" else native
        self._resampler = (
            av.AudioResampler(format="s16", layout="mono", rate=rate_hz) if self.rate_hz != native else None
        )

    def decode(self, payload: bytes) -> np.ndarray:
        frames = self._ctx.decode(av.Packet(payload))
        if self._resampler is not None:
            frames = [o for f in frames for o in self._resampler.resample(f)]
        out = [f.to_ndarray().reshape(-1) for f in frames]
        if not out:
            return np.zeros(0, np.int16)
        pcm = np.concatenate(out)
        if pcm.dtype != np.int16:
            pcm = np.clip(pcm * 32768.0, -32768, 32767).astype(np.int16)
        return pcm
