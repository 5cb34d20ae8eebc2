"""One UDP port per worker: every call's ICE host candidate is the worker's one socket (the I/O edge).

``IceMux(port)`` owns the worker's UDP socket(s) -- one per advertised host address, all on the same
port -- and ``MuxTable`` (relay/media/muxtable.py, sans-I/O) routes each datagram to its call. aioice
stays the ICE implementation (checks, nomination, consent) and aiortc the DTLS/SRTP/SCTP one: each
call's aioice ``Connection`` gets, as its host candidate, an ordinary ``aioice.ice.StunProtocol``
connected to a ``_CallTransport`` instead of a socket of its own. Its ``sendto`` goes out of the shared
socket (through ``MuxTable.on_send``: transaction ids, NAT rebinding); the shared socket's readiness
callback drains a batch of datagrams with one ``recvmmsg`` (``relay._fast.MuxReceiver``; sends
leave together at the end of the loop iteration, one ``sendmmsg``: ``relay._fast.send_batch``) and hands
each call's datagrams to that protocol's ``datagram_received`` -- looked up per datagram,
so relay's direct SRTP receive path (relay/media/rtp_in.py), which replaces it per protocol, works
unchanged. The direct send path (rtp_out.py) writes its SRTP packets straight into the socket's
``media_queue`` (``relay._fast.SendQueue``: every call's packets of a tick leave in one ``sendmmsg``),
addressed as ``MuxTable.on_send`` says (``_CallTransport.media_destination``).

The common datagram -- a call's SRTP audio from an address ICE bound -- never reaches Python as a
datagram: the socket is drained by ``relay._fast.MuxReceiver``, which keeps a C copy of the table's
address -> call binding (each route is a slot; ``MuxTable``'s listener keeps it in step) and, once
the call's direct receive path attaches (``_CallTransport.attach_direct``) and arms the slot,
unprotects, parses and counts the audio in compiled code and calls the sink with the payload. Every
other datagram is returned to ``_readable`` and routed as above.

The ICE ufrag is the routing key, so it must be unique on the port: a call whose aioice drew a ufrag
already in use (or reserved by a call still answering) gets a new one before its answer is written
(``reserve``).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
import weakref
from typing import Any

import aioice.ice
import aioice.turn
from aioice.candidate import Candidate
from aioice.utils import random_string

from relay._fast import MuxReceiver, SendQueue, send_batch
from relay.media.ice import add_host_candidate
from relay.media.muxtable import MuxTable, Route

log = logging.getLogger("relay.media")

UFRAG_DRAWS = 8  # attempts at a free ufrag before a longer one is drawn
RECV_BATCH = 32  # datagrams drained per readiness callback (one recvmmsg)
RECV_MAX_BYTES = 65535  # the largest UDP payload: nothing is ever truncated
SEND_BATCH = 64  # datagrams queued before a send cannot wait for the end of the loop iteration
MEDIA_PROBE = b"\x80"  # the first byte of an RTP packet: what MuxTable.on_send needs to see media
DELIVERY_ERRORS_LOGGED = 10  # tracebacks logged per socket; later failures are only counted
SYNC_INTERVAL_S = 0.25  # how often the compiled path's counters reach aiortc's (transport stats, liveness)


class _CallTransport(asyncio.DatagramTransport):
    """One call's view of the shared socket, given to its aioice ``StunProtocol`` as its transport."""

    def __init__(self, endpoint: _Endpoint, route: Route, protocol: aioice.ice.StunProtocol) -> None:
        super().__init__()
        self._endpoint = endpoint
        self._route = route
        self._protocol = protocol
        self._closing = False

    def sendto(self, data: Any, addr: Any = None) -> None:
        endpoint = self._endpoint
        if self._closing or endpoint.closed:
            return
        endpoint.sendto(data, endpoint.table.on_send(self._route, data, addr, endpoint.loop.time()))

    def is_closing(self) -> bool:
        return self._closing or self._endpoint.closed

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._endpoint.table.remove(self._route)
        self._endpoint.loop.call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "sockname":
            return self._endpoint.sockname
        return default

    def get_write_buffer_size(self) -> int:
        return 0

    def attach_direct(self, path: Any) -> tuple[MuxReceiver, int]:
        """The call's direct receive path (relay.media.rtp_in) takes its audio from the compiled
        receiver's slot for this route: ``(receiver, slot)``, to ``arm``/``pause`` it; ``path.sync(counts)``
        is called every ``SYNC_INTERVAL_S`` with what the slot took meanwhile, ``path.detach(receiver, slot)``
        when the route goes."""
        return self._endpoint.attach(self._route, path)

    # -- the direct RTP send path (relay/media/rtp_out.py) writes its packets into the socket's queue
    def media_queue(self) -> SendQueue:
        return self._endpoint.media_queue

    def media_destination(self, addr: Any) -> Any:
        """Where a media datagram for ``addr`` goes (``MuxTable.on_send``: the selected pair, NAT rebinding)."""
        endpoint = self._endpoint
        return endpoint.table.on_send(self._route, MEDIA_PROBE, addr, endpoint.loop.time())


