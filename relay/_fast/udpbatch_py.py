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
