"""The physical-floor microbenchmark: every step measured, the total is their sum, the report's ratio."""

from __future__ import annotations

import pytest

from bench.floor import FRAMES_PER_S, measure
from relay.client.codec import encode_pcm16_to_opus


def _speechlike_packets(n: int = 60) -> list[bytes]:
    import numpy as np

    t = np.arange(48000 * n // 50) / 48000
    x = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 15)) * 4000
    return encode_pcm16_to_opus(x.astype(np.int16), 48000)


def test_floor_sums_its_steps_and_batching_is_measured():
    out = measure(_speechlike_packets(), frames=100, batch=8, complexity=4, bitrate_bps=32000)
    steps = out["us_per_frame"]
    assert set(steps) == {"decode", "encode", "srtp_protect", "srtp_unprotect", "send_recv_per_packet_batch8",
                          "send_recv_per_packet_batch1"}
    assert all(v > 0 for v in steps.values()), steps
    per_frame_us = (steps["decode"] + steps["encode"] + steps["srtp_protect"] + steps["srtp_unprotect"]
                    + 2 * steps["send_recv_per_packet_batch8"])
    assert out["cpu_pct_per_call"] == pytest.approx(per_frame_us * 1e-6 * FRAMES_PER_S * 100, rel=0.02, abs=2e-3)
    assert out["opus_complexity"] == 4 and out["srtp_profile"].startswith("SRTP_")
    with pytest.raises(ValueError):
        measure([], frames=100)
    with pytest.raises(ValueError):
        measure(_speechlike_packets(), frames=10**6)


def test_cost_table_gives_relay_over_the_floor():
    from bench.__main__ import cost_lines, cost_table
    from tests.bench.test_report import _run

    reports = [_run("relay", 1, 3.0, 100.0, [60.0] * 5), _run("relay", 11, 13.0, 105.0, [60.0] * 5)]
    rows = cost_table(reports, {"cpu_pct_per_call": 0.25, "batch": 11})
    assert rows[1]["slope_over_floor"] == 4.0 and rows[1]["total_over_floor"] == round(13.0 / 11 / 0.25, 2)
    assert "over the floor: slope 4.0x" in cost_lines(reports, {"cpu_pct_per_call": 0.25, "batch": 11})[-2]
