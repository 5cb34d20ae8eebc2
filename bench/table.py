"""Markdown table of bench JSON reports (what bench/README.md shows).

python -m bench.table bench/results/loopback.json [more.json ...]

One row per run: relay's CPU as total / N and as the fitted slope, both over the physical floor,
the tester's own share beside it, set-up, the workload's latency and loss figures. Then the
reference / relay ratios and the fits of each file.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

HEAD = (
    "| run | relay | calls | CPU % | total/N % | slope % | total/N / floor | setup p99 ms "
    "| marker ms p50 / p99 (lost) | short: heard / owed, no 1st frame, latency p50 ms "
    "| frames lost % / missing % / delayed | tester %/device (% of machine) | CPU wait % / load |"
)


def _v(x: Any, fmt: str = "{:.1f}") -> str:
    return "-" if x is None else fmt.format(x)


def _flag(r: dict[str, Any]) -> str:
    from bench.report import STALL_GAP_MS, fit_healthy, passes_bar

    if not passes_bar(r):
        return " (overloaded)"
    if not fit_healthy(r):
        return f" (stalled: {r['frames']['max_gap_ms']:.0f} ms gap > {STALL_GAP_MS:.0f})"
    return ""


def rows(doc: dict[str, Any], scenario: str) -> list[str]:
    from bench.__main__ import cost_table

    costs = {(c["label"], c["n"]): c for c in cost_table([r for r in doc["runs"] if "measure" in r],
                                                           doc.get("floor"))}
    out = []
    for r in doc["runs"]:
        if "measure" not in r:
            if "sweep_max_n" in r:
                out.append(f"| {scenario} | {r['label']} | sweep max N = **{r['sweep_max_n']}** |" + " |" * 10)
            continue
        m, s, rt, fr = r["measure"], r["setup_ms"], r["marker_rtt_ms"], r["frames"]
        c = costs.get((r["label"], r["calls_established"]), {})
        sh = r.get("short")
        short = (
            f"{sh['heard']} / {sh['due']}, {sh['without_first_frame']}, {_v(sh['latency_ms']['p50'], '{:.0f}')}"
            if isinstance(sh, dict)
            else "-"
        )
        marker = "-" if rt["n"] == 0 else f"{_v(rt['p50'])} / {_v(rt['p99'])} ({r['markers']['lost']}/{r['markers']['due']})"
        out.append(
            f"| {scenario} | {r['label']} | {r['calls_established']}/{r['calls_requested']}{_flag(r)} "
            f"| {_v(m.get('relay_cpu_pct'))} | {_v(c.get('total_per_call_pct'), '{:.2f}')} "
            f"| {_v(c.get('slope_pct'), '{:.2f}')} | {_v(c.get('total_over_floor'), '{:.1f}x')} "
            f"| {_v(s['p99'])} | {marker} | {short} "
            f"| {_v(fr['lost_pct'], '{:.2f}')} / {_v(fr.get('missing_pct'), '{:.2f}')} / {fr.get('delayed', '-')} "
            f"| {_v(m.get('bench_cpu_pct_per_device'), '{:.2f}')} ({_v(c.get('bench_share_pct'))}) "
            f"| {_v(m.get('relay_runqueue_wait_pct'))} / {_v(m.get('loadavg_1m'))} |"
        )
    return out


def table(docs: list[tuple[str, dict[str, Any]]]) -> str:
    from bench.__main__ import marginal_costs

    head = [HEAD, "|" + "---|" * HEAD.count(" | ") + "---|"]
    body = [row for scenario, doc in docs for row in rows(doc, scenario)]
    extra = []
    for scenario, doc in docs:
        meta = doc.get("meta") or {}
        if meta:
            extra.append(f"- {scenario}: relay {meta.get('commit')}, {meta.get('date_utc')}, {meta.get('settings')}")
        fl = doc.get("floor")
        if fl:
            extra.append(f"- {scenario}: floor {fl['cpu_pct_per_call']:.3f} % of a core per call "
                         f"({', '.join(f'{k} {v} us' for k, v in fl['us_per_frame'].items())})")
        for ratio in doc.get("ratios", []):
            cpu = ratio["cpu_per_call"]["ratio"]
            p50 = ratio["marker_p50"]["ratio"]
            extra.append(
                f"- {scenario} N={ratio['n']}: reference/relay CPU per call **{_v(cpu, '{:.2f}')}x**, "
                f"marker p50 {_v(p50, '{:.2f}')}x, RSS per call "
                f"{_v(ratio['rss_per_call']['ratio'], '{:.2f}')}x"
            )
        # recomputed with the current health rule (a report written before a rule change keeps its runs)
        for label, mg in marginal_costs([r for r in doc["runs"] if "measure" in r]).items():
            cpu, rss = mg.get("cpu_pct_per_added_call"), mg.get("rss_mb_per_added_call")
            extra.append(
                f"- {scenario}, marginal cost, {label}: {_v(cpu, '{:.2f}')} % CPU (fit over healthy runs) and "
                f"{_v(rss, '{:.3f}')} MB RSS per added call"
            )
    return "\n".join(head + body + ([""] + extra if extra else []))


def main() -> None:
    docs = []
    for path in sys.argv[1:]:
        with open(path) as fh:
            docs.append((os.path.splitext(os.path.basename(path))[0], json.load(fh)))
    print(table(docs))


if __name__ == "__main__":
    main()
