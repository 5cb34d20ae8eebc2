"""bench.upstream_send runs both ways end to end (figures are the bench's business, not asserted here)."""

from __future__ import annotations

from bench.upstream_send import main


async def test_every_path_is_measured() -> None:
    result = await main(sends=50, rounds=1)  # raises unless every delta sent arrived, in each receive mode
    assert set(result) == {"send old", "send relay", "recv aiohttp", "recv events", "recv core"}
    assert all(len(values) == 1 and values[0] > 0 for values in result.values())
