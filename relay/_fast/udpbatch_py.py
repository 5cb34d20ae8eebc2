"""Batched datagram I/O on a non-blocking UDP socket: the reference twin of ``udpbatch.pyx``.

``BatchReceiver(max_datagrams=64, max_bytes=2048).recv(sock)`` drains up to ``max_datagrams``
datagrams that are waiting on the non-blocking socket ``sock`` and returns them as a list of
``(data: bytes, addr)``, ``addr`` exactly as ``socket.recvfrom`` gives it (``(host, port)`` for
IPv4, ``(host, port, flowinfo, scope_id)`` for IPv6); an empty list when nothing waits. A datagram
longer than ``max_bytes`` is truncated to ``max_bytes``, as ``recvfrom(max_bytes)`` does. Errors
other than "nothing waiting" (e.g. an ICMP error queued on the socket) end the batch early: the
datagrams read so far are returned; when none was read the ``OSError`` is raised.

``send_batch(sock, datagrams) -> int`` sends ``[(data, (host, port)), ...]`` in order and returns
how many left; it stops at the first that cannot be sent now (a full send buffer) and raises
``OSError`` for other errors of the first datagram. An address whose host is not an IP literal
raises ``ValueError`` before anything is sent (no name resolution on the media path).

The compiled twin does each with one ``recvmmsg`` / ``sendmmsg`` system call; this one loops over
``recvfrom`` / ``sendto``.
"""

from __future__ import annotations

import socket
from typing import Any

MAX_DATAGRAMS_LIMIT = 1024
MAX_BYTES_LIMIT = 65536
MAX_SRTP_BYTES = 1500  # pylibsrtp's limit: longer datagrams go the Python way (which drops them)


def _check(max_datagrams: int, max_bytes: int) -> None:
    if not 1 <= max_datagrams <= MAX_DATAGRAMS_LIMIT:
        raise ValueError(f"max_datagrams must be 1..{MAX_DATAGRAMS_LIMIT}")
    if not 1 <= max_bytes <= MAX_BYTES_LIMIT:
        raise ValueError(f"max_bytes must be 1..{MAX_BYTES_LIMIT}")


class BatchReceiver:
    def __init__(self, max_datagrams: int = 64, max_bytes: int = 2048) -> None:
        _check(max_datagrams, max_bytes)
        self.max_datagrams = max_datagrams
        self.max_bytes = max_bytes

    def recv(self, sock: socket.socket) -> list[tuple[bytes, Any]]:
        out: list[tuple[bytes, Any]] = []
        recvfrom, size = sock.recvfrom, self.max_bytes
        for _ in range(self.max_datagrams):
            try:
                out.append(recvfrom(size))
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                if out:
                    break
                raise
        return out


def _check_address(host: Any) -> None:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except (OSError, TypeError):
        raise ValueError(f"not an IP address: {host!r}") from None


def send_batch(sock: socket.socket, datagrams: list[tuple[bytes, Any]]) -> int:
    for data, addr in datagrams:
        if not isinstance(data, bytes):
            raise TypeError("datagrams must be (bytes, address) pairs")
        _check_address(addr[0])
    sent = 0
    for data, addr in datagrams:
        try:
            sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            break
        except OSError:
            if sent:
                break
            raise
        sent += 1
    return sent


