"""PlayoutBuffer: frames, accounting, finish padding, clear (barge-in), capacity, bounds, compiled == reference."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay._fast import playout, playout_py

BPM = 48  # 24 kHz PCM16
FRAME = 20 * BPM


def audio(ms: int, value: int = 7) -> bytes:
    return bytes([value]) * (ms * BPM)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"bytes_per_ms": 0},
        {"bytes_per_ms": -48},
        {"bytes_per_ms": 48.0},
        {"bytes_per_ms": 48, "frame_ms": 0},
        {"bytes_per_ms": 48, "capacity_ms": 10},
        {"bytes_per_ms": 48, "silence_byte": 256},
        {"bytes_per_ms": 48, "silence_byte": -1},
    ],
)
def test_rejects_bad_parameters(impl, kwargs) -> None:
    with pytest.raises(ValueError):
        impl.PlayoutBuffer(**kwargs)


def test_frames_are_exact_and_never_partial(impl) -> None:
    b = impl.PlayoutBuffer(BPM)
    assert b.frame_bytes == FRAME and b.frame_ms == 20 and b.bytes_per_ms == BPM
    assert b.pop_frame() is None and b.current_item is None
    assert b.push("a", audio(30)) == 30 * BPM
    assert b.current_item == "a"
    assert b.pop_frame() == audio(20)
    assert b.pop_frame() is None  # 10 ms left, item not finished: caller plays silence
    assert b.buffered_ms == 10
    b.push("a", audio(10))
    assert b.pop_frame() == audio(20)
    assert (b.played_ms("a"), b.received_ms("a"), b.buffered_ms) == (40, 40, 0)


def test_finish_pads_last_frame_and_padding_is_not_played(impl) -> None:
    b = impl.PlayoutBuffer(BPM, silence_byte=0xFF)
    b.push("a", audio(25))
    b.finish("a")
    assert b.pop_frame() == audio(20)
    last = b.pop_frame()
    assert last == audio(5) + b"\xff" * (15 * BPM)
    assert b.played_ms("a") == 25 and b.received_ms("a") == 25
    assert b.pop_frame() is None and b.current_item is None


def test_items_play_in_order_and_frames_never_mix_items(impl) -> None:
    b = impl.PlayoutBuffer(BPM)
    b.push("a", audio(30, 1))
    b.push("b", audio(40, 2))  # a new item finishes the previous one
    assert b.push("a", audio(10, 1)) == 0  # a is finished: late audio refused
    frames = [b.pop_frame() for _ in range(4)]
    assert frames == [audio(20, 1), audio(10, 1) + bytes(10 * BPM), audio(20, 2), audio(20, 2)]
    assert b.current_item == "b"  # b is not finished, it may get more audio
    assert b.pop_frame() is None
    assert (b.played_ms("a"), b.played_ms("b")) == (30, 40)


def test_clear_returns_played_of_current_item_and_refuses_late_audio(impl) -> None:
    b = impl.PlayoutBuffer(BPM)
    b.push("a", audio(100))
    b.pop_frame()
    b.pop_frame()
    b.push("a", audio(50))
    assert b.clear() == ("a", 40)
    assert b.buffered_ms == 0 and b.current_item is None and b.pop_frame() is None
    assert b.received_ms("a") == 150 and b.played_ms("a") == 40
    assert b.push("a", audio(20)) == 0  # a late delta after barge-in never plays
    assert b.pop_frame() is None
    assert b.push("b", audio(20, 3)) == 20 * BPM
    assert b.pop_frame() == audio(20, 3)
    assert b.clear() == ("b", 20)
    assert b.clear() == (None, 0)


def test_clear_before_anything_played(impl) -> None:
    b = impl.PlayoutBuffer(BPM)
    b.push("a", audio(10))
    assert b.clear() == ("a", 0)


def test_capacity_drops_and_counts_overflow(impl) -> None:
    b = impl.PlayoutBuffer(BPM, capacity_ms=100)
    assert b.push("a", audio(60)) == 60 * BPM
    assert b.push("a", audio(60)) == 40 * BPM
    assert b.overflow_bytes == 20 * BPM and b.buffered_ms == 100
    assert b.push("a", audio(5)) == 0 and b.overflow_bytes == 25 * BPM
    assert b.received_ms("a") == 100
    b.pop_frame()
    assert b.push("a", audio(30)) == 20 * BPM
    assert b.buffered_ms == 100


def test_accounting_history_is_bounded(impl) -> None:
    history = impl.modules["playout"].HISTORY_ITEMS
    b = impl.PlayoutBuffer(BPM)
    for i in range(history + 5):
        b.push(f"item{i}", audio(20))
        assert b.pop_frame() == audio(20)
    b.finish(f"item{history + 4}")
    assert b.played_ms("item0") == 0 and b.received_ms("item0") == 0  # forgotten
    assert b.played_ms(f"item{history + 4}") == 20
    assert b.played_ms(f"item{5}") == 20  # the last HISTORY_ITEMS are kept


def test_queued_items_are_bounded(impl) -> None:
    limit = impl.modules["playout"].MAX_QUEUED_ITEMS
    b = impl.PlayoutBuffer(BPM)
    for i in range(limit):
        assert b.push(f"i{i}", audio(1)) == BPM
    assert b.push("one-too-many", audio(1)) == 0
    assert b.overflow_bytes == BPM
    # accounting is kept for every queued item, beyond HISTORY_ITEMS
    assert b.received_ms("i0") == 1 and b.received_ms(f"i{limit - 1}") == 1
    assert b.current_item == "i0"


def test_steady_stream_does_not_accumulate(impl) -> None:
    b = impl.PlayoutBuffer(BPM)
    for _ in range(3000):
        b.push("a", audio(20))
        assert b.pop_frame() is not None
    assert b.buffered_bytes == 0 and b.played_ms("a") == 60000 and b.received_ms("a") == 60000


# -- differential, model-based -------------------------------------------------------------------

ops = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.integers(0, 4), st.integers(0, 3000)),
        st.tuples(st.just("finish"), st.integers(0, 4)),
        st.tuples(st.just("pop")),
        st.tuples(st.just("pop")),
        st.tuples(st.just("clear")),
    ),
    max_size=80,
)


def apply(buf, op, counter: list[int]):
    kind = op[0]
    if kind == "push":
        counter[0] += 1
        return buf.push(f"item{op[1]}", bytes([counter[0] % 251]) * op[2])
    if kind == "finish":
        return buf.finish(f"item{op[1]}")
    if kind == "pop":
        return buf.pop_frame()
    return buf.clear()


def state(buf):
    ids = [f"item{i}" for i in range(5)]
    return (
        buf.current_item,
        buf.buffered_ms,
        buf.buffered_bytes,
        buf.overflow_bytes,
        [buf.played_ms(i) for i in ids],
        [buf.received_ms(i) for i in ids],
    )


@settings(max_examples=200, deadline=None)
@given(script=ops, frame_ms=st.sampled_from([10, 20, 60]), bpm=st.sampled_from([8, 32, 48]))
def test_compiled_equals_reference(script, frame_ms, bpm) -> None:
    c = playout.PlayoutBuffer(bpm, frame_ms=frame_ms, capacity_ms=200, silence_byte=0x55)
    p = playout_py.PlayoutBuffer(bpm, frame_ms=frame_ms, capacity_ms=200, silence_byte=0x55)
    kc, kp = [0], [0]
    for op in script:
        assert apply(c, op, kc) == apply(p, op, kp), op
        assert state(c) == state(p), op


@settings(max_examples=200, deadline=None)
@given(script=ops)
def test_invariants(impl, script) -> None:
    b = impl.PlayoutBuffer(BPM, capacity_ms=200)
    counter = [0]
    accepted_total = 0
    popped_total = 0
    for op in script:
        r = apply(b, op, counter)
        if op[0] == "push":
            assert 0 <= r <= op[2]
            accepted_total += r
        elif op[0] == "pop" and r is not None:
            assert len(r) == FRAME
            popped_total += len(r)
        assert 0 <= b.buffered_bytes <= 200 * BPM
        for i in range(5):
            assert b.played_ms(f"item{i}") <= b.received_ms(f"item{i}")
    # never more real audio out than in
    assert sum(b.played_ms(f"item{i}") for i in range(5)) * BPM <= accepted_total
