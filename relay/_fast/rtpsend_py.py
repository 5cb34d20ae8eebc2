"""The downlink send kernel, reference twin of ``rtpsend.pyx``: RTP packets written, SRTP-protected and
queued per socket, each queue sent in one go.

``RtpStream(*, payload_type, ssrc, sequence_number, timestamp_origin=0, marker=1,
extension_profile=0, extension_value=b"", abs_send_time_at=-1)`` is one RTP stream (one call's
downlink): the header is laid out once -- version 2, no padding, no CSRC, the marker bit and payload
type, the SSRC, and, when ``extension_value`` is not empty, the extension block (``extension_profile``
and the value, whole 32-bit words) -- and per packet only the sequence number, the timestamp
(``timestamp_origin + pts``, modulo 2**32) and, when ``abs_send_time_at`` >= 0, the 3 bytes of the
abs-send-time extension at that offset of the value (``(ntp >> 14) & 0xFFFFFF``) are written: the
bytes aiortc 1.16's ``RtpPacket.serialize`` gives for its sender's packets (tests/media/test_rtp_out.py).

* ``set_srtp(owner, protect_fn, session)``: protect every packet in place with libsrtp's
  ``srtp_protect(session, buffer, &length)`` at the address ``protect_fn`` (``relay.media.rtp_out``
  takes both from the pylibsrtp session of aiortc's DTLS transport); ``owner`` is kept alive.
* ``build(payload, pts, ntp=None) -> bytes``: the next packet, not sent.
* ``send(queue, payload, pts, addr, ntp=None) -> int``: the next packet, queued on ``queue`` for
  ``addr`` (``(host, port)`` or an IPv6 4-tuple, an IP literal); returns its length on the wire.
* Both advance the sequence number (mod 2**16) and the counters an RTCP sender report and
  ``getStats`` read: ``packets_sent``, ``octets_sent`` (payload octets, as RFC 3550 and aiortc count),
  ``bytes_sent`` (datagram bytes, the DTLS transport's count), ``last_timestamp`` and ``last_ntp``
  (the 64-bit NTP time of the last packet: ``ntp``, or the wall clock now when ``None``).
* A packet longer than ``MAX_PACKET_BYTES`` (header + payload) raises ``ValueError``; a failing
  ``srtp_protect`` raises ``RuntimeError``; neither advances the stream.

``SendQueue(sock, max_datagrams=64, on_pending=None)``: datagrams waiting for one send on the
non-blocking UDP socket ``sock``. ``on_pending()`` is called when the first datagram is queued (the
owner schedules ``flush``); a send into a full queue flushes it first. ``flush() -> int`` sends
every queued datagram in order (compiled: one ``sendmmsg``; here: a ``sendto`` loop) and returns
how many left; it never raises: a datagram that cannot be sent (e.g. no route to its address) is
skipped and the rest still go, and when the send buffer is full the rest is dropped, as UDP would
lose it -- both counted in ``send_errors`` (``last_errno``: the errno of the last skipped one).
``pending``, ``datagrams_sent``, ``batches``, ``send_errors``, ``last_errno``, ``max_datagrams``,
``sock``.
"""

from __future__ import annotations

import ctypes
import errno
import socket
import time
from collections.abc import Callable
from typing import Any

from relay._fast._bytes import as_bytes

SLOT_BYTES = 2048
SRTP_MAX_TRAILER = 144
MAX_PACKET_BYTES = SLOT_BYTES - SRTP_MAX_TRAILER
MAX_HEADER = 16 + 4 * 255
MAX_DATAGRAMS_LIMIT = 1024
NTP_EPOCH_OFFSET_S = 2208988800

_PROTECT = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int))


def _now_ntp() -> int:
    ns = time.time_ns()
    seconds, rest = divmod(ns, 1_000_000_000)
    return ((seconds + NTP_EPOCH_OFFSET_S) << 32) | (int(rest * 4.294967296) & 0xFFFFFFFF)


def _check_address(addr: Any) -> None:
    host, port = addr[0], addr[1]
    if not 0 <= port <= 65535:
        raise ValueError(f"not a port: {port!r}")
    try:
        socket.inet_pton(socket.AF_INET if isinstance(host, str) and ":" not in host else socket.AF_INET6, host)
    except (OSError, TypeError):
        raise ValueError(f"not an IP address: {host!r}") from None


