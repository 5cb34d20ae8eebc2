"""This process's CPU time, memory and file descriptors, read from ``/proc/self`` (Linux).

Each reader returns ``None`` where ``/proc`` is not there (the metric is then left out).
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE_BYTES = resource.getpagesize()


@dataclass(frozen=True)
class ProcessStats:
    cpu_seconds: float
    resident_bytes: int
    virtual_bytes: int
    start_time_s: float | None
    open_fds: int | None
    max_fds: int


def _boot_time_s() -> float | None:
    try:
        with open("/proc/stat", "rb") as f:
            for line in f:
                if line.startswith(b"btime "):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def read_process_stats() -> ProcessStats | None:
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
        with open("/proc/self/statm", "rb") as f:
            statm = f.read().split()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its last ')'
    fields = stat[stat.rindex(b")") + 2:].split()
    utime, stime, starttime = int(fields[11]), int(fields[12]), int(fields[19])
    boot = _boot_time_s()
    try:
        open_fds: int | None = len(os.listdir("/proc/self/fd"))
    except OSError:
        open_fds = None
    return ProcessStats(
        cpu_seconds=(utime + stime) / _CLK_TCK,
        resident_bytes=int(statm[1]) * _PAGE_BYTES,
        virtual_bytes=int(statm[0]) * _PAGE_BYTES,
        start_time_s=None if boot is None else boot + starttime / _CLK_TCK,
        open_fds=open_fds,
        max_fds=resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    )
