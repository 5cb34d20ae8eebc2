"""CPU and memory of a process (and its children) from /proc, sampled by the bench."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


@dataclass
class Sample:
    t_s: float
    cpu_s: float  # user + system, this process and its live descendants
    rss_bytes: int
    wait_s: float = 0.0  # main thread's time runnable but waiting for a CPU (/proc/<pid>/schedstat)


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            out = [int(p) for p in fh.read().split()]
    except OSError:
        return []
    for child in list(out):
        out += _children(child)
    return out


def _one(pid: int) -> tuple[float, int]:
    with open(f"/proc/{pid}/stat") as fh:
        stat = fh.read()
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu_s = (int(fields[11]) + int(fields[12])) / TICKS_PER_S  # utime, stime
    rss = 0
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
                break
    return cpu_s, rss


def sample(pid: int, *, children: bool = True) -> Sample:
    """CPU seconds and RSS of ``pid`` (plus descendants); raises ``OSError`` if it is gone."""
    cpu_s, rss = _one(pid)
    wait_s = _runqueue_wait_s(pid)
    if children:
        for child in _children(pid):
            try:
                c, r = _one(child)
            except OSError:
                continue
            cpu_s += c
            rss += r
    return Sample(time.monotonic(), cpu_s, rss, wait_s)


def _runqueue_wait_s(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/schedstat") as fh:
            return int(fh.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def wait_percent(a: Sample, b: Sample) -> float:
    """% of wall time the main thread was runnable but not running: how oversubscribed the machine is."""
    dt = b.t_s - a.t_s
    return 100.0 * (b.wait_s - a.wait_s) / dt if dt > 0 else 0.0


def cpu_percent(a: Sample, b: Sample) -> float:
    """Average CPU between two samples, in % of one core."""
    dt = b.t_s - a.t_s
    return 100.0 * (b.cpu_s - a.cpu_s) / dt if dt > 0 else 0.0


def self_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def parse_prometheus(text: str) -> tuple[float | None, int | None]:
    """(process_cpu_seconds_total, process_resident_memory_bytes) summed over series, from Prometheus text."""
    cpu: float | None = None
    rss: int | None = None
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        try:
            value = float(line.rsplit(" ", 1)[-1])
        except ValueError:
            continue
        if name == "process_cpu_seconds_total":
            cpu = (cpu or 0.0) + value
        elif name == "process_resident_memory_bytes":
            rss = (rss or 0) + int(value)
    return cpu, rss


async def sample_metrics(session: object, url: str, token: str | None = None) -> Sample | None:
    """CPU/RSS from a Prometheus metrics endpoint (standard ``process_*`` metrics); None if absent."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.get(url, headers=headers) as resp:  # type: ignore[attr-defined]
        if resp.status != 200:
            return None
        text = await resp.text()
    cpu, rss = parse_prometheus(text)
    if cpu is None or rss is None:
        return None
    return Sample(time.monotonic(), cpu, rss)
