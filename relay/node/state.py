"""The node's shared state: one small table in shared memory, one row per worker.

The supervisor maps it (anonymous ``MAP_SHARED`` memory) before it forks the workers, so every
worker sees every row. A worker writes only its own row (its load, its limit, whether it is ready
or draining); the supervisor writes the node's draining flag and the restart count. Readers take
the values as they are: every field is one aligned 32-bit integer, written in one store.

What reads it: ``/readyz`` (the node is ready while it is not draining and some ready worker has
room), the SDP hand-off (a full worker gives the call to a sibling with room), ``/metrics``
(restarts). ``choose_sibling`` is the whole hand-off policy, sans I/O.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass

_FIELDS = ("pid", "ready", "load", "max_calls", "draining")
_ROW = struct.Struct("<" + "i" * len(_FIELDS))
_HEAD = struct.Struct("<iii")  # workers, node draining, restarts
BALANCE_MARGIN = 2  # a worker hands a call over when a sibling carries at least this many fewer


@dataclass(frozen=True)
class WorkerRow:
    index: int
    pid: int
    ready: bool
    load: int  # live + admitted-but-answering calls
    max_calls: int
    draining: bool

    @property
    def room(self) -> int:
        return self.max_calls - self.load if self.ready and not self.draining else 0


class NodeState:
    """The shared table (``create`` in the supervisor before forking; the children inherit it)."""

    def __init__(self, workers: int, buf: mmap.mmap, run_dir: str = "") -> None:
        self.workers = workers
        self._buf = buf
        self.run_dir = run_dir  # the workers' private Unix sockets (relay.node.handoff)

    @classmethod
    def create(cls, workers: int, run_dir: str = "") -> NodeState:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        buf = mmap.mmap(-1, _HEAD.size + _ROW.size * workers)  # anonymous, shared with forked children
        _HEAD.pack_into(buf, 0, workers, 0, 0)
        return cls(workers, buf, run_dir)

    # --- the node ---------------------------------------------------------
    @property
    def draining(self) -> bool:
        return bool(_HEAD.unpack_from(self._buf, 0)[1])

    def set_draining(self) -> None:
        struct.pack_into("<i", self._buf, 4, 1)

    @property
    def restarts(self) -> int:
        return _HEAD.unpack_from(self._buf, 0)[2]

    def count_restart(self) -> None:
        struct.pack_into("<i", self._buf, 8, self.restarts + 1)

    # --- the rows ---------------------------------------------------------
    def row(self, index: int) -> WorkerRow:
        values = _ROW.unpack_from(self._buf, _HEAD.size + _ROW.size * index)
        pid, ready, load, max_calls, draining = values
        return WorkerRow(index, pid, bool(ready), load, max_calls, bool(draining))

    def rows(self) -> list[WorkerRow]:
        return [self.row(i) for i in range(self.workers)]

    def _set(self, index: int, field: str, value: int) -> None:
        struct.pack_into("<i", self._buf, _HEAD.size + _ROW.size * index + 4 * _FIELDS.index(field), value)

    def reset_row(self, index: int, pid: int = 0) -> None:
        _ROW.pack_into(self._buf, _HEAD.size + _ROW.size * index, pid, 0, 0, 0, 0)

    def worker(self, index: int) -> WorkerSlot:
        return WorkerSlot(self, index)

    def ready(self) -> tuple[bool, str]:
        """Whether the node takes new calls, and why not (``draining``, ``full``, ``starting``)."""
        if self.draining:
            return False, "draining"
        rows = self.rows()
        if not any(r.ready and not r.draining for r in rows):
            return False, "starting" if not any(r.draining for r in rows) else "draining"
        if not any(r.room > 0 for r in rows):
            return False, "full"
        return True, ""


@dataclass(frozen=True)
class WorkerSlot:
    """One worker's view of the table: its own row to write, its siblings' to read."""

    node: NodeState
    index: int

    @property
    def count(self) -> int:
        return self.node.workers

    def started(self, max_calls: int) -> None:
        self.node._set(self.index, "pid", os.getpid())
        self.node._set(self.index, "max_calls", max_calls)
        self.node._set(self.index, "ready", 1)

    def set_load(self, load: int) -> None:
        self.node._set(self.index, "load", load)

    def set_draining(self) -> None:
        self.node._set(self.index, "draining", 1)

    def siblings(self) -> list[WorkerRow]:
        return [r for r in self.node.rows() if r.index != self.index]


def choose_sibling(own_load: int, own_max: int, siblings: list[WorkerRow], *,
                   margin: int = BALANCE_MARGIN) -> int | None:
    """The sibling that should answer a new call instead of this worker, or None to answer it here.

    Full here: the sibling with the most room (None when every sibling is full too). Room here:
    a sibling only when it carries at least ``margin`` fewer calls (the kernel's accept does not
    spread connections evenly; a small margin keeps the extra hop rare).
    """
    candidates = [r for r in siblings if r.room > 0]
    if not candidates:
        return None
    best = max(candidates, key=lambda r: (r.room, -r.load, -r.index))
    if own_load >= own_max:
        return best.index
    least = min(candidates, key=lambda r: (r.load, r.index))
    return least.index if own_load - least.load >= margin else None


MIN_ICE_PORTS_PER_WORKER = 10  # with ice_mux off: each worker's slice of the range (one port per call)
MAX_UDP_PORT = 65535


def check_node_ports(ice_mux: bool, ice_udp_port: int, ice_port_min: int, ice_port_max: int, workers: int) -> None:
    """What ``relay serve --workers N`` refuses before anything binds (``ValueError``, one line naming the
    settings): with ``ice_mux`` on, worker i listens on ``ice_udp_port + i``, so the last one must be a
    port (``ice_udp_port + workers - 1 <= 65535``); with a per-call range, each worker's slice of it
    must hold at least ``MIN_ICE_PORTS_PER_WORKER`` ports (one per call)."""
    if workers < 2:
        return  # one worker: its ports are checked by the media plane's setup (relay/web/realtime.py)
    if ice_mux and ice_udp_port and ice_udp_port + workers - 1 > MAX_UDP_PORT:
        raise ValueError(f"ice_udp_port {ice_udp_port} + workers {workers} - 1 = {ice_udp_port + workers - 1} "
                         f"is above {MAX_UDP_PORT} (worker i listens on ice_udp_port + i): lower ice_udp_port "
                         "or workers")
    if not (ice_port_min or ice_port_max):
        return
    if not 0 < ice_port_min <= ice_port_max <= MAX_UDP_PORT:
        raise ValueError("ice_port_min/ice_port_max: need 0 < min <= max <= 65535 (or both 0)")
    size = ice_port_max - ice_port_min + 1
    if size // workers < MIN_ICE_PORTS_PER_WORKER:
        raise ValueError(f"ice_port_min..ice_port_max has {size} port(s): split over workers {workers}, "
                         f"{size // workers} per worker, fewer than {MIN_ICE_PORTS_PER_WORKER} (one per call): "
                         "widen the range or lower workers")


def port_slice(port_min: int, port_max: int, index: int, workers: int) -> tuple[int, int] | None:
    """Worker ``index``'s disjoint share of the UDP range ``port_min..port_max`` (None: any port).

    The range splits into ``workers`` contiguous slices; the first ones get the remainder.
    ``ValueError`` when the range has fewer ports than workers.
    """
    if not port_min:
        return None
    size = port_max - port_min + 1
    if size < workers:
        raise ValueError(f"ice_port_min..ice_port_max has {size} port(s), fewer than the {workers} workers")
    base, extra = divmod(size, workers)
    start = port_min + index * base + min(index, extra)
    return start, start + base + (1 if index < extra else 0) - 1