class _Endpoint:
    """One shared UDP socket (one host address, the worker's port): drained a batch per readiness
    callback (``relay._fast.MuxReceiver``: one ``recvmmsg``, armed calls' audio taken in compiled code),
    each other datagram routed by the table. The table's listener (``added``...``last_rx``)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        self.loop = loop
        self.sock = sock
        self._receiver = MuxReceiver(RECV_BATCH, RECV_MAX_BYTES)
        self._paths: dict[int, Any] = {}  # slot -> the call's direct receive path, once attached
        self._sync_due = 0.0
        self._push_errors = 0
        self.table = MuxTable(listener=self)
        host, port = sock.getsockname()[:2]
        self.sockname = (host, port)
        self.closed = False
        self.send_errors = 0
        self.send_batches = 0
        self.delivery_errors = 0
        self._pending: list[tuple[bytes, Any]] = []
        # the direct RTP send path's packets (relay._fast.RtpStream writes them in): one sendmmsg per loop iteration
        self.media_queue = SendQueue(sock, SEND_BATCH, self._media_pending)
        loop.add_reader(sock.fileno(), self._readable)

    # -- the table's listener: the compiled receiver's copy of the address binding
    def added(self, route: Route) -> None:
        route.slot = self._receiver.new_slot()

    def removed(self, route: Route) -> None:
        path = self._paths.pop(route.slot, None)
        if path is not None:
            path.detach(self._receiver, route.slot)  # the slot may serve another call next
        self._receiver.free_slot(route.slot)

    def bound(self, addr: Any, route: Route) -> None:
        self._receiver.bind(addr[0], addr[1], route.slot)

    def unbound(self, addr: Any) -> None:
        self._receiver.unbind(addr[0], addr[1])

    def last_rx(self, addr: Any) -> float:
        return self._receiver.last_rx(addr[0], addr[1])

    def attach(self, route: Route, path: Any) -> tuple[MuxReceiver, int]:
        if route.closed:
            raise KeyError("the call's route is gone")
        self._paths[route.slot] = path
        return self._receiver, route.slot

    def _sync(self) -> None:
        receiver = self._receiver
        for slot, path in list(self._paths.items()):
            try:
                path.sync(receiver.take_counts(slot))
            except Exception:  # one call's failure must not cost the others
                log.exception("ICE port: syncing a call's receive counters failed")
        if receiver.push_errors != self._push_errors:
            self.delivery_errors += receiver.push_errors - self._push_errors
            self._push_errors = receiver.push_errors
            error = receiver.last_push_error
            log.error("ICE port: a call's audio sink failed", exc_info=(type(error), error, error.__traceback__))

    def _readable(self) -> None:
        now = self.loop.time()
        try:
            batch = self._receiver.recv(self.sock, now, time.time())
        except OSError as exc:  # e.g. an ICMP error queued on the socket
            log.debug("ICE port: %s", exc)
            return
        if now >= self._sync_due:
            self._sync_due = now + SYNC_INTERVAL_S
            self._sync()
        classify = self.table.classify
        for data, addr in batch:
            if len(addr) > 2:
                addr = (addr[0], addr[1])
            hit = classify(data, addr, now)
            if hit is not None:
                try:
                    hit[0].owner.datagram_received(data, hit[1])
                except Exception:  # one call's failure must not cost the rest of the batch (other calls)
                    self.delivery_errors += 1
                    if self.delivery_errors <= DELIVERY_ERRORS_LOGGED:
                        log.exception("ICE port: a call's datagram handler failed")

    def sendto(self, data: bytes, addr: Any) -> None:
        """Queue a datagram; the queue leaves in one ``sendmmsg`` at the end of this loop iteration
        (a clock tick's packets of every call together), or at once when ``SEND_BATCH`` are queued."""
        pending = self._pending
        pending.append((data, addr))
        if len(pending) == 1:
            self.loop.call_soon(self.flush)
        elif len(pending) >= SEND_BATCH:
            self.flush()

    def flush(self) -> None:
        pending = self._pending
        if not pending:
            return
        self._pending = []
        if self.closed:
            return
        try:
            sent = send_batch(self.sock, pending)
        except (OSError, TypeError, ValueError):  # one bad datagram: send them one by one
            sent = 0
            for data, addr in pending:
                try:
                    self.sock.sendto(data, addr)
                    sent += 1
                except (OSError, TypeError, ValueError):
                    self.send_errors += 1
            return
        self.send_batches += 1
        if sent < len(pending):  # the send buffer is full: UDP, the rest is lost (as with a full transport)
            self.send_errors += len(pending) - sent

    def _media_pending(self) -> None:
        self.loop.call_soon(self._flush_media)

    def _flush_media(self) -> None:
        if not self.closed:
            self.media_queue.flush()  # never raises: unsendable datagrams are counted in its send_errors

    def close(self) -> None:
        if not self.closed:
            self.flush()
            self._flush_media()
            self.closed = True
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()


class IceMux:
    """The worker's ICE port: ``open()`` at start-up, ``host_candidates`` per call, ``close()`` at the end."""

    def __init__(self, port: int) -> None:
        if not 0 <= port <= 65535:
            raise ValueError("the ICE UDP port must be 0..65535")
        self.port = port  # 0: an ephemeral port, chosen by the first socket bound
        self._endpoints: dict[str, _Endpoint] = {}
        self._reserved: set[str] = set()  # ufrags of this port's live ICE connections
        self._closed = False

    def tables(self) -> list[MuxTable]:
        return [e.table for e in self._endpoints.values()]

    async def open(self, addresses: list[str]) -> None:
        """Bind the port on every address now: ``OSError`` when it is taken (or nothing could be bound);
        an address that cannot be bound for another reason is skipped with a warning."""
        bound = 0
        for address in addresses:
            try:
                await self._endpoint(address)
                bound += 1
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise
                log.warning("ICE port: cannot bind UDP %s:%d: %s", address, self.port, exc)
        if addresses and not bound:
            raise OSError(errno.EADDRNOTAVAIL, "no host address could be bound")

    async def _endpoint(self, address: str) -> _Endpoint:
        endpoint = self._endpoints.get(address)
        if endpoint is not None:
            return endpoint
        if self._closed:
            raise OSError("the ICE port is closed")
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((address, self.port))
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * aioice.turn.UDP_SOCKET_BUFFER_SIZE)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * aioice.turn.UDP_SOCKET_BUFFER_SIZE)
        except OSError:
            sock.close()
            raise
        endpoint = self._endpoints[address] = _Endpoint(asyncio.get_running_loop(), sock)
        sockname = endpoint.sockname
        if self.port == 0:
            self.port = sockname[1]
        log.info("ICE port: every call's host candidate on %s is UDP %s:%d", address, sockname[0], sockname[1])
        return endpoint

    def _ufrag_taken(self, ufrag: str) -> bool:
        key = ufrag.encode()
        return ufrag in self._reserved or any(e.table.has_ufrag(key) for e in self._endpoints.values())

    def reserve(self, connection: aioice.ice.Connection) -> None:
        """Give ``connection`` a ufrag no other call on this port has or has reserved (before its answer
        is written); it stays reserved while the connection object lives."""
        ufrag = connection.local_username
        if self._ufrag_taken(ufrag):
            for attempt in range(UFRAG_DRAWS * 2):
                ufrag = random_string(4 if attempt < UFRAG_DRAWS else 8)
                if not self._ufrag_taken(ufrag):
                    break
            else:
                raise RuntimeError("no free ICE ufrag")  # 62^8 of them: not reached
            connection._local_username = ufrag
        self._reserved.add(ufrag)
        weakref.finalize(connection, self._reserved.discard, ufrag)

    async def host_candidates(self, connection: aioice.ice.Connection, component: int,
                              addresses: list[str]) -> list[Candidate]:
        """The call's host candidates: the shared socket of each address (what aioice's
        ``get_component_candidates`` returns, with the StunProtocols in ``connection._protocols``)."""
        candidates: list[Candidate] = []
        ufrag = connection.local_username.encode()
        password = connection.local_password.encode()
        for address in addresses:
            try:
                endpoint = await self._endpoint(address)
            except OSError as exc:
                log.warning("ICE port: cannot bind UDP %s:%d: %s", address, self.port, exc)
                continue
            protocol = aioice.ice.StunProtocol(connection)
            try:
                route = endpoint.table.add(ufrag, password, protocol)
            except KeyError:
                log.warning("ICE port: ufrag %r already in use on %s", connection.local_username, address)
                continue
            protocol.connection_made(_CallTransport(endpoint, route, protocol))
            host, port = endpoint.sockname
            candidates.append(add_host_candidate(connection, protocol, component, host, port))
        return candidates

    def stats(self) -> dict[str, int]:
        """The port's counters, summed over its sockets: the routing tables' sizes and drops, and the media
        send queues' (``relay._fast.SendQueue``: the SRTP every call's direct send path writes in)
        ``media_datagrams_sent``, ``media_send_batches`` (flushes that had datagrams: one ``sendmmsg``,
        more after a partial send) and ``media_send_errors`` (datagrams lost: the socket's send buffer
        was full, or the kernel refused the datagram)."""
        out = {"routes": 0, "addresses": 0, "transactions": 0, "dropped_unknown_source": 0,
               "dropped_unknown_ufrag": 0, "dropped_unknown_transaction": 0, "dropped_bad_integrity": 0,
               "rebinds": 0, "media_datagrams_sent": 0, "media_send_batches": 0, "media_send_errors": 0}
        for table in self.tables():
            routes, addrs, tids = table.sizes()
            out["routes"] += routes
            out["addresses"] += addrs
            out["transactions"] += tids
            for key in ("dropped_unknown_source", "dropped_unknown_ufrag", "dropped_unknown_transaction",
                        "dropped_bad_integrity", "rebinds"):
                out[key] += getattr(table, key)
        for endpoint in self._endpoints.values():
            queue = endpoint.media_queue
            out["media_datagrams_sent"] += queue.datagrams_sent
            out["media_send_batches"] += queue.batches
            out["media_send_errors"] += queue.send_errors
        return out

    def close(self) -> None:
        self._closed = True
        for endpoint in self._endpoints.values():
            endpoint.close()
        self._endpoints.clear()
