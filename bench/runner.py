"""One load scenario: N devices ramped up against a base URL, held for a duration, measured."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

from bench import procstat
from bench.audio import BenchAudio
from bench.device import Device, DeviceConfig, DeviceResult
from bench.report import percentile, summarize

log = logging.getLogger("bench.runner")

MAX_DEVICES = 2000
SETTLE_S = 1.0
WATCHDOG_SLACK_S = 60.0


@dataclass
class Scenario:
    base_url: str
    n: int
    rate_per_s: float = 20.0  # ramp-up: new calls per second
    duration_s: float = 10.0  # steady state after the ramp
    demo: bool = True
    client_ids: list[str] | None = None
    client_secrets: list[str] | None = None
    client_id_prefix: str = ""
    assistant_id: str | None = None
    create_session: bool = True
    relay_pid: int | None = None
    metrics_url: str | None = None  # Prometheus endpoint with process_* metrics (instead of a pid)
    metrics_token: str | None = None  # its bearer token (relay: metrics_token or admin_token)
    stats_url: str | None = None  # relay's GET /v1/realtime/stats (internal latencies, clock overruns)
    stats_token: str | None = None  # its admin bearer token
    label: str = "relay"
    progress: bool = True
    extra_pids: dict[str, int] | None = None  # other processes to measure (e.g. the assistant)
    fast_devices: bool = True  # devices' audio on relay's compiled paths (bench.fastpath), not aiortc's
    workload: str = "loopback"  # loopback | echo | short (what the devices track; the model is the relay's)
    phase: str = "random"  # where each device's audio starts: "random" (seeded) or "aligned" (all in step)
    seed: int = 1


PHASES = ("random", "aligned")
FRAME_S = 0.02


def start_points(n: int, n_packets: int, phase: str, seed: int) -> list[tuple[float, int]]:
    """Per device: (delay before its first frame in s, within one 20 ms frame; packet index to start at).

    ``aligned``: every device at (0, 0), in step (what the bench did before). ``random``: uniform
    over the frame and over the audio, from ``random.Random(seed)``, so a run is reproducible.
    """
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}")
    if phase == "aligned" or n_packets <= 0:
        return [(0.0, 0)] * n
    rng = random.Random(seed)
    return [(rng.uniform(0.0, FRAME_S), rng.randrange(n_packets)) for _ in range(n)]


def _config(sc: Scenario, i: int, point: tuple[float, int]) -> DeviceConfig:
    cid, secret = _credentials(sc, i)
    return DeviceConfig(
        sc.base_url,
        cid,
        secret,
        demo=sc.demo,
        assistant_id=sc.assistant_id,
        create_session=sc.create_session,
        phase_s=point[0],
        start_index=point[1],
        workload=sc.workload,
        fast=sc.fast_devices,
    )


def _credentials(sc: Scenario, i: int) -> tuple[str, str | None]:
    if sc.client_ids:
        cid = sc.client_ids[i % len(sc.client_ids)]
        secret = sc.client_secrets[i % len(sc.client_secrets)] if sc.client_secrets else None
        return cid, secret
    prefix = sc.client_id_prefix or f"bench-{uuid.uuid4().hex[:8]}"
    sc.client_id_prefix = prefix
    # TOFU: a fresh id per device and run, its secret derived from it (enrolled on first use)
    return f"{prefix}-{i:04d}", f"bench-secret-{prefix}-{i:04d}-" + "0" * 16


async def run(sc: Scenario, audio: BenchAudio) -> dict[str, Any]:
    """Run the scenario; returns the report dict (see ``bench.report.summarize``).

    Bounded in time: the whole run (ramp, steady state, hang-ups) is cut off
    by a watchdog at ramp + duration + ``WATCHDOG_SLACK_S``.
    """
    if not 1 <= sc.n <= MAX_DEVICES:
        raise ValueError(f"n must be 1..{MAX_DEVICES}")
    if not (0 < sc.rate_per_s <= 1000 and 0 < sc.duration_s <= 3600):
        raise ValueError("rate must be in (0, 1000] calls/s and duration in (0, 3600] s")
    limit_s = sc.n / sc.rate_per_s + sc.duration_s + WATCHDOG_SLACK_S
    async with asyncio.timeout(limit_s):
        return await _run(sc, audio)


async def _run(sc: Scenario, audio: BenchAudio) -> dict[str, Any]:
    points = start_points(sc.n, len(audio.packets), sc.phase, sc.seed)
    devices = [Device(i, _config(sc, i, points[i]), audio) for i in range(sc.n)]
    relay_base = await _relay_sample(sc)
    self_cpu0 = procstat.self_cpu_s()
    t0 = time.monotonic()
    starts: list[asyncio.Task[None]] = []
    lags_ms: list[float] = []
    relay_stats: dict[str, Any] | None = None
    stats_a: dict[str, Any] | None = None
    extra_a: dict[str, procstat.Sample | None] = {}
    extra_b: dict[str, procstat.Sample | None] = {}
    timeline: list[dict[str, Any]] = []
    progress = asyncio.ensure_future(_timeline(sc, devices, t0, timeline))
    try:
        for i, dev in enumerate(devices):
            due = t0 + i / sc.rate_per_s
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            starts.append(asyncio.ensure_future(dev.start()))
        await asyncio.gather(*starts)
        ramp_end = time.monotonic()
        await asyncio.sleep(SETTLE_S)
        relay_a = await _relay_sample(sc)
        stats_a = await _relay_stats(sc)
        extra_a = {k: _sample(p) for k, p in (sc.extra_pids or {}).items()}
        self_a = (time.monotonic(), procstat.self_cpu_s())
        sys_a = os.times().system
        lag = asyncio.ensure_future(_loop_lag(sc.duration_s))
        await asyncio.sleep(sc.duration_s)
        lags_ms = await lag
        relay_b = await _relay_sample(sc)
        relay_stats = await _relay_stats(sc)
        extra_b = {k: _sample(p) for k, p in (sc.extra_pids or {}).items()}
        self_b = (time.monotonic(), procstat.self_cpu_s())
        sys_b = os.times().system
    finally:
        for task in starts:
            task.cancel()
        progress.cancel()
        await asyncio.gather(progress, return_exceptions=True)
        results: list[DeviceResult] = list(await asyncio.gather(*(d.stop() for d in devices)))
        if sc.progress:
            sys.stderr.write("\n")
    loadavg = os.getloadavg()[0]
    measure: dict[str, Any] = {
        "loadavg_1m": round(loadavg, 2),
        "ramp_s": round(ramp_end - t0, 3),
        "steady_s": round(self_b[0] - self_a[0], 3),
        "bench_cpu_pct": round(100.0 * (self_b[1] - self_a[1]) / max(1e-9, self_b[0] - self_a[0]), 2),
        "bench_cpu_total_s": round(procstat.self_cpu_s() - self_cpu0, 3),
        # of bench_cpu_pct, the kernel's share: sendto/recv and, on loopback, delivering each packet to relay
        "bench_sys_cpu_pct": round(100.0 * (sys_b - sys_a) / max(1e-9, self_b[0] - self_a[0]), 2),
        # how late the tester's own loop wakes up: an upper bound on what it adds to each timestamp
        "bench_loop_lag_ms": {"p50": percentile(lags_ms, 50), "p99": percentile(lags_ms, 99)},
    }
    for name, a in extra_a.items():
        b = extra_b.get(name)
        if a and b:
            measure[f"{name}_cpu_pct"] = round(procstat.cpu_percent(a, b), 2)
    if relay_base and relay_a and relay_b:
        measure["relay_cpu_pct"] = round(procstat.cpu_percent(relay_a, relay_b), 2)
        measure["relay_runqueue_wait_pct"] = round(procstat.wait_percent(relay_a, relay_b), 2)
        measure["relay_rss_base_bytes"] = relay_base.rss_bytes
        measure["relay_rss_bytes"] = relay_b.rss_bytes
    report = summarize(sc.label, sc.n, sc.rate_per_s, sc.duration_s, results, measure)
    if relay_stats is not None:
        report["relay_stats"] = relay_stats
        batches = encode_batches(stats_a, relay_stats)
        if batches is not None:
            report["relay_clock"] = batches
    report["timeline"] = timeline
    report["phase"] = {"mode": sc.phase, "seed": sc.seed}
    report["workload"] = sc.workload
    report["device_path"] = "fast" if sc.fast_devices else "aiortc"
    return report


def encode_batches(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any] | None:
    """Over the steady state, from two ``GET /v1/realtime/stats`` snapshots: media-clock ticks, encode
    batches (hand-offs to the encode thread) and audio frames sent; ``audio_frames_per_batch`` is
    audio frames / batches (an encoder's drain frames after speech are encoded too but counted as
    silent: the figure slightly understates a batch)."""

    def delta(key: str, sub: str | None = None) -> float | None:
        try:
            va, vb = (a[key], b[key]) if sub is None else (a[key][sub], b[key][sub])  # type: ignore[index]
        except (KeyError, TypeError):
            return None
        return vb - va if isinstance(va, (int, float)) and isinstance(vb, (int, float)) else None

    ticks, batches = delta("clock_ticks"), delta("clock_encode_batch", "count")
    out, silent = delta("frames_out"), delta("frames_out_silent")
    if None in (ticks, batches, out, silent):
        return None
    audio = out - silent  # type: ignore[operator]
    return {
        "ticks": ticks,
        "encode_batches": batches,
        "audio_frames": audio,
        "audio_frames_per_batch": round(audio / batches, 2) if batches else None,
        "batches_per_tick": round(batches / ticks, 3) if ticks else None,  # type: ignore[operator]
    }


async def _loop_lag(duration_s: float, period_s: float = 0.01) -> list[float]:
    """Oversleep of a 10 ms sleep, sampled for ``duration_s``: the load tester's own scheduling delay."""
    out: list[float] = []
    end = time.monotonic() + duration_s
    while time.monotonic() < end and len(out) < 100_000:
        t = time.monotonic()
        await asyncio.sleep(period_s)
        out.append(max(0.0, (time.monotonic() - t - period_s) * 1000.0))
    return out


