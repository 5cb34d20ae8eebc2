"""Turning device results into the bench report: percentiles, totals, summary text, plots."""

from __future__ import annotations

import datetime
import math
import os
import platform
import subprocess
from collections.abc import Sequence
from typing import Any

from bench.device import DeviceResult


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank-with-interpolation percentile (numpy's 'linear'); None when empty."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return round(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo), 3)


def dist(values: Sequence[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": round(max(values), 3) if values else None,
    }


def summarize(
    label: str, n: int, rate_per_s: float, duration_s: float, results: list[DeviceResult], measure: dict[str, Any]
) -> dict[str, Any]:
    ok = [r for r in results if r.ok]
    rtts = [x for r in ok for x in r.marker_rtts_ms]
    frames_received = sum(r.frames_received for r in ok)
    frames_lost = sum(r.frames_lost for r in ok)
    frames_missing = sum(r.frames_missing for r in ok)
    markers_due = sum(r.markers_due for r in ok)
    markers_lost = sum(r.markers_lost for r in ok)
    expected = sum(r.frames_expected for r in ok)
    report: dict[str, Any] = {
        "label": label,
        "calls_requested": n,
        "calls_established": len(ok),
        "rate_per_s": rate_per_s,
        "duration_s": duration_s,
        "errors": sorted({r.error for r in results if r.error})[:10],
        "setup_ms": dist([r.setup_ms for r in ok if r.setup_ms is not None]),
        "session_ms": dist([r.session_ms for r in ok if r.session_ms is not None]),
        "sdp_ms": dist([r.sdp_ms for r in ok if r.sdp_ms is not None]),
        "connect_ms": dist([r.connect_ms for r in ok if r.connect_ms is not None]),
        "marker_rtt_ms": dist(rtts),
        "markers": {"due": markers_due, "lost": markers_lost, "spurious": sum(r.markers_spurious for r in ok)},
        # bench/README.md, "Report fields": uplink_sent is the devices' stream, every other field relay's
        # downlink to them; received <= expected, and holes are explained by the fields after them
        "frames": {
            "uplink_sent": sum(r.frames_sent for r in ok),
            "received": frames_received,
            "expected": expected,
            "lost": frames_lost,
            "lost_pct": round(100.0 * frames_lost / expected, 3) if expected else None,
            "duplicates": sum(r.frames_duplicates for r in ok),
            "declared_gap": sum(r.frames_declared_gap for r in ok),
            "missing": frames_missing,
            "missing_pct": round(100.0 * frames_missing / (expected + frames_missing), 3)
            if expected + frames_missing
            else None,
            "delayed": sum(r.frames_delayed for r in ok),
            "max_delay_ms": max((r.max_delay_ms for r in ok), default=None),
            "max_gap_ms": max((r.max_gap_ms for r in ok), default=None),
            "holes_over_100ms": sum(r.holes_over_100ms for r in ok),
            "unexplained_holes": sum(r.unexplained_holes for r in ok),
            "send_resyncs": sum(r.send_resyncs for r in ok),
        },
        "events": sum(r.events for r in ok),
        "measure": dict(measure),
    }
    m = report["measure"]
    if ok:
        m["bench_cpu_pct_per_device"] = round(m.get("bench_cpu_pct", 0.0) / len(ok), 3)
    if "relay_cpu_pct" in m:
        m["relay_rss_mb"] = round(m["relay_rss_bytes"] / 2**20, 2)
    if "relay_cpu_pct" in m and ok:
        m["relay_cpu_pct_per_call"] = round(m["relay_cpu_pct"] / len(ok), 3)
        m["relay_rss_mb_per_call"] = round((m["relay_rss_bytes"] - m["relay_rss_base_bytes"]) / 2**20 / len(ok), 3)
    shorts = [r for r in ok if r.short_due is not None]
    if shorts:
        report["short"] = {
            "due": sum(r.short_due or 0 for r in shorts),
            "heard": sum(r.short_heard or 0 for r in shorts),
            "lost": sum(r.short_lost or 0 for r in shorts),
            "without_first_frame": sum(r.short_without_first_frame or 0 for r in shorts),
            "unmatched": sum(r.short_unmatched or 0 for r in shorts),
            "latency_ms": dist([x for r in shorts for x in r.short_latencies_ms]),
        }
    report["_rtts_ms"] = rtts  # raw, for plots; dropped from the saved JSON summary if asked
    return report


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.1f}{unit}"
    return f"{v}{unit}"


def text_summary(r: dict[str, Any]) -> str:
    m = r["measure"]
    s, rt, fr = r["setup_ms"], r["marker_rtt_ms"], r["frames"]
    lines = [
        f"== {r['label']}: {r['calls_established']}/{r['calls_requested']} calls "
        f"(ramp {r['rate_per_s']}/s, steady {m.get('steady_s')} s)",
        f"  setup ms (session+sdp) p50 {_fmt(s['p50'])} p95 {_fmt(s['p95'])} p99 {_fmt(s['p99'])}; "
        f"connect ms p50 {_fmt(r['connect_ms']['p50'])} p99 {_fmt(r['connect_ms']['p99'])}",
        f"  marker rtt ms p50 {_fmt(rt['p50'])} p95 {_fmt(rt['p95'])} p99 {_fmt(rt['p99'])} "
        f"(n {rt['n']}, lost {r['markers']['lost']}/{r['markers']['due']})",
        f"  uplink frames sent {fr['uplink_sent']}; downlink frames received {fr['received']} of {fr['expected']} "
        f"(lost {fr['lost']}, {_fmt(fr['lost_pct'], '%')}), missing {fr['missing']} ({_fmt(fr['missing_pct'], '%')}), "
        f"DTX {fr['declared_gap']}, delayed {fr['delayed']} (max {_fmt(fr['max_delay_ms'])} ms), "
        f"max gap {_fmt(fr['max_gap_ms'])} ms; data-channel events {r['events']}",
    ]
    if "relay_cpu_pct" in m:
        lines.append(
            f"  relay cpu {m['relay_cpu_pct']:.1f}% ({m.get('relay_cpu_pct_per_call', 0):.2f}%/call), "
            f"rss {m['relay_rss_mb']:.1f} MB ({m.get('relay_rss_mb_per_call', 0):.3f} MB/call); "
            f"waiting for a CPU {m.get('relay_runqueue_wait_pct', 0):.1f}% of the time, "
            f"load avg {m.get('loadavg_1m', 0):.1f}"
        )
    ch = r.get("churn")
    if isinstance(ch, dict):
        lines.append(
            f"  churn: {ch['calls_total']} calls of {ch['call_s']} s, mean concurrency {ch['mean_concurrency']}; "
            f"relay RSS retained after hang-up {_fmt(m.get('relay_rss_mb_retained_per_call'))} MB/call"
        )
    st = r.get("relay_stats")
    if isinstance(st, dict):
        up, down = st.get("uplink_latency") or {}, st.get("downlink_latency") or {}
        lines.append(
            f"  inside relay: RTP in -> upstream append p50 {_fmt(up.get('p50_ms'))} p99 {_fmt(up.get('p99_ms'))} ms; "
            f"upstream delta -> RTP out p50 {_fmt(down.get('p50_ms'))} p99 {_fmt(down.get('p99_ms'))} ms; "
            f"clock overruns {st.get('clock_overruns')}"
        )
    extra = "".join(
        f"; {k[:-8]} cpu {v:.1f}%"
        for k, v in m.items()
        if k.endswith("_cpu_pct") and k not in ("relay_cpu_pct", "bench_cpu_pct")
    )
    lag = m.get("bench_loop_lag_ms") or {}
    lines.append(
        f"  bench loop lag p50 {_fmt(lag.get('p50'))} p99 {_fmt(lag.get('p99'))} ms; bench cpu {m.get('bench_cpu_pct', 0):.1f}% ({m.get('bench_cpu_pct_per_device', 0):.2f}%/device"
        f", kernel {_fmt(m.get('bench_sys_cpu_pct'))}%)"
        + extra
    )
    sh = r.get("short")
    if isinstance(sh, dict):
        lat = sh["latency_ms"]
        lines.append(
            f"  short responses: {sh['heard']} heard of {sh['due']} owed, {sh['lost']} lost, "
            f"{sh['without_first_frame']} without their first frame; latency from the end of the user's turn "
            f"p50 {_fmt(lat['p50'])} p99 {_fmt(lat['p99'])} ms"
        )
    ph, ck = r.get("phase"), r.get("relay_clock")
    if isinstance(ph, dict) or isinstance(ck, dict):
        line = f"  device start points: {ph['mode']} (seed {ph['seed']})" if isinstance(ph, dict) else " "
        if isinstance(ck, dict):
            line += (
                f"; relay's clock: {ck['encode_batches']} encode batches in {ck['ticks']} ticks, "
                f"{_fmt(ck['audio_frames_per_batch'])} audio frames per batch"
            )
        lines.append(line)
    if r["errors"]:
        lines.append(f"  errors: {r['errors'][:3]}")
    for problem in contradictions(r):
        lines.append(f"  INCONSISTENT: {problem}")
    return "\n".join(lines)


def contradictions(r: dict[str, Any]) -> list[str]:
    """What in a run's fields could look contradictory (should always be empty; printed when not)."""
    fr = r["frames"]
    out = []
    if fr["received"] > fr["expected"]:
        out.append(f"downlink frames received {fr['received']} > expected {fr['expected']}")
    if fr.get("unexplained_holes"):
        out.append(f"{fr['unexplained_holes']} device(s) heard a hole > 120 ms no lost/missing/delayed/DTX frame explains")
    sh = r.get("short")
    if isinstance(sh, dict) and not sh["without_first_frame"] <= sh["heard"] <= sh["due"]:
        out.append("short responses: without_first_frame <= heard <= due does not hold")
    return out


def passes_bar(r: dict[str, Any], *, max_loss_pct: float = 1.0, max_p99_ms: float = 300.0) -> bool:
    """The sweep's sustainability rule: all calls up, loss <= 1 %, marker p99 <= 300 ms, no lost markers > 1 %."""
    if r["calls_established"] < r["calls_requested"]:
        return False
    loss = max(r["frames"]["lost_pct"] or 0.0, r["frames"].get("missing_pct") or 0.0)
    p99 = r["marker_rtt_ms"]["p99"]
    due = r["markers"]["due"]
    marker_loss = 100.0 * r["markers"]["lost"] / due if due else 0.0
    return loss <= max_loss_pct and marker_loss <= max_loss_pct and (p99 is None or p99 <= max_p99_ms)


STALL_GAP_MS = 100.0


def fit_healthy(r: dict[str, Any], *, max_gap_ms: float = STALL_GAP_MS) -> bool:
    """Whether a run's CPU figure measures the work it was given (the marginal-cost fit uses only these):
    it passes the sweep rule and no device heard a downlink hole longer than ``max_gap_ms`` (five frames).
    A relay whose loop saturates but then sends the late frames in a burst -- what aiortc's sender
    does -- shows no missing frames, only long gaps; its CPU is capped by the saturated loop, so it
    would bias the fit low. The sweep's own rule (the issue's: loss, lost markers, marker p99) is
    unchanged."""
    gap = r["frames"].get("max_gap_ms")
    return passes_bar(r) and (gap is None or gap <= max_gap_ms)


META_SETTINGS = ("workload", "model", "phase", "seed", "device_path", "rate", "duration", "nice", "relay_env",
                 "workers", "spawn", "url")


def _git(*args: str) -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        return subprocess.run(["git", "-C", here, *args], capture_output=True, text=True, timeout=5,
                              check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def run_metadata(settings: dict[str, Any]) -> dict[str, Any]:
    """What a reader needs to trust a run: the code (commit, uncommitted changes), the settings, the
    date and the machine. ``settings``: the command line (only ``META_SETTINGS`` are kept)."""
    commit = _git("rev-parse", "--short=10", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    return {
        "commit": (commit or "unknown") + ("+uncommitted" if dirty else ""),
        "branch": _git("rev-parse", "--abbrev-ref", "HEAD") or None,
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.node()}: {os.cpu_count()} CPUs ({_cpu_model()}), Python {platform.python_version()}",
        "loadavg_at_start": round(os.getloadavg()[0], 2),
        "settings": {k: settings[k] for k in META_SETTINGS if k in settings and settings[k] not in (None, [], "")},
    }


def plot_title(meta: dict[str, Any] | None, what: str) -> str:
    if not meta:
        return what
    st = meta.get("settings", {})
    conf = ", ".join(f"{k} {v}" for k, v in st.items() if k in ("workload", "phase", "device_path", "duration",
                                                                 "relay_env", "nice"))
    return f"{what}\nrelay {meta['commit']}, {meta['date_utc']}; {conf}\n{meta['machine']}"


PLOTS_MISSING = "--plots needs matplotlib, which the 'bench' extra installs: pip install '.[bench]'"


def plots_unavailable() -> str | None:
    """None when ``plot`` can run; else the one line saying which extra to install."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return PLOTS_MISSING
    return None


def _save(fig: Any, path: str) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot(reports: Sequence[dict[str, Any]], out_prefix: str, meta: dict[str, Any] | None = None) -> list[str]:
    """PNG plots, each titled with the run's metadata (``run_metadata``): marker latency distribution
    per run, CPU and RSS against N, and CPU and marker latency over time (``timeline``). Needs
    matplotlib (the 'bench' extra; ``plots_unavailable`` says so before a run starts)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=90)
    for r in reports:
        xs = sorted(r.get("_rtts_ms") or [])
        if xs:
            ax.plot(
                xs,
                [100.0 * (i + 1) / len(xs) for i in range(len(xs))],
                drawstyle="steps-post",
                label=f"{r['label']} N={r['calls_requested']}",
            )
    ax.set_xlabel("marker round trip, ms")
    ax.set_ylabel("% of markers <= x")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(plot_title(meta, "marker round trip"), fontsize=6)
    written.append(_save(fig, f"{out_prefix}latency.png"))

    labels = sorted({r["label"] for r in reports})
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3.2), dpi=90)
    for label in labels:
        rs = sorted(
            (r for r in reports if r["label"] == label and "relay_cpu_pct" in r["measure"]),
            key=lambda r: r["calls_established"],
        )
        if not rs:
            continue
        ns = [r["calls_established"] for r in rs]
        a1.plot(ns, [r["measure"]["relay_cpu_pct"] for r in rs], marker="o", label=label)
        a2.plot(ns, [r["measure"]["relay_rss_mb"] for r in rs], marker="o", label=label)
    a1.set_xlabel("concurrent calls")
    a1.set_ylabel("CPU, % of one core")
    a2.set_xlabel("concurrent calls")
    a2.set_ylabel("RSS, MB")
    for a in (a1, a2):
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    fig.suptitle(plot_title(meta, "CPU and RSS against concurrent calls"), fontsize=6)
    written.append(_save(fig, f"{out_prefix}cpu_rss.png"))

    timed = [r for r in reports if r.get("timeline")]
    if timed:
        fig, (b1, b2) = plt.subplots(2, 1, figsize=(8, 5), dpi=90, sharex=True)
        for r in timed:
            pts = r["timeline"]
            name = f"{r['label']} N={r['calls_requested']}"
            ts = [p["t_s"] for p in pts]
            color = b1.plot(ts, [p.get("relay_cpu_pct") for p in pts], label=f"{name} relay")[0].get_color()
            b1.plot(ts, [p["bench_cpu_pct"] for p in pts], linestyle=":", color=color, label=f"{name} tester")
            lat = [(p["t_s"], p["marker_rtt_ms"]["p50"], p["marker_rtt_ms"]["p99"]) for p in pts
                   if p["marker_rtt_ms"]["p50"] is not None]
            if lat:
                b2.plot([x[0] for x in lat], [x[1] for x in lat], color=color, label=f"{name} p50")
                b2.plot([x[0] for x in lat], [x[2] for x in lat], linestyle="--", color=color,
                        label=f"{name} p99")
        b1.set_ylabel("CPU, % of one core")
        b2.set_ylabel("marker round trip, ms (per second)")
        b2.set_xlabel("seconds since the run's first call")
        for b in (b1, b2):
            b.grid(alpha=0.3)
            b.legend(fontsize=5, ncol=2)
        fig.suptitle(plot_title(meta, "CPU and latency over time (ramp, then steady state)"), fontsize=6)
        written.append(_save(fig, f"{out_prefix}timeline.png"))
    return written
