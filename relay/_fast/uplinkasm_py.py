"""The uplink assembler: RTP audio payloads -> fixed-length chunks (reference twin of ``uplinkasm.pyx``).

One call's uplink after SRTP: a flood guard (token bucket), a small reorder window, Opus decoding
straight to the decoder's rate (in-band FEC for the last lost frame of a gap, packet-loss
concealment for the others) or G.711 bytes kept as they are (silence for a lost frame), and
accumulation into ``chunk_bytes`` chunks handed to ``on_chunk(chunk, arrival_s)``.

``UplinkAssembler(decoder, decode_fn, silence_byte, *, chunk_bytes, on_chunk, max_hold=3,
max_conceal=5, max_packets_per_s=100.0)``:

* ``decoder``: an ``OpusDecoder`` (``relay.media.opus``: ``decode``, ``decode_fec``, ``conceal``,
  ``rate_hz``, ``state``, ``close``), or None for G.711; ``decode_fn``: the address of libopus'
  ``opus_decode`` (the compiled kernel calls it directly; this twin calls the decoder's methods);
  ``silence_byte``: G.711's silence (0xFF PCMU, 0xD5 PCMA), what a lost G.711 frame becomes
  (160 bytes, 20 ms).
* ``push(seq, payload, arrival_s=None)``: one packet (``arrival_s``: ``time.perf_counter()`` when
  None); ``push_direct``: the same, counted in ``direct`` too; calling the assembler is
  ``push_direct`` (what the worker's ICE port calls; the compiled port calls the compiled kernel
  without a Python call).
* Rules: a closed assembler ignores everything. Every packet counts in ``packets``; beyond the
  bucket (``max_packets_per_s``, burst half of it) it counts in ``flood`` and goes. The first
  packet sets the expected sequence number; one behind it (modulo 2**16) is late or a duplicate
  (``late``); the expected one is consumed, then any held ones that follow; one ahead is held
  (a duplicate of a held one is dropped uncounted), and when more than ``max_hold`` are held, the
  gap before the nearest is declared lost (``lost`` += its length): min(gap, ``max_conceal``) - 1
  frames concealed, then the last one recovered from the nearest held packet's FEC (concealed when
  that payload is empty, the codec is G.711, or libopus refuses it), then the held ones drain.
  An empty payload is skipped; a payload libopus refuses counts in ``bad`` (so does a failed
  concealment). A chunk's ``arrival_s`` is that of the packet that completed it (a concealed
  frame: the packet being pushed).
* ``on_chunk`` may raise or close the assembler: processing stops at a close; the first exception
  is raised from ``push`` once the packet has been processed.
* ``take_counts() -> (packets, flood, late, lost, bad, direct)`` since the last call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from relay._fast._bytes import as_bytes

CONCEAL_MS = 20
G711_CONCEAL_BYTES = 160  # 20 ms at 8 kHz
MAX_HOLD_LIMIT = 64
MAX_CONCEAL_LIMIT = 1000


def check_args(decoder: Any, silence_byte: int, chunk_bytes: int, on_chunk: Any, max_hold: int, max_conceal: int,
               max_packets_per_s: float) -> None:
    if chunk_bytes <= 0:
        raise ValueError("chunk_bytes must be positive")
    if not callable(on_chunk):
        raise TypeError("on_chunk must be callable")
    if not 0 <= max_hold <= MAX_HOLD_LIMIT:
        raise ValueError(f"max_hold must be 0..{MAX_HOLD_LIMIT}")
    if not 0 <= max_conceal <= MAX_CONCEAL_LIMIT:
        raise ValueError(f"max_conceal must be 0..{MAX_CONCEAL_LIMIT}")
    if not max_packets_per_s >= 2:  # the bucket's burst (half the rate) must hold one packet
        raise ValueError("max_packets_per_s must be >= 2")
    if decoder is None and not 0 <= silence_byte <= 255:
        raise ValueError("silence_byte must be 0..255")


class UplinkAssembler:
    def __init__(self, decoder: Any, decode_fn: int, silence_byte: int, *, chunk_bytes: int,
                 on_chunk: Callable[[bytes, float], None], max_hold: int = 3, max_conceal: int = 5,
                 max_packets_per_s: float = 100.0) -> None:
        check_args(decoder, silence_byte, chunk_bytes, on_chunk, max_hold, max_conceal, max_packets_per_s)
        if decoder is not None and not decoder.state:
            raise ValueError("the decoder is closed")
        self._decoder = decoder
        self._silence = bytes([silence_byte]) * G711_CONCEAL_BYTES
        self.chunk_bytes = chunk_bytes
        self._on_chunk = on_chunk
        self._max_hold = max_hold
        self._max_conceal = max_conceal
        self._rate = float(max_packets_per_s)
        self._burst = self._rate / 2
        self._tokens = self._burst
        self._last: float | None = None
        self._expected: int | None = None
        self._held: dict[int, tuple[bytes, float]] = {}
        self._buf = bytearray()
        self._error: BaseException | None = None
        self.closed = False
        self.packets = self.flood = self.late = self.lost = self.bad = self.direct = 0

    # -- input
    def push_direct(self, seq: int, payload: Any, arrival_s: float | None = None) -> None:
        if not self.closed:
            self.direct += 1
        self.push(seq, payload, arrival_s)

    __call__ = push_direct

    def push(self, seq: int, payload: Any, arrival_s: float | None = None) -> None:
        if not 0 <= seq <= 0xFFFF:
            raise ValueError("a sequence number is 0..65535")
        data = as_bytes(payload)
        if self.closed:
            return
        now = time.perf_counter() if arrival_s is None else float(arrival_s)
        self.packets += 1
        if not self._allow(now):
            self.flood += 1
            return
        if self._expected is None:
            self._expected = seq
        delta = (seq - self._expected) & 0xFFFF
        if delta >= 0x8000:
            self.late += 1
            return
        if delta == 0:
            self._consume(data, now)
            self._expected = (seq + 1) & 0xFFFF
            self._drain_held()
        elif seq not in self._held:
            self._held[seq] = (data, now)
            if len(self._held) > self._max_hold:
                self._skip_gap(now)
        error, self._error = self._error, None
        if error is not None:
            raise error

    def take_counts(self) -> tuple[int, int, int, int, int, int]:
        out = (self.packets, self.flood, self.late, self.lost, self.bad, self.direct)
        self.packets = self.flood = self.late = self.lost = self.bad = self.direct = 0
        return out

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._held.clear()
        self._buf.clear()
        if self._decoder is not None:
            self._decoder.close()

    # -- internals
    def _allow(self, now: float) -> bool:
        if self._last is not None:
            self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def _drain_held(self) -> None:
        while not self.closed and self._expected in self._held:
            data, arrival = self._held.pop(self._expected)
            self._consume(data, arrival)
            self._expected = (self._expected + 1) & 0xFFFF

    def _skip_gap(self, now: float) -> None:
        expected = self._expected
        assert expected is not None
        nearest = min(self._held, key=lambda s: (s - expected) & 0xFFFF)
        lost = (nearest - expected) & 0xFFFF
        self.lost += lost
        frames = min(lost, self._max_conceal)
        for _ in range(frames - 1):
            self._conceal(now)
        if frames:
            self._recover(self._held[nearest][0] if nearest in self._held else b"", now)
        self._expected = nearest
        self._drain_held()

    def _recover(self, next_payload: bytes, now: float) -> None:
        if self.closed:
            return
        if self._decoder is None or not next_payload:
            self._conceal(now)
            return
        try:
            pcm = self._decoder.decode_fec(next_payload, CONCEAL_MS)
        except Exception:  # libopus refused it (OpusError): conceal instead
            self._conceal(now)
            return
        self._append(pcm, now)

    def _conceal(self, now: float) -> None:
        if self.closed:
            return
        if self._decoder is None:
            self._append(self._silence, now)
            return
        try:
            pcm = self._decoder.conceal(CONCEAL_MS)
        except Exception:
            self.bad += 1
            return
        self._append(pcm, now)

    def _consume(self, data: bytes, arrival: float) -> None:
        if not data or self.closed:
            return
        if self._decoder is None:
            self._append(data, arrival)
            return
        try:
            pcm = self._decoder.decode(data)
        except Exception:
            self.bad += 1
            return
        self._append(pcm, arrival)

    def _append(self, audio: bytes, arrival: float) -> None:
        self._buf += audio
        n = self.chunk_bytes
        while len(self._buf) >= n and not self.closed:
            chunk = bytes(self._buf[:n])
            del self._buf[:n]
            try:
                self._on_chunk(chunk, arrival)
            except Exception as exc:  # raised from push once this packet is done
                if self._error is None:
                    self._error = exc