class MuxReceiver(BatchReceiver):
    """``BatchReceiver`` plus the SRTP audio path of the worker's ICE port (twin of the compiled one).

    Sources: ``bind(host, port, slot)`` binds a source address (IPv4 or IPv6; an IPv6 scope is
    ignored) to a slot (``new_slot()``, ``free_slot(slot)``: which also unbinds its addresses). ``arm(slot, session, payload_types,
    ssrc, stats, push)`` lets the path take that slot's audio: an SRTP datagram (first byte 128..191,
    not SRTCP: second byte outside 192..208) of 12..1500 bytes, one of ``payload_types``, from the
    SSRC ``ssrc``, from a bound source, with the slot not ``pause``d and no SRTP/SRTCP of the slot
    handed back earlier in the same batch (audio never overtakes what goes the Python way).
    (``arm`` again resumes a paused slot.) ``recv(sock, now_s, wall_s)`` then, per datagram taken: counts it (packets, bytes, as received),
    notes ``now_s`` as the source's ``last_rx``, unprotects it in place with the ``pylibsrtp.Session``
    (a failure -- replay, authentication -- drops it: ``srtp_dropped``), parses the RTP header as
    ``parse_rtp`` does (a failure drops it: ``rtp_dropped``), updates ``stats`` (a ``StreamStats``)
    with ``(seq, timestamp, wall_s)`` and calls ``push(seq, payload)`` (an exception is counted in
    ``push_errors``, kept in ``last_push_error``, and the batch goes on; when ``push`` is a compiled
    ``uplinkasm.UplinkAssembler`` the compiled receiver calls its C entry ``push_packet`` instead, with
    the payload still in the receive buffer: the same as calling it, without a Python call). Every other datagram is
    returned, in order, as ``(data, addr)`` as ``BatchReceiver.recv`` gives it (an empty list does
    not mean nothing waited: ``received`` is how many datagrams the last ``recv`` read).
    ``take_counts(slot) -> (packets, bytes, srtp_dropped, rtp_dropped)`` since the last call.
    """

    def __init__(self, max_datagrams: int = 64, max_bytes: int = 2048) -> None:
        super().__init__(max_datagrams, max_bytes)
        self._by_addr: dict[tuple[bytes, int], list[Any]] = {}  # (packed host, port) -> [slot, last_rx_s]
        self._slots: list[dict[str, Any] | None] = []
        self._free: list[int] = []
        self._batch = 0
        self.received = 0  # datagrams the last recv() read (taken or handed back)
        self.push_errors = 0
        self.last_push_error: BaseException | None = None

    # -- slots
    def new_slot(self) -> int:
        if self._free:
            slot = self._free.pop()
        else:
            slot = len(self._slots)
            self._slots.append(None)
        self._slots[slot] = {"armed": False, "paused": False, "held": 0, "counts": [0, 0, 0, 0],
                             "objects": None, "pts": frozenset(), "ssrc": 0}
        return slot

    def _slot(self, slot: int) -> dict[str, Any]:
        state = self._slots[slot] if 0 <= slot < len(self._slots) else None
        if state is None:
            raise KeyError(f"no slot {slot}")
        return state

    def free_slot(self, slot: int) -> None:
        self._slot(slot)
        for addr in [a for a, entry in self._by_addr.items() if entry[0] == slot]:
            del self._by_addr[addr]
        self._slots[slot] = None
        self._free.append(slot)

    def arm(self, slot: int, session: Any, payload_types: Any, ssrc: int, stats: Any, push: Any) -> None:
        from relay._fast.rtpin_py import StreamStats as StreamStatsPy

        state = self._slot(slot)
        if not isinstance(stats, StreamStatsPy) and type(stats).__name__ != "StreamStats":
            raise TypeError("stats must be a relay._fast StreamStats")
        if not 0 <= ssrc <= 0xFFFFFFFF:
            raise ValueError("an SSRC is 0..2**32-1")
        pts = frozenset(payload_types)
        if any(not 0 <= pt < 128 for pt in pts):
            raise ValueError("payload types are 0..127")
        state.update(armed=True, paused=False, objects=(session, stats, push), pts=pts, ssrc=ssrc)

    def disarm(self, slot: int) -> None:
        self._slot(slot).update(armed=False, paused=False, objects=None)

    def pause(self, slot: int) -> None:
        self._slot(slot)["paused"] = True

    def resume(self, slot: int) -> None:
        self._slot(slot)["paused"] = False

    def taking(self, slot: int) -> bool:
        state = self._slot(slot)
        return state["armed"] and not state["paused"]

    def take_counts(self, slot: int) -> tuple[int, int, int, int]:
        counts = self._slot(slot)["counts"]
        out = tuple(counts)
        counts[:] = [0, 0, 0, 0]
        return out  # type: ignore[return-value]

    # -- the address table
    @staticmethod
    def _addr(host: Any, port: int) -> tuple[bytes, int]:
        """The table's key: the packed address (an IPv6 scope ignored) and the port."""
        if not isinstance(host, str):
            raise ValueError(f"not an IP address: {host!r}")
        if not 0 <= port <= 65535:
            raise ValueError("port must be 0..65535")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            return socket.inet_pton(family, host.partition("%")[0]), port
        except OSError:
            raise ValueError(f"not an IP address: {host!r}") from None

    def bind(self, host: Any, port: int, slot: int) -> bool:
        addr = self._addr(host, port)
        self._slot(slot)
        entry = self._by_addr.get(addr)
        if entry is None:
            self._by_addr[addr] = [slot, 0.0]
        else:
            entry[0] = slot
        return True

    def unbind(self, host: Any, port: int) -> None:
        self._by_addr.pop(self._addr(host, port), None)

    def bound(self, host: Any, port: int) -> int | None:
        entry = self._by_addr.get(self._addr(host, port))
        return None if entry is None else entry[0]

    def last_rx(self, host: Any, port: int) -> float:
        entry = self._by_addr.get(self._addr(host, port))
        return 0.0 if entry is None else entry[1]

    def __len__(self) -> int:
        return len(self._by_addr)

    # -- receive
    def recv(self, sock: socket.socket, now_s: float, wall_s: float) -> list[tuple[bytes, Any]]:  # type: ignore[override]
        import pylibsrtp

        from relay._fast.rtpin_py import parse_rtp

        self.received = 0
        batch = super().recv(sock)
        self.received = len(batch)
        self._batch += 1
        out: list[tuple[bytes, Any]] = []
        for data, addr in batch:
            entry = self._by_addr.get(self._addr(addr[0], addr[1])) if data and 127 < data[0] < 192 else None
            if entry is None:
                out.append((data, addr))
                continue
            state = self._slots[entry[0]]
            assert state is not None
            if (not 12 <= len(data) <= MAX_SRTP_BYTES or not state["armed"] or state["paused"] or state["held"] == self._batch
                    or 191 < data[1] < 209 or data[1] & 0x7F not in state["pts"]
                    or int.from_bytes(data[8:12], "big") != state["ssrc"]):
                state["held"] = self._batch
                out.append((data, addr))
                continue
            entry[1] = now_s
            counts = state["counts"]
            counts[0] += 1
            counts[1] += len(data)
            session, stats, push = state["objects"]
            try:
                plain = session.unprotect(data)
            except pylibsrtp.Error:
                counts[2] += 1
                continue
            try:
                _pt, _marker, seq, timestamp, _ssrc, payload = parse_rtp(plain)
            except ValueError:
                counts[3] += 1
                continue
            stats.update(seq, timestamp, wall_s)
            try:
                push(seq, payload)
            except Exception as exc:  # one call's failure must not cost the rest of the batch
                self.push_errors += 1
                self.last_push_error = exc
        return out
