"""Load-adaptive downlink Opus complexity: the controller's decisions (synthetic loads), a real
libopus encoder following them, and a real device decoding across a step."""

from __future__ import annotations

import numpy as np
import pytest
from aiortc import RTCSessionDescription

from relay.call.metrics import MediaMetrics
from relay.media.adapt import MAX_UP_WINDOWS, ComplexityController, Step, ladder
from relay.media.clock import MediaClock
from relay.media.codecs import OPUS
from relay.media.downlink import DownlinkEncoder, EncodeJob
from relay.media.opus import OpusDecoder, OpusEncoder
from tests.media.test_peer import Loopback, connect_device, dominant_hz, wait_for

W = 10  # ticks per window in the synthetic tests


def feed(ctl: ComplexityController, load: float, windows: int) -> list[Step]:
    steps = []
    for _ in range(windows * W):
        step = ctl.observe(load)
        if step is not None:
            steps.append(step)
    return steps


def controller(top: int = 4, floor: int = 0) -> ComplexityController:
    return ComplexityController(top, floor, window_ticks=W, high=0.6, down_windows=2, up_windows=5)


def test_the_ladder_skips_the_steps_that_do_not_pay_and_respects_the_floor():
    assert ladder(4, 0) == (4, 1, 0)
    assert ladder(4, 1) == (4, 1)
    assert ladder(4, 4) == (4,)
    assert ladder(1, 0) == (1, 0)
    assert ladder(10, 0) == (10, 1, 0)
    with pytest.raises(ValueError):
        ladder(4, 5)
    with pytest.raises(ValueError):
        ladder(11, 0)


def test_steps_down_only_after_a_sustained_overload_then_down_to_the_floor():
    ctl = controller()
    assert feed(ctl, 0.9, 1) == [] and ctl.complexity == 4  # one hot window is not sustained
    assert feed(ctl, 0.3, 1) == []  # in between: the run of hot windows is broken
    assert feed(ctl, 0.9, 1) == [] and ctl.complexity == 4
    (step,) = feed(ctl, 0.9, 1)
    assert (step.before, step.after, step.down) == (4, 1, True) and step.load == pytest.approx(0.9)
    (step,) = feed(ctl, 0.9, 2)
    assert (step.before, step.after) == (1, 0)
    assert feed(ctl, 5.0, 20) == [] and ctl.complexity == 0  # the floor: nothing below 0
    assert ctl.steps_down == 2 and ctl.steps_up == 0


def test_the_floor_setting_stops_the_descent():
    ctl = controller(4, 1)
    steps = feed(ctl, 0.9, 20)
    assert [s.after for s in steps] == [1] and ctl.complexity == 1


def test_one_long_stall_is_not_a_sustained_overload():
    ctl = controller()
    for _ in range(3):  # a 500 ms stall once per window: one tick of load 25, the rest idle
        assert ctl.observe(25.0) is None
        for _ in range(W - 1):
            assert ctl.observe(0.1) is None
    assert ctl.complexity == 4


def test_steps_up_after_the_calm_window_and_does_not_flap_in_between():
    ctl = controller()
    feed(ctl, 0.9, 4)
    assert ctl.complexity == 0
    # a load that would overload the next level up (0.55 at 0 -> 0.63 predicted at 1): stays put
    assert feed(ctl, 0.55, 30) == [] and ctl.complexity == 0
    assert feed(ctl, 0.5, 4) == []  # 0.57 predicted at 1: calm, but not for long enough yet
    (step,) = feed(ctl, 0.5, 1)
    assert (step.before, step.after, step.down) == (0, 1, False)
    # at 1, the same 0.5 predicts 0.96 at 4 (x1.9): stays at 1; 0.3 predicts 0.57: steps up
    assert feed(ctl, 0.5, 30) == [] and ctl.complexity == 1
    steps = feed(ctl, 0.3, 5)
    assert [s.after for s in steps] == [4]
    assert feed(ctl, 0.1, 50) == [] and ctl.complexity == 4  # the top: nothing above the configured 4
    assert ctl.steps_up == 2


