"""The load tester itself, N=2 for a few seconds, against a real relay whose default assistant is the
local assistant in loopback mode (markers come straight back)."""

from __future__ import annotations

import os

import pytest

from bench.audio import build
from bench.report import text_summary
from bench.runner import Scenario, run

pytestmark = pytest.mark.slow


async def test_bench_smoke_n2(loopback_relay_url):
    audio = build(None, markers=True, marker_interval_ms=500, min_duration_s=3.0)
    assert audio.source == "espeak-ng" and audio.marker_frames
    report = await run(
        Scenario(
            base_url=loopback_relay_url,
            n=2,
            rate_per_s=20,
            duration_s=3.0,
            relay_pid=os.getpid(),
            label="relay",
            progress=False,
        ),
        audio,
    )
    assert report["calls_requested"] == 2 and report["calls_established"] == 2, report["errors"]
    setup = report["setup_ms"]
    assert setup["n"] == 2 and 0 < setup["p50"] <= setup["p99"] < 5000
    assert report["session_ms"]["n"] == 2 and report["sdp_ms"]["n"] == 2
    rtt = report["marker_rtt_ms"]
    assert rtt["n"] >= 8, rtt  # ~2 markers/s x 2 devices x 3+ s
    assert 0 < rtt["p50"] <= rtt["p99"] < 1000
    # a smoke test, not the performance bar: the markers must come back, even on a busy CI machine
    assert report["markers"]["lost"] <= max(1, report["markers"]["due"] // 4), report["markers"]
    frames = report["frames"]
    assert frames["uplink_sent"] > 250 and frames["received"] > 200 and frames["lost_pct"] < 1.0
    assert frames["received"] <= frames["expected"] and frames["unexplained_holes"] == 0, frames
    assert frames["missing_pct"] is not None and frames["missing_pct"] < 25.0
    m = report["measure"]
    assert m["relay_cpu_pct"] > 0 and m["relay_rss_bytes"] > 10 * 2**20 and "relay_cpu_pct_per_call" in m
    assert report["events"] > 0
    assert "2/2 calls" in text_summary(report)


async def test_bench_churn_mode(loopback_relay_url):
    from bench.runner import run_churn

    audio = build(None, markers=True, marker_interval_ms=500, min_duration_s=3.0)
    report = await run_churn(
        Scenario(
            base_url=loopback_relay_url,
            n=1,
            rate_per_s=4,
            duration_s=1.5,
            relay_pid=os.getpid(),
            label="relay",
            progress=False,
        ),
        audio,
        call_s=1.0,
    )
    assert report["calls_requested"] == 6 and report["calls_established"] == 6, report["errors"]
    assert report["setup_ms"]["n"] == 6 and report["churn"]["mean_concurrency"] == 4.0
    assert report["frames"]["received"] > 100  # each call heard audio before it hung up
    m = report["measure"]
    assert m["relay_cpu_pct_per_call"] == round(m["relay_cpu_pct"] / 4.0, 3)
    assert "relay_rss_mb_retained_per_call" in m


@pytest.mark.parametrize("fast", [True, False], ids=["fast-devices", "aiortc-devices"])
async def test_echo_workload_both_device_paths(relay_url_for, fast):
    """Turns of speech spoken back, devices on relay's compiled paths or on aiortc's: the same audio
    both ways, every downlink slot accounted for."""
    url = await relay_url_for("relay-echo")
    audio = build(None, markers=False, min_duration_s=3.0)
    report = await run(
        Scenario(base_url=url, n=2, rate_per_s=20, duration_s=4.0, relay_pid=os.getpid(), label="relay",
                 progress=False, workload="echo", fast_devices=fast),
        audio,
    )
    assert report["calls_established"] == 2 and report["device_path"] == ("fast" if fast else "aiortc")
    frames = report["frames"]
    assert frames["uplink_sent"] > 300 and frames["received"] > 300, frames
    assert frames["lost"] == 0 and frames["missing_pct"] < 25.0 and frames["unexplained_holes"] == 0, frames
    assert report["events"] > 0  # the echo's turns reached the devices over the data channel
