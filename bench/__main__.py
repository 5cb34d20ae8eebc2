"""``python -m bench`` / ``relay-bench``: the load tester's command line.

Examples::

    # 10 devices against a running relay (demo mode on), measuring its CPU/RSS
    python -m bench --url http://127.0.0.1:8080 -n 10 --relay-pid 12345

    # relay vs the reference relay, both started by the bench, N = 1, 10, 25, 50
    python -m bench --compare -n 1,10,25,50 --duration 15 --json bench/results/latest.json \
        --plots bench/results/

    # largest sustainable N for one relay worker
    python -m bench --spawn relay --sweep
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import sys
import tempfile
from typing import Any

from bench import audio as bench_audio
from bench import servers
from bench.report import fit_healthy, passes_bar, plot, plots_unavailable, run_metadata, text_summary
from bench.runner import Scenario, run, run_churn

log = logging.getLogger("bench")

MAX_SWEEP_STEPS = 30
# workload -> the local assistant's model for it
WORKLOADS = {"loopback": "relay-loopback", "echo": "relay-echo", "short": "relay-short"}


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m bench",
        description="relay's load tester",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    tgt = ap.add_argument_group("target")
    tgt.add_argument("--url", help="base URL of a running relay (or any relay speaking seeds 000/001)")
    tgt.add_argument("--relay-pid", type=int, help="PID of the relay under --url, for CPU/RSS")
    tgt.add_argument(
        "--metrics-url",
        help="Prometheus endpoint of the relay under --url (process_cpu_seconds_total, "
        "process_resident_memory_bytes), instead of --relay-pid",
    )
    tgt.add_argument("--metrics-token", help="bearer token for --metrics-url (relay: RELAY_METRICS_TOKEN)")
    tgt.add_argument(
        "--spawn",
        choices=["relay", "reference", "both"],
        help="start the relay(s) here, fresh for every run, on 127.0.0.1",
    )
    tgt.add_argument("--compare", action="store_true", help="same as --spawn both: relay vs reference, ratios")
    tgt.add_argument("--relay-cmd", help="command starting relay (default: python -m relay serve)")
    tgt.add_argument(
        "--workers",
        type=_ints,
        default=[1],
        help="worker processes of the spawned relay (RELAY_WORKERS), comma-separated: each count is its own "
        "target (relay-w1, relay-w2, ...), run one after the other for every N",
    )
    tgt.add_argument(
        "--nice",
        type=int,
        default=0,
        help="scheduling priority of the spawned relays and assistant (e.g. -10 on a shared machine, "
        "as root); the same for relay and reference",
    )
    tgt.add_argument(
        "--relay-env",
        action="append",
        default=[],
        metavar="RELAY_X=value",
        help="extra environment for the spawned relay, e.g. RELAY_OPUS_COMPLEXITY=3 (repeatable)",
    )
    tgt.add_argument(
        "--upstream",
        default="",
        help="Realtime WebSocket URL (beta) both spawned relays use; default: the bench starts relay's "
        "local assistant as its own process (python -m relay.assistant), so relay CPU excludes it",
    )
    tgt.add_argument(
        "--inprocess-assistant",
        action="store_true",
        help="instead, each spawned relay runs the local assistant inside its own process",
    )
    tgt.add_argument(
        "--model",
        default=None,
        help="assistant model for spawned relays (default: the --workload's: relay-loopback, relay-echo, relay-short)",
    )
    ld = ap.add_argument_group("load")
    ld.add_argument(
        "--workload",
        choices=list(WORKLOADS),
        default=None,
        help="loopback: every chunk comes straight back, latency markers (the default); echo: turns of speech "
        "spoken back (no markers); short: every other turn answered after a pause with one chime in a single "
        "audio delta, the others echoed (response latency, chimes lost or missing their first frame)",
    )
    ld.add_argument("-n", type=_ints, default=[10], help="concurrent devices, comma-separated for several runs")
    ld.add_argument("--rate", type=float, default=20.0, help="ramp-up: new calls per second")
    ld.add_argument("--duration", type=float, default=10.0, help="steady-state seconds after the ramp")
    ld.add_argument("--audio", help="16-bit WAV to send (default: espeak-ng speech with pauses)")
    ld.add_argument(
        "--phase",
        choices=["random", "aligned"],
        default="random",
        help="where each device's audio starts: random (seeded by --seed) within the 20 ms frame and the "
        "audio, as real devices do, or aligned (all devices in step: full encode batches)",
    )
    ld.add_argument("--seed", type=int, default=1, help="seed of the random start points")
    ld.add_argument(
        "--device-path",
        choices=["fast", "aiortc"],
        default="fast",
        help="devices' audio after set-up: fast = relay's compiled RTP parse, libopus decode only when "
        "measured, one send task for all devices (bench/fastpath.py); aiortc = aiortc's sender and "
        "receiver per packet (the bench before), for comparison",
    )
    ld.add_argument("--no-markers", action="store_true", help="do not insert latency markers")
    ld.add_argument("--marker-interval-ms", type=int, default=1000)
    ld.add_argument("--no-demo", action="store_true", help="do not send X-Demo-Mode: true")
    ld.add_argument("--client-id", action="append", help="client id(s) to use (default: fresh TOFU ids)")
    ld.add_argument("--client-secret", action="append", help="secret(s) matching --client-id")
    ld.add_argument("--assistant-id", help="X-Assistant-Id to send")
    ld.add_argument("--no-session", action="store_true", help="skip POST /v1/realtime/sessions")
    ld.add_argument(
        "--churn-call-s",
        type=float,
        default=None,
        help="churn mode: a new call every 1/rate s for --duration s, each lasting this long "
        "(setup under a steady arrival rate; -n is ignored)",
    )
    sw = ap.add_argument_group("sweep")
    sw.add_argument(
        "--sweep",
        action="store_true",
        help="raise N until frame loss > 1 %% or marker p99 > 300 ms; print the largest passing N",
    )
    sw.add_argument("--sweep-start", type=int, default=10)
    sw.add_argument("--sweep-step", type=int, default=10)
    sw.add_argument("--sweep-max", type=int, default=200)
    out = ap.add_argument_group("output")
    out.add_argument("--json", help="write the full report (all runs) here")
    out.add_argument("--plots", help="write PNG plots with this path prefix (needs the 'bench' extra)")
    out.add_argument(
        "--no-floor",
        action="store_true",
        help="skip the physical-floor microbenchmark (bench/floor.py, ~5 s) after the runs; with it, the "
        "report gives relay's CPU per call / the floor",
    )
    out.add_argument("--quiet", action="store_true", help="no progress line")
    out.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    if args.compare:
        args.spawn = "both"
    if args.workload is None:  # from --model, as before --workload existed
        by_model = {m: w for w, m in WORKLOADS.items()}
        args.workload = by_model.get(args.model or "relay-loopback", "loopback")
    if args.model is None:
        args.model = WORKLOADS[args.workload]
    if args.workload != "loopback":
        args.no_markers = True  # markers come back only through relay-loopback
    if not args.url and not args.spawn:
        ap.error("give --url of a running relay, or --spawn/--compare")
    if any("=" not in kv or not kv.startswith("RELAY_") for kv in args.relay_env):
        ap.error("--relay-env takes RELAY_NAME=value")
    if args.plots and (missing := plots_unavailable()):
        ap.error(missing)  # before a run of minutes, not after it
    return args


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.audio = bench_audio.build(
            args.audio, markers=not args.no_markers, marker_interval_ms=args.marker_interval_ms
        )
        self.reports: list[dict[str, Any]] = []
        self.assistant: servers.Server | None = None
        self.floor: dict[str, Any] | None = None
        self.meta = run_metadata(vars(args))  # at the start: the code and machine the runs measure

    def targets(self) -> list[str]:
        if not self.args.spawn:
            return ["target"]
        relays = ["relay"] if self.args.workers == [1] else [f"relay-w{w}" for w in self.args.workers]
        if self.args.spawn == "reference":
            return ["reference"]
        return [*relays, "reference"] if self.args.spawn == "both" else relays

    async def upstream_url(self) -> str:
        """'' / 'local' = in-process assistant; else a WebSocket URL (started here on first use)."""
        a = self.args
        if a.upstream:
            return a.upstream
        if a.inprocess_assistant:
            return ""
        if self.assistant is None:
            self.assistant = servers.assistant_server()
            self.assistant.nice = self.args.nice
            await self.assistant.start()
        return f"ws://127.0.0.1:{self.assistant.port}/v1/realtime"

    async def run_one(self, target: str, n: int) -> dict[str, Any]:
        a = self.args
        server: servers.Server | None = None
        with tempfile.TemporaryDirectory(prefix="bench-relay-") as data_dir:
            stats_token = secrets.token_hex(16)
            workers = int(target.split("-w", 1)[1]) if target.startswith("relay-w") else 1
            if target.startswith("relay"):
                server = servers.relay_server(
                    model=a.model,
                    data_dir=data_dir,
                    upstream_url=await self.upstream_url(),
                    cmd=a.relay_cmd.split() if a.relay_cmd else None,
                    extra_env={"RELAY_ADMIN_TOKEN": stats_token, "RELAY_WORKERS": str(workers),
                               **dict(kv.split("=", 1) for kv in a.relay_env)},
                )
            elif target == "reference":
                server = servers.reference_server(upstream=await self.upstream_url() or "local", model=a.model)
            try:
                if server is not None:
                    server.nice = a.nice
                    await server.start()
                sc = Scenario(
                    base_url=server.base_url if server else a.url,
                    n=n,
                    rate_per_s=a.rate,
                    duration_s=a.duration,
                    demo=not a.no_demo,
                    client_ids=a.client_id,
                    client_secrets=a.client_secret,
                    assistant_id=a.assistant_id,
                    create_session=not a.no_session,
                    relay_pid=server.pid if server else a.relay_pid,
                    metrics_url=None if server else a.metrics_url,
                    metrics_token=None if server else a.metrics_token,
                    # /v1/realtime/stats is one worker's view: only asked of a one-worker relay
                    stats_url=f"{server.base_url}/v1/realtime/stats" if target.startswith("relay") and server
                    and workers == 1 else None,
                    stats_token=stats_token,
                    label=target if server else "target",
                    progress=not a.quiet,
                    extra_pids={"assistant": self.assistant.pid} if self.assistant and server else {},
                    phase=a.phase,
                    seed=a.seed,
                    workload=a.workload,
                    fast_devices=a.device_path == "fast",
                )
                if a.churn_call_s:
                    report = await run_churn(sc, self.audio, a.churn_call_s)
                else:
                    report = await run(sc, self.audio)
                if server is not None and target.startswith("relay"):
                    report["workers"] = workers
                    report["calls_by_worker"] = await calls_by_worker(server.base_url, stats_token)
            finally:
                if server is not None:
                    server.stop()
        self.reports.append(report)
        print(text_summary(report), flush=True)
        return report

    async def main(self) -> int:
        try:
            return await self._main()
        finally:
            if self.assistant is not None:
                self.assistant.stop()

    async def _main(self) -> int:
        a = self.args
        m = self.meta
        print(f"bench: relay {m['commit']} ({m['branch']}), {m['date_utc']}, {m['machine']}; {m['settings']}",
              flush=True)
        if a.sweep:
            for target in self.targets():
                best = await self.sweep(target)
                print(f"sweep [{target}]: largest sustainable N per worker = {best}", flush=True)
        else:
            for n in a.n:
                for target in self.targets():
                    await self.run_one(target, n)
        if self.targets() == ["relay", "reference"]:
            for line in compare_lines(self.reports):
                print(line)
        for line in worker_lines(self.reports):
            print(line)
        for label, m in marginal_costs(self.reports).items():
            cpu, rss = m.get("cpu_pct_per_added_call"), m.get("rss_mb_per_added_call")
            print(
                f"marginal [{label}]: {'-' if cpu is None else f'{cpu:.2f}'} % CPU (fit over healthy runs) and "
                f"{'-' if rss is None else f'{rss:.3f}'} MB RSS per added call"
            )
        if not a.no_floor and any("measure" in r for r in self.reports):
            from bench import floor

            ns = [r["calls_established"] for r in self.reports if r.get("calls_established")]
            self.floor = floor.measure(self.audio.packets, batch=max(1, min(1024, max(ns, default=1))))
        for line in cost_lines(self.reports, self.floor):
            print(line)
        self.write_outputs()
        return 0

    async def sweep(self, target: str) -> int:
        a = self.args
        best = 0
        n = a.sweep_start
        for _ in range(MAX_SWEEP_STEPS):
            if n > a.sweep_max:
                break
            report = await self.run_one(target, n)
            ok = passes_bar(report)
            report["sweep"] = {"target": target, "passed": ok}
            if not ok:
                break
            best = n
            n += a.sweep_step
        self.reports.append({"label": target, "sweep_max_n": best})
        return best

    def write_outputs(self) -> None:
        a = self.args
        runs = [r for r in self.reports if "measure" in r]
        meta = self.meta
        if a.plots and runs:
            for path in plot(runs, a.plots, meta):
                print(f"plot: {path}")
        if a.json:
            doc = {
                "meta": meta,
                "audio": {
                    "source": self.audio.source,
                    "duration_s": self.audio.duration_s,
                    "markers_per_loop": len(self.audio.marker_frames),
                },
                "args": {k: v for k, v in vars(a).items() if k != "client_secret"},
                "runs": [{k: v for k, v in r.items() if k != "_rtts_ms"} for r in self.reports],
                "ratios": compare_table(self.reports),
                "marginal": marginal_costs(self.reports),
                "cpu_per_call": cost_table(self.reports, self.floor),
                "floor": self.floor,
            }
            with open(a.json, "w") as fh:
                json.dump(doc, fh, indent=1, default=str)
            print(f"report: {a.json}")


def _get(r: dict[str, Any], *path: str) -> float | None:
    cur: Any = r
    for p in path:
        if not isinstance(cur, dict) or p not in cur:
            return None
        cur = cur[p]
    return cur if isinstance(cur, (int, float)) else None


def compare_table(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per N: reference / relay ratios (> 1 means relay is better) of the costs and latencies."""
    rows = []
    by = {(r["label"], r["calls_requested"]): r for r in reports if "measure" in r}
    for (label, n), rel in sorted(by.items(), key=lambda kv: kv[0][1]):
        ref = by.get(("reference", n))
        if label != "relay" or ref is None:
            continue
        row: dict[str, Any] = {"n": n}
        for name, path in {
            "cpu_per_call": ("measure", "relay_cpu_pct_per_call"),
            "rss_per_call": ("measure", "relay_rss_mb_per_call"),
            "marker_p50": ("marker_rtt_ms", "p50"),
            "marker_p99": ("marker_rtt_ms", "p99"),
            "setup_p99": ("setup_ms", "p99"),
        }.items():
            a, b = _get(rel, *path), _get(ref, *path)
            row[name] = {
                "relay": a,
                "reference": b,
                "ratio": round(b / a, 2) if a and b is not None and a > 0 else None,
            }
        rows.append(row)
    return rows