def feed_split(ctl: ComplexityController, load: float, encode: float, windows: int) -> list[Step]:
    steps = []
    for _ in range(windows * W):
        step = ctl.observe(load, encode)
        if step is not None:
            steps.append(step)
    return steps


def test_a_worker_stepped_down_by_a_burst_comes_back_at_a_moderate_load():
    ctl = controller()
    feed(ctl, 0.9, 2)  # a set-up burst
    assert ctl.complexity == 1
    # 60 calls at complexity 1: load 0.36, of which 0.1 the encode. A bar on the whole load would
    # keep it at 1 for good; predicted at 4 it is 0.36 + 0.1 * 0.91 = 0.45 < 0.6: back up
    assert ctl.predicted_up(0.36, 0.1) == pytest.approx(0.36 + 0.1 * (134 / 70 - 1))
    (step,) = feed_split(ctl, 0.36, 0.1, 5)
    assert (step.before, step.after, step.down) == (1, 4, False)
    assert feed_split(ctl, 0.45, 0.19, 50) == [] and ctl.complexity == 4


def test_no_step_up_when_the_encode_part_would_overload_the_level_above():
    ctl = controller()
    feed(ctl, 0.9, 2)
    assert ctl.complexity == 1
    # load 0.4, encode 0.3: predicted at 4 0.4 + 0.27 = 0.67 > 0.6, stays
    assert feed_split(ctl, 0.4, 0.3, 30) == [] and ctl.complexity == 1


def test_a_step_up_that_brings_the_overload_back_doubles_the_wait_for_the_next():
    ctl = controller()
    feed(ctl, 0.9, 2)
    assert ctl.complexity == 1
    feed(ctl, 0.1, 5)
    assert ctl.complexity == 4
    feed(ctl, 0.9, 2)  # overloaded again right away: the step up did not hold
    assert ctl.complexity == 1 and ctl.up_windows == 10
    assert feed(ctl, 0.1, 9) == []  # 5 calm windows are no longer enough
    assert [s.after for s in feed(ctl, 0.1, 1)] == [4]
    for _ in range(5):  # keeps failing: the wait grows to its ceiling, not beyond
        feed(ctl, 0.9, 2)
        feed(ctl, 0.1, ctl.up_windows)
    assert ctl.up_windows == MAX_UP_WINDOWS
    # a step up that holds resets the wait
    feed(ctl, 0.1, MAX_UP_WINDOWS + 1)
    assert ctl.complexity == 4 and ctl.up_windows == 5


def test_a_real_encoder_follows_the_level_through_the_ctl():
    enc = OpusEncoder(24000, complexity=4)
    assert enc.complexity == 4  # OPUS_GET_COMPLEXITY (4011)
    frame = (np.sin(np.arange(480) * 2 * np.pi * 440 / 24000) * 8000).astype("<i2").tobytes()
    dec = OpusDecoder(24000)
    for level in (1, 0, 4):
        enc.set_complexity(level)
        assert enc.complexity == level
        assert len(dec.decode(enc.encode(frame))) == len(frame)
    with pytest.raises(ValueError):
        enc.set_complexity(11)
    enc.close()


class Scripted(ComplexityController):
    """The real controller, with its decisions scripted by tick: ``steps[i]`` is the level from the i-th tick on."""

    def __init__(self, script: dict[int, int]) -> None:
        super().__init__(4, 0, window_ticks=1000)
        self.script = script
        self.ticks = 0
        self.loads: list[float] = []

    def observe(self, load: float, encode_load: float | None = None) -> Step | None:
        self.ticks += 1
        self.loads.append(load)
        after = self.script.get(self.ticks)
        if after is None:
            return None
        step = Step(self.complexity, after, load)
        self._index = self.levels.index(after)
        return step


