"""Report maths: percentiles, summaries, the sweep's pass rule."""

from __future__ import annotations

import sys

import pytest

from bench.__main__ import parse_args
from bench.device import DeviceResult
from bench.report import passes_bar, percentile, summarize, text_summary


def test_percentile():
    assert percentile([], 50) is None
    assert percentile([5.0], 99) == 5.0
    xs = list(range(1, 101))
    assert percentile(xs, 50) == 50.5
    assert percentile(xs, 99) == 99.01


def _ok(i: int, rtts: list[float], lost: int = 0) -> DeviceResult:
    return DeviceResult(
        i,
        ok=True,
        setup_ms=10.0 + i,
        session_ms=4.0,
        sdp_ms=6.0 + i,
        connect_ms=20.0,
        frames_sent=500,
        frames_received=490,
        frames_expected=490 + lost,
        frames_lost=lost,
        markers_due=len(rtts),
        marker_rtts_ms=rtts,
        events=3,
    )


def test_summarize_and_per_call_costs():
    results = [_ok(0, [100.0, 110.0]), _ok(1, [120.0, 130.0], lost=10), DeviceResult(2, error="RelayError: 503")]
    measure = {
        "relay_cpu_pct": 20.0,
        "relay_rss_base_bytes": 50 * 2**20,
        "relay_rss_bytes": 51 * 2**20,
        "bench_cpu_pct": 4.0,
    }
    r = summarize("relay", 3, 20.0, 5.0, results, measure)
    assert r["calls_requested"] == 3 and r["calls_established"] == 2
    assert r["errors"] == ["RelayError: 503"]
    assert r["marker_rtt_ms"]["n"] == 4 and r["marker_rtt_ms"]["p50"] == 115.0
    assert r["frames"]["lost"] == 10 and r["frames"]["lost_pct"] == round(100 * 10 / 990, 3)
    assert r["measure"]["relay_cpu_pct_per_call"] == 10.0
    assert r["measure"]["relay_rss_mb_per_call"] == 0.5
    assert r["events"] == 6
    assert "2/3 calls" in text_summary(r)
    assert not passes_bar(r)  # a call failed


def test_passes_bar_thresholds():
    good = summarize("relay", 1, 20.0, 5.0, [_ok(0, [100.0] * 10)], {})
    assert passes_bar(good)
    slow = summarize("relay", 1, 20.0, 5.0, [_ok(0, [400.0] * 10)], {})
    assert not passes_bar(slow)
    lossy = summarize("relay", 1, 20.0, 5.0, [_ok(0, [100.0] * 10, lost=20)], {})
    assert not passes_bar(lossy)
    starved = _ok(0, [100.0] * 10)
    starved.frames_missing = 50  # the relay skipped 20 ms slots (no sequence gap, just silence on the wire)
    report = summarize("relay", 1, 20.0, 5.0, [starved], {})
    assert report["frames"]["missing"] == 50 and not passes_bar(report)


def test_prometheus_process_metrics():
    from bench.procstat import parse_prometheus

    text = """# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.5
process_resident_memory_bytes{worker="0"} 1.048576e+08
process_resident_memory_bytes{worker="1"} 1048576
relay_calls_active 3
"""
    assert parse_prometheus(text) == (12.5, 104857600 + 1048576)
    assert parse_prometheus("relay_calls_active 3\n") == (None, None)


def test_procstat_reads_this_process():
    import os

    from bench.procstat import cpu_percent, sample

    a = sample(os.getpid())
    sum(i * i for i in range(200000))
    b = sample(os.getpid())
    assert b.cpu_s >= a.cpu_s and b.rss_bytes > 1 << 20 and cpu_percent(a, b) >= 0


def _run(label: str, n: int, cpu: float, rss_mb: float, rtts: list[float]) -> dict:
    results = [_ok(i, rtts) for i in range(n)]
    measure = {"relay_cpu_pct": cpu, "relay_rss_base_bytes": 90 * 2**20, "relay_rss_bytes": int(rss_mb * 2**20)}
    return summarize(label, n, 20.0, 5.0, results, measure)