async def _relay_stats(sc: Scenario) -> dict[str, Any] | None:
    """relay's own view (``GET /v1/realtime/stats``): uplink/downlink latency inside relay, overruns."""
    if not sc.stats_url:
        return None
    import aiohttp

    headers = {"Authorization": f"Bearer {sc.stats_token}"} if sc.stats_token else {}
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
            session.get(sc.stats_url, headers=headers) as resp,
        ):
            if resp.status != 200:
                log.warning("relay stats: HTTP %d", resp.status)
                return None
            doc = await resp.json()
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        log.warning("relay stats: %s", exc)
        return None
    return doc if isinstance(doc, dict) else None


async def _relay_sample(sc: Scenario) -> procstat.Sample | None:
    if sc.metrics_url:
        import aiohttp

        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
                return await procstat.sample_metrics(session, sc.metrics_url, sc.metrics_token)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("metrics endpoint: %s", exc)
            return None
    return _sample(sc.relay_pid)


def _sample(pid: int | None) -> procstat.Sample | None:
    if pid is None:
        return None
    try:
        return procstat.sample(pid)
    except OSError:
        log.warning("relay pid %d is gone", pid)
        return None


MAX_TIMELINE_POINTS = 3600


async def _timeline(sc: Scenario, devices: list[Device], t0: float, out: list[dict[str, Any]]) -> None:
    """Once a second: calls up, relay's CPU, the tester's CPU and the marker round trips of that second
    (``report["timeline"]``, the over-time plot); with ``sc.progress`` also a progress line."""
    prev = await _relay_sample(sc)
    prev_self = (time.monotonic(), procstat.self_cpu_s())
    seen = [0] * len(devices)
    while len(out) < MAX_TIMELINE_POINTS:
        await asyncio.sleep(1.0)
        up = sum(1 for d in devices if d.result.ok)
        failed = sum(1 for d in devices if d.result.error)
        rtts: list[float] = []
        for i, d in enumerate(devices):
            got = d.matcher.rtts_ms
            rtts += got[seen[i] :]
            seen[i] = len(got)
        cur = await _relay_sample(sc)
        now_self = (time.monotonic(), procstat.self_cpu_s())
        point: dict[str, Any] = {
            "t_s": round(now_self[0] - t0, 2),
            "calls": up,
            "bench_cpu_pct": round(100.0 * (now_self[1] - prev_self[1]) / max(1e-9, now_self[0] - prev_self[0]), 1),
            "marker_rtt_ms": {"n": len(rtts), "p50": percentile(rtts, 50), "p99": percentile(rtts, 99)},
        }
        if prev and cur:
            point["relay_cpu_pct"] = round(procstat.cpu_percent(prev, cur), 1)
        out.append(point)
        prev, prev_self = cur, now_self
        if sc.progress:
            p50 = point["marker_rtt_ms"]["p50"]
            cpu = f" relay cpu {point['relay_cpu_pct']:5.1f}%" if "relay_cpu_pct" in point else ""
            sys.stderr.write(
                f"\r[{sc.label}] t={point['t_s']:5.1f}s calls {up}/{sc.n} failed {failed} "
                f"marker p50 {'-' if p50 is None else f'{p50:.0f}'} ms{cpu}   "
            )
            sys.stderr.flush()


