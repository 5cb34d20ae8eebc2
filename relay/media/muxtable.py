"""The routing table of the worker's single ICE port: which call does a datagram belong to (sans-I/O).

Every call's ICE connection is a ``Route`` keyed by its local ICE username fragment (ufrag). A
datagram that reaches the worker's one UDP socket is routed by ``MuxTable.classify(data, addr,
now_s)``:

- a STUN Binding request (RFC 8489 header, method Binding, class request) by the local ufrag, the
  part before ``:`` of its USERNAME attribute. An unknown ufrag is dropped after one dict lookup;
  nothing is kept. A request from an address not yet bound to that route must pass the route's
  MESSAGE-INTEGRITY check (HMAC-SHA1 with the call's local ICE password) before the address is
  bound; a request that fails it is dropped and binds nothing.
- a STUN response or error by its transaction id, recorded when the route sent the request
  (``on_send``): the answers to relay's own connectivity and consent checks. Unknown ids are dropped.
- anything else (DTLS, SRTP, SRTCP, STUN indications) by the source address, bound above. An unknown
  source is dropped after one dict lookup, before any parsing.

NAT rebinding: once the call carries media (a non-STUN datagram sent, ``Route.peer``: the address
ICE selected), a valid request from a new address while the current path has been silent for
``REBIND_SILENCE_S`` moves the call to the new address *below* ICE: datagrams to the selected
address go to the new one, and datagrams from the new one are handed to ICE as if from the selected
address. aioice's pair, its consent checks and the DTLS/SRTP state carry on unchanged. A device
that merely checks another of its candidates while its path is alive does not move the call.

The compiled receive path (``relay._fast.MuxReceiver``) keeps a C copy of the address binding, so
that a call's SRTP audio never reaches this table: a ``listener`` (the I/O edge) hears every route
``added``/``removed`` and every address ``bound``/``unbound``, and answers ``last_rx(addr)`` (when
the compiled path last took a datagram from it), which counts as the path's traffic for NAT rebinding.

Limits: ``MAX_ADDRS_PER_ROUTE`` bound addresses per route (the oldest goes), ``MAX_TRANSACTIONS``
outstanding transaction ids per table (the oldest goes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from aioice import stun

STUN_HEADER_BYTES = 20
STUN_MAGIC_COOKIE = b"\x21\x12\xa4\x42"
BINDING_REQUEST = 0x0001
ATTR_USERNAME = 0x0006
MAX_ATTRS_BEFORE_USERNAME = 16  # attributes walked looking for USERNAME before giving up
MAX_ADDRS_PER_ROUTE = 8
MAX_TRANSACTIONS = 8192
REBIND_SILENCE_S = 2.0

Addr = tuple[Any, ...]


def is_stun(data: bytes) -> bool:
    """RFC 7983 demultiplexing: first byte 0..3, plus the RFC 8489 magic cookie."""
    return len(data) >= STUN_HEADER_BYTES and data[0] < 4 and data[4:8] == STUN_MAGIC_COOKIE


def request_ufrag(data: bytes) -> bytes | None:
    """The local ufrag (USERNAME up to ``:``) of a STUN message ``data`` (header checked by the caller)."""
    end = min(len(data), STUN_HEADER_BYTES + ((data[2] << 8) | data[3]))
    pos = STUN_HEADER_BYTES
    for _ in range(MAX_ATTRS_BEFORE_USERNAME):
        if pos + 4 > end:
            return None
        kind = (data[pos] << 8) | data[pos + 1]
        length = (data[pos + 2] << 8) | data[pos + 3]
        if kind == ATTR_USERNAME:
            stop = pos + 4 + length
            if stop > end:
                return None
            colon = data.find(b":", pos + 4, stop)
            return data[pos + 4:colon] if colon > pos + 4 else None
        pos += 4 + ((length + 3) & ~3)
    return None


def integrity_ok(data: bytes, password: bytes) -> bool:
    """``data`` parses as STUN (FINGERPRINT checked when present) and its MESSAGE-INTEGRITY matches."""
    try:
        message = stun.parse_message(data)
    except ValueError:
        return False
    return "MESSAGE-INTEGRITY" in message.attributes and message.check_message_integrity(password)


class Route:
    """One ICE connection on the shared port."""

    __slots__ = ("addrs", "closed", "inbound", "outbound", "owner", "password", "path_rx_s", "peer", "slot", "tids",
                 "ufrag")

    def __init__(self, ufrag: bytes, password: bytes, owner: Any) -> None:
        self.ufrag = ufrag
        self.password = password
        self.owner = owner  # what the edge delivers to (opaque here)
        self.addrs: dict[Addr, None] = {}  # bound source addresses, oldest first
        self.tids: set[bytes] = set()
        self.peer: Addr | None = None  # the address ICE sends media to (its selected pair)
        self.outbound: dict[Addr, Addr] = {}  # NAT rebinding: ICE's address -> the peer's address now
        self.inbound: dict[Addr, Addr] = {}  # and back
        self.path_rx_s = 0.0  # when the peer's current address last sent anything (through this table)
        self.slot = -1  # the listener's handle for this route (the compiled receive path's slot)
        self.closed = False

    def current_path(self) -> Addr | None:
        peer = self.peer
        return None if peer is None else self.outbound.get(peer, peer)


class Listener(Protocol):
    """What the I/O edge hears of the table (see the module docstring)."""

    def added(self, route: Route) -> None: ...
    def removed(self, route: Route) -> None: ...
    def bound(self, addr: Addr, route: Route) -> None: ...
    def unbound(self, addr: Addr) -> None: ...
    def last_rx(self, addr: Addr) -> float: ...


class MuxTable:
    """Routes datagrams of one shared socket to routes (see the module docstring)."""

    def __init__(self, *, verify: Callable[[bytes, bytes], bool] = integrity_ok,
                 listener: Listener | None = None) -> None:
        self._by_ufrag: dict[bytes, Route] = {}
        self._by_addr: dict[Addr, Route] = {}
        self._by_tid: dict[bytes, Route] = {}
        self._verify = verify
        self._listener = listener
        self.dropped_unknown_source = 0
        self.dropped_unknown_ufrag = 0
        self.dropped_unknown_transaction = 0
        self.dropped_bad_integrity = 0
        self.rebinds = 0

    # -- routes ------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._by_ufrag)

    def has_ufrag(self, ufrag: bytes) -> bool:
        return ufrag in self._by_ufrag

    def add(self, ufrag: bytes, password: bytes, owner: Any) -> Route:
        """A new route; ``KeyError`` if ``ufrag`` is taken on this socket."""
        if ufrag in self._by_ufrag:
            raise KeyError("ICE ufrag already in use on this port")
        route = self._by_ufrag[ufrag] = Route(ufrag, password, owner)
        if self._listener is not None:
            self._listener.added(route)
        return route

    def remove(self, route: Route) -> None:
        if route.closed:
            return
        route.closed = True
        if self._by_ufrag.get(route.ufrag) is route:
            del self._by_ufrag[route.ufrag]
        for addr in route.addrs:
            if self._by_addr.get(addr) is route:
                del self._by_addr[addr]
                if self._listener is not None:
                    self._listener.unbound(addr)
        for tid in route.tids:
            if self._by_tid.get(tid) is route:
                del self._by_tid[tid]
        route.addrs.clear()
        route.tids.clear()
        if self._listener is not None:
            self._listener.removed(route)

    def sizes(self) -> tuple[int, int, int]:
        """(routes, bound addresses, outstanding transactions): what the table holds."""
        return len(self._by_ufrag), len(self._by_addr), len(self._by_tid)

    # -- receive -----------------------------------------------------------------
    def classify(self, data: bytes, addr: Addr, now_s: float) -> tuple[Route, Addr] | None:
        """``(route, the address ICE is to see)`` for a datagram from ``addr``, or None: drop it."""
        if is_stun(data):
            kind = (data[0] << 8) | data[1]
            if kind == BINDING_REQUEST:
                return self._request(data, addr, now_s)
            if kind & 0x0100:  # class response (0b10) or error (0b11): the C1 bit
                route = self._by_tid.pop(data[8:20], None)
                if route is None:
                    self.dropped_unknown_transaction += 1
                    return None
                route.tids.discard(data[8:20])
                return route, route.inbound.get(addr, addr)
        route = self._by_addr.get(addr)
        if route is None:
            self.dropped_unknown_source += 1
            return None
        if route.peer is not None and addr == route.current_path():
            route.path_rx_s = now_s
        return route, route.inbound.get(addr, addr)

    def _request(self, data: bytes, addr: Addr, now_s: float) -> tuple[Route, Addr] | None:
        ufrag = request_ufrag(data)
        route = self._by_ufrag.get(ufrag) if ufrag is not None else None
        if route is None:
            self.dropped_unknown_ufrag += 1
            return None
        bound = self._by_addr.get(addr) is route
        on_path = route.peer is None or addr == route.current_path()
        if not bound or not on_path:
            if not self._verify(data, route.password):
                self.dropped_bad_integrity += 1
                return None
            if not bound:
                self._bind(route, addr)
            if not on_path:
                self._maybe_rebind(route, addr, now_s)
        if route.peer is not None and addr == route.current_path():
            route.path_rx_s = now_s
        return route, route.inbound.get(addr, addr)

    def _bind(self, route: Route, addr: Addr) -> None:
        owner = self._by_addr.get(addr)
        if owner is not None:
            owner.addrs.pop(addr, None)
        self._by_addr[addr] = route
        route.addrs[addr] = None
        if self._listener is not None:
            self._listener.bound(addr, route)
        if len(route.addrs) > MAX_ADDRS_PER_ROUTE:
            keep = {route.current_path(), addr}
            for old in list(route.addrs):
                if old not in keep:
                    del route.addrs[old]
                    if self._by_addr.get(old) is route:
                        del self._by_addr[old]
                        if self._listener is not None:
                            self._listener.unbound(old)
                    break

    def _maybe_rebind(self, route: Route, addr: Addr, now_s: float) -> None:
        peer = route.peer
        if peer is None:
            return
        if addr == peer or now_s - self._path_rx_s(route) >= REBIND_SILENCE_S:
            # the peer's path went quiet and a valid check came from elsewhere: NAT rebinding
            if addr == peer:
                route.outbound.clear()
                route.inbound.clear()
            else:
                route.outbound = {peer: addr}
                route.inbound = {addr: peer}
            route.path_rx_s = now_s
            self.rebinds += 1

    def _path_rx_s(self, route: Route) -> float:
        """When the peer's current address last sent anything, here or through the compiled path."""
        path = route.current_path()
        if self._listener is None or path is None:
            return route.path_rx_s
        return max(route.path_rx_s, self._listener.last_rx(path))

    # -- send --------------------------------------------------------------------
    def on_send(self, route: Route, data: bytes, addr: Addr, now_s: float) -> Addr:
        """Where a datagram ICE sends to ``addr`` really goes; records STUN requests' transaction ids
        and learns the selected address from the first bytes of media."""
        if data and data[0] < 4:
            if len(data) >= STUN_HEADER_BYTES and data[0] == 0 and data[1] == 1:  # a Binding request
                tid = data[8:20]
                if tid not in self._by_tid:
                    if len(self._by_tid) >= MAX_TRANSACTIONS:
                        oldest = next(iter(self._by_tid))
                        self._by_tid.pop(oldest).tids.discard(oldest)
                    self._by_tid[tid] = route
                    route.tids.add(tid)
        elif route.peer != addr:
            route.peer = addr  # DTLS/SRTP go to the selected pair only
            route.outbound = {}
            route.inbound = {}
            route.path_rx_s = now_s
        return route.outbound.get(addr, addr) if route.outbound else addr