def _slope(pts: list[tuple[float, float, float]], i: int) -> float:
    """Least-squares slope of column ``i`` against column 0."""
    n_mean = sum(p[0] for p in pts) / len(pts)
    y_mean = sum(p[i] for p in pts) / len(pts)
    sxx = sum((p[0] - n_mean) ** 2 for p in pts)
    return sum((p[0] - n_mean) * (p[i] - y_mean) for p in pts) / sxx


def marginal_costs(reports: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per label, least-squares slopes over the runs: CPU % per additional call (healthy runs only,
    ``bench.report.fit_healthy``: an overloaded or stalling process skips or delays work, so its CPU
    understates the need) and RSS MB per additional call."""
    out: dict[str, dict[str, float]] = {}
    for label in sorted({r["label"] for r in reports if "measure" in r}):
        runs = [
            r
            for r in reports
            if r.get("label") == label and "relay_rss_mb" in r.get("measure", {}) and r["calls_established"] > 0
        ]
        rss = [(r["calls_established"], r["measure"]["relay_rss_mb"], 0.0) for r in runs]
        cpu = [(r["calls_established"], r["measure"]["relay_cpu_pct"], 0.0) for r in runs if fit_healthy(r)]
        row: dict[str, float] = {}
        if len({p[0] for p in cpu}) >= 2:
            row["cpu_pct_per_added_call"] = round(_slope(cpu, 1), 3)
        if len({p[0] for p in rss}) >= 2:
            row["rss_mb_per_added_call"] = round(_slope(rss, 1), 3)
        if row:
            out[label] = row
    return out


def cost_table(reports: list[dict[str, Any]], floor: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Per run (label, N): relay's CPU two ways, and what the tester itself cost beside it.

    ``total_per_call_pct`` = relay CPU / established calls (fixed costs included: an idle relay's
    clock, its threads); ``slope_pct`` = the label's least-squares CPU per *added* call over its healthy
    runs (``marginal_costs``), the same for every N of a label. ``bench_cpu_pct`` is the load tester's
    own CPU (% of one core), ``bench_share_pct`` that as a share of the machine's cores: when it nears
    the cores relay does not use, the tester, not relay, is the limit. With ``floor``
    (``bench.floor.measure``): ``slope_over_floor`` and ``total_over_floor``, relay's CPU per call
    over the physical floor of one call on this machine."""
    slopes = marginal_costs(reports)
    floor_pct = (floor or {}).get("cpu_pct_per_call")
    cores = os.cpu_count() or 1
    rows = []
    for r in reports:
        m = r.get("measure")
        if not m or "relay_cpu_pct" not in m or not r.get("calls_established"):
            continue
        bench = m.get("bench_cpu_pct")
        rows.append(
            {
                "label": r["label"],
                "n": r["calls_established"],
                "healthy": fit_healthy(r),
                "relay_cpu_pct": m["relay_cpu_pct"],
                "total_per_call_pct": round(m["relay_cpu_pct"] / r["calls_established"], 3),
                "slope_pct": slopes.get(r["label"], {}).get("cpu_pct_per_added_call"),
                "bench_cpu_pct": bench,
                "bench_cpu_pct_per_device": m.get("bench_cpu_pct_per_device"),
                "bench_share_pct": round(bench / cores, 2) if bench is not None else None,
            }
        )
        row = rows[-1]
        if floor_pct:
            row["floor_pct"] = floor_pct
            row["total_over_floor"] = round(row["total_per_call_pct"] / floor_pct, 2)
            row["slope_over_floor"] = round(row["slope_pct"] / floor_pct, 2) if row["slope_pct"] is not None else None
    return rows


def cost_lines(reports: list[dict[str, Any]], floor: dict[str, Any] | None = None) -> list[str]:
    rows = cost_table(reports, floor)
    if not rows:
        return []
    lines = [
        "",
        "== CPU per call (% of one core): slope = per added call (fit over healthy runs), total/N = all of "
        "relay's CPU / N; tester = the load tester's own CPU, % of one core and share of the machine",
    ]
    for row in rows:
        slope = "-" if row["slope_pct"] is None else f"{row['slope_pct']:.2f}"
        lines.append(
            f"  [{row['label']}] N={row['n']:>3}: slope {slope}, total/N {row['total_per_call_pct']:.2f}"
            f"{'' if row['healthy'] else ' (not healthy: out of the fit)'}; tester {row['bench_cpu_pct']} % "
            f"({row['bench_cpu_pct_per_device']} %/device, {row['bench_share_pct']} % of the machine)"
            + (
                f"; over the floor: slope {row['slope_over_floor']}x, total/N {row['total_over_floor']}x"
                if "floor_pct" in row
                else ""
            )
        )
    if floor:
        lines.append(
            f"  floor (bench/floor.py: libopus decode + encode, SRTP both ways, sendmmsg/recvmmsg in batches of "
            f"{floor['batch']}): {floor['cpu_pct_per_call']:.3f} % of one core per call"
        )
    return lines


async def calls_by_worker(base_url: str, token: str) -> dict[str, int]:
    """``relay_calls_started_total`` per worker label from the node's /metrics (one worker: {"0": n})."""
    import re

    import aiohttp

    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session, session.get(
            f"{base_url}/metrics", headers={"Authorization": f"Bearer {token}"}
        ) as resp:
            text = await resp.text()
    except (aiohttp.ClientError, TimeoutError) as exc:
        logging.getLogger("bench").warning("metrics: %s", exc)
        return {}
    found = re.findall(r'^relay_calls_started_total(?:\{worker="(\d+)"\})? (\S+)$', text, re.M)
    return {w or "0": int(float(v)) for w, v in found}


def worker_lines(reports: list[dict[str, Any]]) -> list[str]:
    """Per N: CPU per call, set-up p99 and the calls' spread of each worker count, and CPU/call vs 1 worker."""
    runs = [r for r in reports if "workers" in r and "measure" in r]
    if len({r["workers"] for r in runs}) < 2:
        return []
    lines = ["", "== relay by worker count (cpu_per_call: % of one core per established call)"]
    for n in sorted({r["calls_requested"] for r in runs}):
        base = next((r for r in runs if r["calls_requested"] == n and r["workers"] == 1), None)
        for r in sorted((r for r in runs if r["calls_requested"] == n), key=lambda r: r["workers"]):
            cpu = r["measure"].get("relay_cpu_pct_per_call")
            ratio = ""
            if base is not None and cpu and base["measure"].get("relay_cpu_pct_per_call"):
                ratio = f" ({cpu / base['measure']['relay_cpu_pct_per_call']:.2f}x of 1 worker)"
            lines.append(
                f"  N={n:>3} workers={r['workers']}: {r['calls_established']}/{n} calls; cpu_per_call "
                f"{'-' if cpu is None else f'{cpu:.2f}'}{ratio}; setup p99 {r['setup_ms']['p99']} ms; "
                f"calls by worker {r.get('calls_by_worker')}"
            )
    return lines


def compare_lines(reports: list[dict[str, Any]]) -> list[str]:
    lines = ["", "== relay vs reference (ratio = reference / relay; > 1: relay better)"]
    for row in compare_table(reports):
        parts = [f"N={row['n']:>3}"]
        for name in ("cpu_per_call", "rss_per_call", "marker_p50", "marker_p99", "setup_p99"):
            v = row[name]
            ratio = f"{v['ratio']:.2f}x" if v["ratio"] is not None else "-"
            parts.append(f"{name} {v['relay']}/{v['reference']} ({ratio})")
        lines.append("  " + "; ".join(parts))
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        return asyncio.run(Bench(args).main())
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