async def run_churn(sc: Scenario, audio: BenchAudio, call_s: float) -> dict[str, Any]:
    """Steady churn: a new call every ``1 / rate`` s for ``duration`` s, each hung up ``call_s`` after it
    connected (mean concurrency ``rate * call_s``). Measures setup under a constant arrival rate, and
    that hang-ups free what calls took. ``sc.n`` is ignored; every field of the report is per call."""
    total = int(sc.rate_per_s * sc.duration_s)
    if not 1 <= total <= MAX_DEVICES:
        raise ValueError(f"rate x duration must give 1..{MAX_DEVICES} calls")
    if not 0 < call_s <= 600:
        raise ValueError("call_s must be in (0, 600]")
    async with asyncio.timeout(sc.duration_s + call_s + WATCHDOG_SLACK_S):
        return await _run_churn(sc, audio, call_s, total)


async def _run_churn(sc: Scenario, audio: BenchAudio, call_s: float, total: int) -> dict[str, Any]:
    points = start_points(total, len(audio.packets), sc.phase, sc.seed)

    async def one(i: int) -> DeviceResult:
        dev = Device(i, _config(sc, i, points[i]), audio)
        try:
            await dev.start()
            if dev.result.ok:
                await asyncio.sleep(call_s)
        finally:
            result = await dev.stop()
        return result

    relay_a = await _relay_sample(sc)
    self_a = (time.monotonic(), procstat.self_cpu_s())
    t0 = time.monotonic()
    tasks: list[asyncio.Task[DeviceResult]] = []
    try:
        for i in range(total):
            delay = t0 + i / sc.rate_per_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(i)))
        results = list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
    relay_b = await _relay_sample(sc)
    self_b = (time.monotonic(), procstat.self_cpu_s())
    concurrency = sc.rate_per_s * call_s
    measure: dict[str, Any] = {
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "steady_s": round(self_b[0] - self_a[0], 3),
        "bench_cpu_pct": round(100.0 * (self_b[1] - self_a[1]) / max(1e-9, self_b[0] - self_a[0]), 2),
    }
    if relay_a and relay_b:
        measure["relay_cpu_pct"] = round(procstat.cpu_percent(relay_a, relay_b), 2)
        measure["relay_runqueue_wait_pct"] = round(procstat.wait_percent(relay_a, relay_b), 2)
        measure["relay_rss_base_bytes"] = relay_a.rss_bytes
        measure["relay_rss_bytes"] = relay_b.rss_bytes
    report = summarize(sc.label, total, sc.rate_per_s, sc.duration_s, results, measure)
    m = report["measure"]
    # per *live* call (mean concurrency), not per call placed; RSS: what stays after every call hung up
    if "relay_cpu_pct" in m:
        m["relay_cpu_pct_per_call"] = round(m["relay_cpu_pct"] / concurrency, 3)
        m["relay_rss_mb_retained_per_call"] = m.pop("relay_rss_mb_per_call", None)
    report["churn"] = {"call_s": call_s, "calls_total": total, "mean_concurrency": round(concurrency, 1)}
    return report
