"""What a simulated device sends: pre-encoded Opus packets on a 20 ms absolute schedule.

:class:`OpusPacketTrack` is an aiortc ``MediaStreamTrack`` whose ``recv()``
returns ``av.Packet`` objects, so aiortc only packetizes them (no encoder, no
executor hop, no audio-level loop). Sources:

- a list of Opus packets (``OpusPacketTrack(packets)``), e.g. from
  :func:`relay.client.codec.encode_pcm16_to_opus`, encoded once;
- a WAV file (:func:`wav_track`), encoded once at load time;
- a PCM generator (:class:`PcmGeneratorTrack`), encoded frame by frame in the
  loop as the generator yields (for live-ish sources; costs ~150-300 us/frame).

After a finite source ends the track keeps sending encoded silence (a device
keeps its microphone open); ``loop=True`` repeats the source instead.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from pathlib import Path

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from relay.client.codec import (
    OPUS_RATE_HZ,
    PTIME_MS,
    SAMPLES_PER_FRAME_48K,
    OpusEncoder,
    encode_pcm16_to_opus,
    read_wav_pcm16,
    resample_pcm16,
    silence_packets,
)

_TIME_BASE = fractions.Fraction(1, OPUS_RATE_HZ)
PTIME_S = PTIME_MS / 1000
MAX_LATE_FRAMES = 5  # behind schedule by more than this: resynchronise instead of bursting

# on_sent(source_index, monotonic_s): source_index is the packet's index in the
# source list (-1 for silence after the end), called right before aiortc sends it.
OnSent = Callable[[int, float], None]


class PacedPacketTrack(MediaStreamTrack):
    """Base: yields ``av.Packet`` on an absolute 20 ms schedule and counts what it sent."""

    kind = "audio"

    def __init__(self, on_sent: OnSent | None = None) -> None:
        super().__init__()
        self.on_sent = on_sent
        self.frames_sent = 0
        self.resyncs = 0
        self._start_s: float | None = None
        self._silence = silence_packets(1)[0]

    def _next_payload(self) -> tuple[int, bytes]:
        raise NotImplementedError

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start_s is None:
            self._start_s = now
        due = self._start_s + self.frames_sent * PTIME_S
        if due > now:
            await asyncio.sleep(due - now)
        elif now - due > MAX_LATE_FRAMES * PTIME_S:
            # the loop stalled: a real microphone would have lost these frames
            self.resyncs += 1
            self._start_s = now - self.frames_sent * PTIME_S
        index, payload = self._next_payload()
        packet = av.Packet(payload)
        packet.pts = self.frames_sent * SAMPLES_PER_FRAME_48K
        packet.time_base = _TIME_BASE
        self.frames_sent += 1
        if self.on_sent is not None:
            self.on_sent(index, time.monotonic())
        return packet


class OpusPacketTrack(PacedPacketTrack):
    """Sends a fixed list of Opus packets (optionally looping), then silence."""

    def __init__(self, packets: Sequence[bytes], *, loop: bool = False, on_sent: OnSent | None = None) -> None:
        super().__init__(on_sent)
        self.packets = list(packets)
        self.loop = loop
        self._pos = 0

    def _next_payload(self) -> tuple[int, bytes]:
        if self._pos >= len(self.packets):
            if not self.loop or not self.packets:
                return -1, self._silence
            self._pos = 0
        index = self._pos
        self._pos += 1
        return index, self.packets[index]


class PcmGeneratorTrack(PacedPacketTrack):
    """Encodes PCM from a (sync or async) generator of int16 chunks at ``rate_hz``, frame by frame."""

    def __init__(
        self,
        chunks: Iterable[bytes | np.ndarray] | AsyncIterator[bytes | np.ndarray],
        rate_hz: int = OPUS_RATE_HZ,
        *,
        on_sent: OnSent | None = None,
    ) -> None:
        super().__init__(on_sent)
        self.rate_hz = rate_hz
        self._sync: Iterator[bytes | np.ndarray] | None = None
        self._async: AsyncIterator[bytes | np.ndarray] | None = None
        if hasattr(chunks, "__anext__"):
            self._async = chunks  # type: ignore[assignment]
        else:
            self._sync = iter(chunks)  # type: ignore[arg-type]
        self._encoder = OpusEncoder()
        self._buffer = np.zeros(0, np.int16)
        self._ended = False
        self._index = 0

    async def _fill(self) -> None:
        while not self._ended and len(self._buffer) < SAMPLES_PER_FRAME_48K:
            try:
                if self._async is not None:
                    chunk = await self._async.__anext__()
                else:
                    chunk = next(self._sync)  # type: ignore[arg-type]
            except (StopIteration, StopAsyncIteration):
                self._ended = True
                break
            samples = (
                np.frombuffer(chunk, dtype="<i2")
                if isinstance(chunk, (bytes, bytearray, memoryview))
                else np.asarray(chunk, dtype=np.int16).reshape(-1)
            )
            samples = resample_pcm16(samples, self.rate_hz, OPUS_RATE_HZ)
            self._buffer = np.concatenate([self._buffer, samples])

    async def recv(self) -> av.Packet:
        await self._fill()
        return await super().recv()

    def _next_payload(self) -> tuple[int, bytes]:
        if len(self._buffer) == 0 and self._ended:
            return -1, self._silence
        frame = np.zeros(SAMPLES_PER_FRAME_48K, np.int16)
        take = min(len(self._buffer), SAMPLES_PER_FRAME_48K)
        frame[:take] = self._buffer[:take]
        self._buffer = self._buffer[take:]
        packets = self._encoder.encode(frame)
        index = self._index
        self._index += 1
        return index, packets[0] if packets else self._silence


def wav_track(path: str | Path, *, loop: bool = False, on_sent: OnSent | None = None) -> OpusPacketTrack:
    """A track sending a WAV file (16-bit PCM, any rate), encoded to Opus once at load time."""
    samples, rate_hz = read_wav_pcm16(path)
    return OpusPacketTrack(encode_pcm16_to_opus(samples, rate_hz), loop=loop, on_sent=on_sent)


def silence_track(on_sent: OnSent | None = None) -> OpusPacketTrack:
    """A track sending only encoded silence (an open, quiet microphone)."""
    return OpusPacketTrack([], on_sent=on_sent)
