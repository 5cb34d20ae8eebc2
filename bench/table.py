"""Markdown table of a bench JSON report (what bench/README.md shows).

python -m bench.table bench/results/loopback.json [more.json ...]
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def _v(x: Any, fmt: str = "{:.1f}") -> str:
    return "-" if x is None else fmt.format(x)


def rows(doc: dict[str, Any], scenario: str) -> list[str]:
    from bench.report import STALL_GAP_MS, fit_healthy, passes_bar

    out = []
    for r in doc["runs"]:
        if "measure" not in r:
            if "sweep_max_n" in r:
                out.append(f"| {scenario} | {r['label']} | sweep max N = **{r['sweep_max_n']}** | | | | | | | | | |")
            continue
        m, s, rt, fr = r["measure"], r["setup_ms"], r["marker_rtt_ms"], r["frames"]
        if not passes_bar(r):
            flag = " (overloaded)"
        elif not fit_healthy(r):
            flag = f" (stalled: {fr['max_gap_ms']:.0f} ms gap > {STALL_GAP_MS:.0f})"
        else:
            flag = ""
        out.append(
            f"| {scenario} | {r['label']} | {r['calls_established']}/{r['calls_requested']}{flag} "
            f"| {_v(m.get('relay_cpu_pct'))} | {_v(m.get('relay_cpu_pct_per_call'), '{:.2f}')} "
            f"| {_v(m.get('relay_rss_mb'))} "
            f"| {_v(s['p50'])} / {_v(s['p99'])} "
            f"| {_v(rt['p50'])} / {_v(rt['p95'])} / {_v(rt['p99'])} "
            f"| {r['markers']['lost']}/{r['markers']['due']} "
            f"| {_v(fr['lost_pct'], '{:.2f}')} / {_v(fr.get('missing_pct'), '{:.2f}')} "
            f"| {_v(m.get('bench_cpu_pct_per_device'), '{:.2f}')} "
            f"| {_v(m.get('relay_runqueue_wait_pct'))} / {_v(m.get('loadavg_1m'))} |"
        )
    return out


def table(docs: list[tuple[str, dict[str, Any]]]) -> str:
    head = [
        "| run | relay | calls | CPU % | CPU %/call | RSS MB | setup ms p50 / p99 | marker ms p50 / p95 / p99 "
        "| markers lost | frames lost % / missing % | bench CPU %/device | CPU wait % / load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    body = [row for scenario, doc in docs for row in rows(doc, scenario)]
    extra = []
    for scenario, doc in docs:
        for ratio in doc.get("ratios", []):
            cpu = ratio["cpu_per_call"]["ratio"]
            p50 = ratio["marker_p50"]["ratio"]
            extra.append(
                f"- {scenario} N={ratio['n']}: reference/relay CPU per call **{_v(cpu, '{:.2f}')}x**, "
                f"marker p50 {_v(p50, '{:.2f}')}x, RSS per call "
                f"{_v(ratio['rss_per_call']['ratio'], '{:.2f}')}x"
            )
        from bench.__main__ import marginal_costs

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