class JobLoopback(Loopback):
    """The tone echo of tests.media.test_peer, encoding on the clock's encode thread like a call does."""

    def __init__(self, offer, metrics, clock) -> None:
        super().__init__(offer, metrics, clock)
        self.encoder = DownlinkEncoder(self.codec, complexity=clock.complexity_for(4))
        self.seen: list[int] = []  # the live encoder's complexity as libopus reports it, per encode

    def tick(self, now: float) -> EncodeJob | None:
        frame = self.frames.popleft() if self.frames else None
        payload = self.encoder.prepare(frame)
        if payload is not None:
            self.track.push(payload)
            return None
        return self.encoder.job(frame, self._done)

    def _done(self, payload: bytes) -> None:
        self.seen.append(self.encoder._encoder.complexity)
        self.track.push(payload)


async def test_a_device_keeps_decoding_the_call_across_complexity_steps(caplog):
    caplog.set_level("WARNING", logger="relay.media")
    metrics = MediaMetrics()
    ctl = Scripted({100: 1, 200: 0})
    clock = MediaClock(metrics, adapt=ctl)
    assert clock.complexity_for(4) == 4 and metrics.opus_complexity == 4
    clock.start()
    device, _, received = await connect_device(label=None, tone_hz=660.0)
    relay = JobLoopback(device.localDescription.sdp, metrics, clock)
    assert relay.codec.name == OPUS.name
    try:
        answer = await relay.peer.answer(device.localDescription.sdp)
        await device.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        await wait_for(lambda: relay.peer.connected)
        await wait_for(lambda: ctl.ticks >= 200 and 0 in relay.seen, timeout_s=20)
        heard_at_0 = len(received)
        await wait_for(lambda: len(received) >= heard_at_0 + 60, timeout_s=20)
        # libopus itself reports the level the clock applied, between batches
        assert relay.seen[-1] == 0 and relay.encoder.complexity == 0
        assert metrics.opus_complexity == 0 and metrics.opus_complexity_steps == {"down": 2}
        assert "Opus complexity 4 -> 1" in caplog.text and "Opus complexity 1 -> 0" in caplog.text
        # a call set up now starts at the current level
        assert clock.complexity_for(4) == 0
        # the device decodes the echoed tone at complexity 0, after both steps
        tail = np.concatenate(received[heard_at_0:])
        assert abs(dominant_hz(tail, len(received[-1]) * 50) - 660) < 10
        assert np.sqrt(np.mean(tail.astype(float) ** 2)) > 1000
        assert all(0 <= load < 100 for load in ctl.loads)  # the clock reported a load every tick
    finally:
        await device.close()
        device._reader.cancel()
        await relay.peer.close()
        await clock.stop()


def test_settings_are_checked_and_wire_the_worker_clock():
    from relay.media.plane import MediaPlane, check_settings
    from relay.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match="opus_complexity_min"):
        check_settings(Settings(opus_complexity=4, opus_complexity_min=5))
    with pytest.raises(SettingsError, match="opus_complexity"):
        check_settings(Settings(opus_complexity=11))
    assert Settings().opus_adaptive is True and Settings().opus_complexity_min == 0
    plane = MediaPlane(Settings(opus_complexity_min=1))
    assert plane.clock.adaptive is not None and plane.clock.adaptive.levels == (4, 1)
    assert plane.metrics.opus_complexity == 4
    fixed = MediaPlane(Settings(opus_adaptive=False, opus_complexity=3))
    assert fixed.clock.adaptive is not None and fixed.clock.adaptive.levels == (3,)  # a one-level ladder
    assert fixed.clock.complexity_for(4) == 3 and fixed.metrics.opus_complexity == 3


async def test_the_clock_measures_its_load_with_adaptive_complexity_off_too():
    metrics = MediaMetrics()
    clock = MediaClock(metrics, adapt=ComplexityController(4, 4))  # opus_adaptive off: one level
    assert clock.complexity_for(4) == 4 and metrics.opus_complexity == 4

    class Idle:
        def tick(self, now: float) -> None:
            return None

        def clock_failed(self, exc: BaseException) -> None:
            raise AssertionError(exc)

    clock.register(Idle())
    clock.start()
    try:
        await wait_for(lambda: clock.ticks > 50, timeout_s=20)
        await wait_for(lambda: metrics.clock_load > 0, timeout_s=20)  # one window's mean, set each second
        assert metrics.clock_load <= 2.0 and metrics.opus_complexity_steps == {}
    finally:
        await clock.stop()