def test_compare_ratios_and_marginal_costs():
    from bench.__main__ import compare_table, marginal_costs

    reports = [
        _run("relay", 1, 3.0, 100.0, [60.0] * 5),
        _run("reference", 1, 6.0, 100.0, [150.0] * 5),
        _run("relay", 11, 13.0, 105.0, [60.0] * 5),
        _run("reference", 11, 56.0, 110.0, [150.0] * 5),
    ]
    rows = compare_table(reports)
    assert [r["n"] for r in rows] == [1, 11]
    assert rows[1]["cpu_per_call"]["ratio"] == round((56.0 / 11) / (13.0 / 11), 2)
    assert rows[0]["marker_p50"] == {"relay": 60.0, "reference": 150.0, "ratio": 2.5}
    m = marginal_costs(reports)
    assert m["relay"]["cpu_pct_per_added_call"] == 1.0  # (13 - 3) / (11 - 1)
    assert m["reference"]["cpu_pct_per_added_call"] == 5.0  # (56 - 6) / 10
    assert m["relay"]["rss_mb_per_added_call"] == 0.5


def test_marginal_cpu_ignores_overloaded_runs():
    from bench.__main__ import marginal_costs

    slow = _run("relay", 21, 30.0, 110.0, [900.0] * 5)  # p99 > 300 ms: overloaded, CPU understated
    reports = [_run("relay", 1, 3.0, 100.0, [60.0] * 5), _run("relay", 11, 13.0, 105.0, [60.0] * 5), slow]
    m = marginal_costs(reports)
    assert m["relay"]["cpu_pct_per_added_call"] == 1.0
    assert m["relay"]["rss_mb_per_added_call"] == 0.5  # memory is fitted over every run


def test_cli_rejects_bad_arguments():
    import pytest

    from bench.__main__ import parse_args

    with pytest.raises(SystemExit):
        parse_args(["-n", "5"])  # neither --url nor --spawn
    with pytest.raises(SystemExit):
        parse_args(["--spawn", "relay", "--relay-env", "PATH=/tmp"])  # only RELAY_* settings
    a = parse_args(["--compare", "-n", "1,10", "--relay-env", "RELAY_OPUS_COMPLEXITY=3"])
    assert a.spawn == "both" and a.n == [1, 10]


def test_marginal_cpu_ignores_runs_with_an_audible_downlink_hole():
    """A saturated relay that bursts its late frames has no missing frames but long gaps: not fitted."""
    from bench.__main__ import marginal_costs
    from bench.report import fit_healthy, passes_bar

    stalled = _run("reference", 21, 60.0, 110.0, [150.0] * 5)
    stalled["frames"]["max_gap_ms"] = 124.0
    reports = [_run("reference", 1, 6.0, 100.0, [150.0] * 5), _run("reference", 11, 56.0, 110.0, [150.0] * 5),
               stalled]
    assert passes_bar(stalled) and not fit_healthy(stalled)
    assert fit_healthy(reports[0]) and fit_healthy(reports[1])
    assert marginal_costs(reports)["reference"]["cpu_pct_per_added_call"] == 5.0  # (56 - 6) / 10, not the capped 60


