"""Inbound RTP: header parsing and RFC 3550 receiver statistics (pure-Python twin of ``rtpin.pyx``).

``parse_rtp(data) -> (payload_type, marker, sequence_number, timestamp, ssrc, payload)``
parses an unprotected RTP packet exactly as aiortc 1.16's ``RtpPacket.parse`` does
(same checks, same ``ValueError`` cases): version 2, CSRCs skipped, the header
extension skipped (its RFC 8285 one-/two-byte elements must fit, as aiortc checks,
but their values are not decoded: the audio receiver uses none of them), padding
stripped.

``StreamStats(clockrate_hz)`` is a drop-in for aiortc's ``StreamStatistics`` (the
per-SSRC state its receiver builds RTCP receiver reports and ``getStats`` from):
the same attributes (``base_seq``, ``max_seq``, ``cycles``, ``packets_received``)
and properties (``fraction_lost`` -- which, as aiortc's, starts a new interval on
each read --, ``jitter``, ``packets_expected``, ``packets_lost``), fed either with
``add(packet)`` (aiortc's call) or ``update(sequence_number, timestamp, now_s)``
(the direct receive path: no packet object).
"""

from __future__ import annotations

import time
from typing import Any

RTP_HEADER_BYTES = 12
PACKETS_LOST_MIN = -(1 << 23)
PACKETS_LOST_MAX = (1 << 23) - 1


def parse_rtp(data: bytes) -> tuple[int, int, int, int, int, bytes]:
    if not isinstance(data, bytes):
        raise TypeError(f"parse_rtp() needs bytes, not {type(data).__name__}")
    n = len(data)
    if n < RTP_HEADER_BYTES:
        raise ValueError(f"RTP packet length is less than {RTP_HEADER_BYTES} bytes")
    b0 = data[0]
    if b0 >> 6 != 2:
        raise ValueError("RTP packet has invalid version")
    cc = b0 & 0x0F
    pos = RTP_HEADER_BYTES + 4 * cc
    if n < pos:
        raise ValueError("RTP packet has truncated CSRC")
    b1 = data[1]
    seq = (data[2] << 8) | data[3]
    ts = int.from_bytes(data[4:8], "big")
    ssrc = int.from_bytes(data[8:12], "big")
    if b0 & 0x10:
        if n < pos + 4:
            raise ValueError("RTP packet has truncated extension profile / length")
        ext_bytes = ((data[pos + 2] << 8) | data[pos + 3]) * 4
        pos += 4
        if n < pos + ext_bytes:
            raise ValueError("RTP packet has truncated extension value")
        profile = (data[pos - 4] << 8) | data[pos - 3]
        if profile == 0xBEDE or profile == 0x1000:
            _check_extension_elements(data, pos, pos + ext_bytes, profile == 0xBEDE)
        pos += ext_bytes
    if b0 & 0x20:
        padding = data[n - 1]
        if not padding or padding > n - pos:
            raise ValueError("RTP packet padding length is invalid")
        payload = data[pos:n - padding]
    else:
        payload = data[pos:]
    return b1 & 0x7F, b1 >> 7, seq, ts, ssrc, payload


def _check_extension_elements(data: bytes, pos: int, end: int, one_byte: bool) -> None:
    """RFC 8285 elements must fit in the extension block (aiortc's ``unpack_header_extensions`` checks)."""
    while pos < end:
        if data[pos] == 0:  # padding
            pos += 1
            continue
        if one_byte:
            length = (data[pos] & 0x0F) + 1
            pos += 1
            if end < pos + length:
                raise ValueError("RTP one-byte header extension value is truncated")
        else:
            if end < pos + 2:
                raise ValueError("RTP two-byte header extension is truncated")
            length = data[pos + 1]
            pos += 2
            if end < pos + length:
                raise ValueError("RTP two-byte header extension value is truncated")
        pos += length


def _uint16_gt(a: int, b: int) -> bool:
    return (a < b and b - a > 0x8000) or (a > b and a - b < 0x8000)


class StreamStats:
    """aiortc's ``StreamStatistics``, same fields and arithmetic, with a packet-free ``update``; one fix:
    the jitter takes the RTP timestamp difference modulo 2**32 (aiortc's does not, so a timestamp
    wrap -- every ~25 h of a 48 kHz stream, from a random origin -- reported ~2**28 of jitter for seconds)."""

    def __init__(self, clockrate: int) -> None:
        self.base_seq: int | None = None
        self.max_seq: int | None = None
        self.cycles = 0
        self.packets_received = 0
        self._clockrate = clockrate
        self._jitter_q4 = 0
        self._last_arrival = 0
        self._last_timestamp: int | None = None
        self._expected_prior = 0
        self._received_prior = 0

    def add(self, packet: Any) -> None:
        self.update(packet.sequence_number, packet.timestamp, time.time())

    def update(self, sequence_number: int, timestamp: int, now_s: float) -> None:
        max_seq = self.max_seq
        self.packets_received += 1
        if self.base_seq is None:
            self.base_seq = sequence_number
        if max_seq is None or _uint16_gt(sequence_number, max_seq):
            arrival = int(now_s * self._clockrate)
            if max_seq is not None and sequence_number < max_seq:
                self.cycles += 1 << 16
            self.max_seq = sequence_number
            if timestamp != self._last_timestamp and self.packets_received > 1:
                # the RTP timestamp difference modulo 2**32 (RFC 3550 A.8): a wrap is one frame, not -2**32
                dts = (timestamp - self._last_timestamp) & 0xFFFFFFFF  # type: ignore[operator]
                if dts >= 0x80000000:
                    dts -= 0x100000000
                diff = abs((arrival - self._last_arrival) - dts)
                self._jitter_q4 += diff - ((self._jitter_q4 + 8) >> 4)
            self._last_arrival = arrival
            self._last_timestamp = timestamp

    @property
    def fraction_lost(self) -> int:
        expected = self.packets_expected
        expected_interval = expected - self._expected_prior
        self._expected_prior = expected
        received_interval = self.packets_received - self._received_prior
        self._received_prior = self.packets_received
        lost_interval = expected_interval - received_interval
        if expected_interval == 0 or lost_interval <= 0:
            return 0
        return (lost_interval << 8) // expected_interval

    @property
    def jitter(self) -> int:
        return self._jitter_q4 >> 4

    @property
    def packets_expected(self) -> int:
        return self.cycles + self.max_seq - self.base_seq + 1  # type: ignore[operator]

    @property
    def packets_lost(self) -> int:
        return max(PACKETS_LOST_MIN, min(self.packets_expected - self.packets_received, PACKETS_LOST_MAX))
