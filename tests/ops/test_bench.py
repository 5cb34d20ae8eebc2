"""Costs of the ops code (pytest-benchmark; disabled by default, run with --benchmark-enable):
one latency sample (histogram bucket included) and one full scrape rendering."""

from __future__ import annotations

from relay.call.metrics import LatencySamples
from tests.conftest import base_settings


def test_bench_latency_sample(benchmark) -> None:  # noqa: ANN001
    samples = LatencySamples()
    benchmark(samples.add, 0.0123)
    assert samples.count >= 1 and sum(samples.bucket_counts) == samples.count


def test_bench_render(benchmark, tmp_path) -> None:  # noqa: ANN001
    from relay.ops.counters import OPS
    from relay.web.app import create_app
    from relay.web.metrics import render

    app = create_app(base_settings(tmp_path))
    counters = app[OPS]
    for i in range(40):  # a realistic spread of routes and statuses
        counters.http_requests[("GET", f"/route/{i}", "200")] = i
    body = benchmark(render, app)
    assert body.startswith(b"# HELP relay_build_info")
