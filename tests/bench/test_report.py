"""Report maths: percentiles, summaries, the sweep's pass rule."""

from __future__ import annotations

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