class SendQueue:
    def __init__(self, sock: Any, max_datagrams: int = 64, on_pending: Callable[[], None] | None = None) -> None:
        if not 1 <= max_datagrams <= MAX_DATAGRAMS_LIMIT:
            raise ValueError(f"max_datagrams must be 1..{MAX_DATAGRAMS_LIMIT}")
        if sock.fileno() < 0:
            raise OSError(errno.EBADF, "Bad file descriptor")
        self.sock = sock
        self.max_datagrams = max_datagrams
        self._on_pending = on_pending
        self._queue: list[tuple[bytes, Any]] = []
        self.datagrams_sent = 0
        self.batches = 0
        self.send_errors = 0
        self.last_errno = 0

    @property
    def pending(self) -> int:
        return len(self._queue)

    def flush(self) -> int:
        queue = self._queue
        if not queue:
            return 0
        self._queue = []
        sent = done = 0
        for data, addr in queue:
            try:
                self.sock.sendto(data, addr)
            except BlockingIOError:  # the send buffer is full: the rest is lost
                break
            except OSError as exc:  # this datagram cannot be sent: skip it, send the rest
                self.last_errno = exc.errno or 0
                self.send_errors += 1
                done += 1
                continue
            sent += 1
            done += 1
        self.batches += 1
        self.datagrams_sent += sent
        self.send_errors += len(queue) - done
        return sent

    def _put(self, data: bytes, addr: Any) -> None:
        self._queue.append((data, addr))
        if len(self._queue) == 1 and self._on_pending is not None:
            self._on_pending()


class RtpStream:
    def __init__(self, *, payload_type: int, ssrc: int, sequence_number: int, timestamp_origin: int = 0,
                 marker: int = 1, extension_profile: int = 0, extension_value: Any = b"",
                 abs_send_time_at: int = -1) -> None:
        if not 0 <= payload_type < 128:
            raise ValueError("payload type must be 0..127")
        ext = as_bytes(extension_value)
        if len(ext) % 4 or 16 + len(ext) > MAX_HEADER:
            raise ValueError("the extension block must be whole 32-bit words, at most 255 of them")
        if abs_send_time_at >= 0 and abs_send_time_at + 3 > len(ext):
            raise ValueError("abs_send_time_at is outside the extension block")
        header = bytearray(12)
        header[0] = 0x80 | (0x10 if ext else 0)
        header[1] = ((marker & 1) << 7) | payload_type
        header[8:12] = (ssrc & 0xFFFFFFFF).to_bytes(4, "big")
        if ext:
            header += (extension_profile & 0xFFFF).to_bytes(2, "big") + (len(ext) >> 2).to_bytes(2, "big") + ext
        self._header = header
        self._abs_at = 16 + abs_send_time_at if abs_send_time_at >= 0 else -1
        self._seq = sequence_number & 0xFFFF
        self._origin = timestamp_origin & 0xFFFFFFFF
        self._protect: Any = None
        self._session = 0
        self._srtp_owner: Any = None
        self._buf = ctypes.create_string_buffer(SLOT_BYTES)
        self._len = ctypes.c_int(0)
        self.packets_sent = 0
        self.octets_sent = 0
        self.bytes_sent = 0
        self.last_timestamp = 0
        self.last_ntp = 0

    @property
    def sequence_number(self) -> int:
        return self._seq

    @property
    def header_bytes(self) -> int:
        return len(self._header)

    def set_srtp(self, owner: Any, protect_fn: int, session: int) -> None:
        if not protect_fn or not session:
            raise ValueError("no SRTP function or session")
        self._srtp_owner = owner
        self._protect = _PROTECT(protect_fn)
        self._session = session

    def build(self, payload: Any, pts: int, ntp: int | None = None) -> bytes:
        payload = as_bytes(payload)
        if len(self._header) + len(payload) > MAX_PACKET_BYTES:
            raise ValueError(f"packet of {len(self._header) + len(payload)} bytes is too long")
        if ntp is None:
            ntp = _now_ntp()
        ntp &= 0xFFFFFFFFFFFFFFFF
        timestamp = (self._origin + pts) & 0xFFFFFFFF
        header = bytearray(self._header)
        header[2:4] = self._seq.to_bytes(2, "big")
        header[4:8] = timestamp.to_bytes(4, "big")
        if self._abs_at >= 0:
            header[self._abs_at:self._abs_at + 3] = ((ntp >> 14) & 0xFFFFFF).to_bytes(3, "big")
        packet = bytes(header) + payload
        if self._protect is not None:
            buf, length = self._buf, self._len
            ctypes.memmove(buf, packet, len(packet))
            length.value = len(packet)
            err = self._protect(self._session, buf, ctypes.byref(length))
            if err:
                raise RuntimeError(f"srtp_protect failed (libsrtp error {err})")
            packet = buf.raw[:length.value]
        self._seq = (self._seq + 1) & 0xFFFF
        self.packets_sent += 1
        self.octets_sent += len(payload)
        self.bytes_sent += len(packet)
        self.last_timestamp = timestamp
        self.last_ntp = ntp
        return packet

    def send(self, queue: SendQueue, payload: Any, pts: int, addr: Any, ntp: int | None = None) -> int:
        if not isinstance(queue, SendQueue):
            raise TypeError("queue must be a SendQueue")
        _check_address(addr)
        if queue.pending >= queue.max_datagrams:
            queue.flush()
        packet = self.build(payload, pts, ntp)
        queue._put(packet, addr)
        return len(packet)