def test_plots_without_matplotlib_name_the_extra_before_the_run(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(SystemExit) as exc:
        parse_args(["--url", "http://127.0.0.1:1", "--plots", "out/"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "'bench' extra" in err and "pip install '.[bench]'" in err
    assert parse_args(["--url", "http://127.0.0.1:1"]).plots is None  # no --plots: no check


def test_workers_are_targets_and_compared_with_one_worker():
    from bench.__main__ import Bench, worker_lines

    args = parse_args(["--spawn", "relay", "--workers", "1,2", "-n", "4", "--no-markers"])
    assert Bench.targets(type("B", (), {"args": args})()) == ["relay-w1", "relay-w2"]
    assert Bench.targets(type("B", (), {"args": parse_args(["--spawn", "relay"])})()) == ["relay"]
    one = {**_run("relay-w1", 4, 8.0, 100.0, [60.0] * 5), "workers": 1, "calls_by_worker": {"0": 4}}
    two = {**_run("relay-w2", 4, 9.0, 180.0, [60.0] * 5), "workers": 2, "calls_by_worker": {"0": 2, "1": 2}}
    lines = worker_lines([one, two])
    assert "workers=2" in lines[-1] and "(1.12x of 1 worker)" in lines[-1] and "{'0': 2, '1': 2}" in lines[-1]
    assert worker_lines([one]) == []


def test_cost_table_gives_slope_total_per_call_and_the_testers_share(monkeypatch):
    from bench.__main__ import cost_lines, cost_table

    monkeypatch.setattr("os.cpu_count", lambda: 2)
    reports = [_run("relay", 1, 3.0, 100.0, [60.0] * 5), _run("relay", 11, 13.0, 105.0, [60.0] * 5)]
    reports[1]["measure"]["bench_cpu_pct"] = 22.0
    reports[1]["measure"]["bench_cpu_pct_per_device"] = 2.0
    rows = cost_table(reports)
    assert [r["n"] for r in rows] == [1, 11]
    big = rows[1]
    assert big["slope_pct"] == 1.0  # (13 - 3) / (11 - 1): per added call
    assert big["total_per_call_pct"] == round(13.0 / 11, 3)  # all of relay's CPU / N: fixed costs included
    assert big["total_per_call_pct"] > big["slope_pct"]
    assert big["bench_cpu_pct"] == 22.0 and big["bench_share_pct"] == 11.0  # 22 % of one core of 2
    line = cost_lines(reports)[-1]
    assert "slope 1.00" in line and "total/N 1.18" in line and "11.0 % of the machine" in line


def test_plots_are_titled_with_the_runs_metadata_and_show_time(tmp_path):
    from bench.report import plot, plot_title, run_metadata

    meta = run_metadata({"workload": "short", "phase": "random", "duration": 5.0, "client_secret": "x"})
    assert meta["commit"] and meta["commit"] != "unknown" and "CPUs" in meta["machine"]
    assert meta["settings"] == {"workload": "short", "phase": "random", "duration": 5.0}  # no secrets
    title = plot_title(meta, "marker round trip")
    assert meta["commit"] in title and meta["date_utc"] in title and "workload short" in title
    r = _run("relay", 2, 5.0, 100.0, [60.0, 70.0])
    r["_rtts_ms"] = [60.0, 70.0]
    r["timeline"] = [{"t_s": 1.0, "calls": 2, "bench_cpu_pct": 3.0, "relay_cpu_pct": 5.0,
                      "marker_rtt_ms": {"n": 2, "p50": 65.0, "p99": 70.0}},
                     {"t_s": 2.0, "calls": 2, "bench_cpu_pct": 3.0, "relay_cpu_pct": 6.0,
                      "marker_rtt_ms": {"n": 0, "p50": None, "p99": None}}]
    paths = plot([r], str(tmp_path / "x_"), meta)
    assert [p.rsplit("_", 1)[1] for p in paths] == ["latency.png", "rss.png", "timeline.png"]
    assert all((tmp_path / p.rsplit("/", 1)[1]).stat().st_size > 1000 for p in paths)


def test_markdown_table_rows_match_the_header():
    from bench.table import HEAD, table

    run = _run("relay", 2, 5.0, 100.0, [60.0, 70.0])
    run["short"] = {"due": 4, "heard": 4, "lost": 0, "without_first_frame": 1,
                    "latency_ms": {"n": 4, "p50": 760.0, "p95": 770.0, "p99": 770.0, "max": 770.0}}
    doc = {"runs": [run, {"label": "relay", "sweep_max_n": 2}], "floor": {"cpu_pct_per_call": 0.5, "us_per_frame": {}}}
    lines = table([("short", doc)]).splitlines()
    cells = HEAD.count("|")
    assert lines[0] == HEAD and all(line.count("|") == cells for line in lines[1:4]), lines
    assert "| 4 / 4, 1, 760 |" in lines[2] and "5.0x" in lines[2]  # total/N 2.5 % over a 0.5 % floor
