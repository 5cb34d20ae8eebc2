"""The sans-I/O failure throttle: time is an argument, so windows are tested exactly."""

from __future__ import annotations

import pytest

from relay.throttle import FailureThrottle


def test_blocks_at_limit_and_reopens_after_window() -> None:
    t = FailureThrottle(3, 60)
    for now in (0.0, 1.0, 2.0):
        assert t.retry_after_s("k", now) == 0
        t.failure("k", now)
    assert t.retry_after_s("k", 2.0) == pytest.approx(58.0)
    assert t.retry_after_header("k", 2.0) == "58"
    assert t.retry_after_s("k", 59.9) > 0
    assert t.retry_after_s("k", 60.0) == 0  # the oldest failure left the window
    assert t.retry_after_header("k", 60.0) is None


def test_blocked_attempts_do_not_extend_the_block() -> None:
    t = FailureThrottle(2, 10)
    t.failure("k", 0.0)
    t.failure("k", 1.0)
    # callers refuse blocked attempts without recording them: the block ends on schedule
    assert t.retry_after_s("k", 5.0) == pytest.approx(5.0)
    assert t.retry_after_s("k", 11.0) == 0


def test_success_clears_and_keys_are_independent() -> None:
    t = FailureThrottle(1, 10)
    t.failure("a", 0.0)
    assert t.retry_after_s("a", 0.0) > 0 and t.retry_after_s("b", 0.0) == 0
    t.success("a")
    assert t.retry_after_s("a", 0.0) == 0


def test_memory_is_bounded() -> None:
    t = FailureThrottle(5, 60, max_keys=100)
    for i in range(1000):
        t.failure(f"k{i}", 0.0)
    assert len(t) == 100
    assert t.retry_after_s("k999", 0.0) == 0  # one failure, under the limit, still tracked
    t2 = FailureThrottle(1, 60, max_keys=100)
    for i in range(1000):
        t2.failure(f"k{i}", 0.0)
    assert t2.retry_after_s("k999", 0.0) > 0 and t2.retry_after_s("k0", 0.0) == 0  # oldest evicted


def test_expired_keys_are_forgotten() -> None:
    t = FailureThrottle(2, 10)
    t.failure("k", 0.0)
    assert t.retry_after_s("k", 20.0) == 0 and len(t) == 0


@pytest.mark.parametrize("args", [(0, 10), (1, 0), (1, -1)])
def test_invalid_parameters(args: tuple[int, int]) -> None:
    with pytest.raises(ValueError):
        FailureThrottle(*args)
