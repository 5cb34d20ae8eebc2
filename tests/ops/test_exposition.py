"""The exposition writer's output parses under a strict reading of the text format, and the
strict parser itself refuses what it must (so the endpoint tests can rely on it)."""

from __future__ import annotations

import pytest

from relay.call.metrics import LATENCY_BUCKETS_S, LatencySamples
from relay.ops.counters import bump
from relay.ops.exposition import Exposition
from tests.ops.promtext import ParseError, parse


def test_families_render_and_parse() -> None:
    out = Exposition()
    out.gauge("relay_live_calls", "Live calls", 3)
    out.counter("relay_calls_started_total", "Started", 7)
    out.labelled("relay_calls_ended_total", "counter", "Ended", [({"reason": "device_closed"}, 2),
                                                                 ({"reason": 'we"ird\\\nreason'}, 1)])
    out.labelled("relay_empty_total", "counter", "Declared, no sample yet", [])
    samples = LatencySamples()
    for s in (0.00005, 0.0003, 0.0003, 0.015, 5.0):
        samples.add(s)
    out.histogram("relay_uplink_latency_seconds", "Latency\nwith a newline", LATENCY_BUCKETS_S,
                  samples.bucket_counts, samples.sum_s)
    fams = parse(out.render().decode())
    assert fams["relay_live_calls"].value() == 3
    assert fams["relay_calls_started_total"].value() == 7
    assert fams["relay_calls_ended_total"].by("reason") == {"device_closed": 2, 'we"ird\\\nreason': 1}
    assert fams["relay_empty_total"].samples == []
    assert fams["relay_uplink_latency_seconds"].help == "Latency\\nwith a newline"
    hist = {lab["le"]: v for n, lab, v in fams["relay_uplink_latency_seconds"].samples if n.endswith("_bucket")}
    assert hist["0.0001"] == 1 and hist["0.0005"] == 3 and hist["0.02"] == 4 and hist["1.28"] == 4
    assert hist["+Inf"] == 5
    total = [v for n, _l, v in fams["relay_uplink_latency_seconds"].samples if n.endswith("_sum")][0]
    assert total == pytest.approx(0.00005 + 0.0003 * 2 + 0.015 + 5.0)


def test_writer_refuses_bad_names_and_duplicates() -> None:
    out = Exposition()
    with pytest.raises(ValueError):
        out.gauge("relay-bad", "x", 1)
    with pytest.raises(ValueError):
        out.counter("relay_no_suffix", "x", 1)
    with pytest.raises(ValueError):
        out.gauge("relay_x", "x", 1, {"bad-label": "v"})
    out.gauge("relay_once", "x", 1)
    with pytest.raises(ValueError):
        out.gauge("relay_once", "x", 2)


def test_bounded_label_keys() -> None:
    counts: dict = {}
    for i in range(20):
        bump(counts, f"k{i}", max_keys=5)
    assert len(counts) == 6 and counts["other"] == 15  # 5 real keys, then one "other"


@pytest.mark.parametrize("text", [
    "relay_x 1\n",                                                       # no HELP/TYPE
    "# HELP relay_x x\n# TYPE relay_x gauge\nrelay_x 1",                 # no final newline
    "# HELP relay_x x\n# TYPE relay_x gauge\nrelay_x 1\nrelay_x 2\n",    # series twice
    "# HELP relay_x x\n# TYPE relay_x gauge\nrelay_x{a=\"b} 1\n",        # bad labels
    "# HELP relay_x x\n# TYPE relay_x gauge\nrelay_y 1\n",               # sample outside its family
    "# HELP relay_x x\n# TYPE relay_x counter\nrelay_x 1\n",             # counter without _total
    "# HELP relay_x_total x\n# TYPE relay_x_total counter\nrelay_x_total -1\n",
    "# HELP relay_x x\n# TYPE relay_x gauge\nrelay_x one\n",
    "# HELP relay_x x\n# TYPE relay_x gauge\n\nrelay_x 1\n",
    "# HELP relay_h x\n# TYPE relay_h histogram\nrelay_h_bucket{le=\"1\"} 2\nrelay_h_bucket{le=\"+Inf\"} 1\n"
    "relay_h_sum 1\nrelay_h_count 1\n",                                  # not cumulative
    "# HELP relay_h x\n# TYPE relay_h histogram\nrelay_h_bucket{le=\"+Inf\"} 2\nrelay_h_sum 1\nrelay_h_count 3\n",
])
def test_strict_parser_refuses(text: str) -> None:
    with pytest.raises(ParseError):
        parse(text)


async def test_clock_stall_is_counted_as_late_ticks_and_one_stall() -> None:
    import asyncio
    import time

    from relay.call.metrics import MediaMetrics
    from relay.media.clock import MediaClock

    metrics = MediaMetrics()
    clock = MediaClock(metrics)

    class Blocker:
        ticks = 0

        def tick(self, now: float) -> None:
            self.ticks += 1
            if self.ticks == 3:
                time.sleep(0.2)  # block the event loop: 10 ticks' worth

        def clock_failed(self, exc: BaseException) -> None:
            raise AssertionError(exc)

    listener = Blocker()
    clock.register(listener)
    clock.start()
    try:
        async with asyncio.timeout(10):
            while listener.ticks < 30:  # noqa: ASYNC110 -- polling state that has no event
                await asyncio.sleep(0.02)
    finally:
        await clock.stop()
    assert metrics.clock_stalls >= 1
    assert metrics.clock_late_ticks >= 5  # the stalled ticks were caught up one by one, each behind schedule
    assert metrics.clock_late_ticks >= metrics.clock_stalls
