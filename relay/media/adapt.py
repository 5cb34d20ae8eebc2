"""Load-adaptive downlink Opus complexity: a sans-I/O controller the media clock feeds.

The signal is the clock's own: per tick, how far into its 20 ms period the tick *finished*,
measured from its scheduled start -- ``(finished - scheduled) / ptime``. It covers everything
that makes the clock miss its schedule: the loop being late to wake the tick (busy with
set-ups, uplink packets, other work), the tick's on-loop work and the encode batch it waits
for (the encode thread, ~80 % of relay's per-call CPU at complexity 4). At 1.0 the next tick
starts late; sustained above ~1 the clock falls behind and markers are lost. It costs one
``loop.time()`` per tick and needs no thread or /proc read.

Decisions are made per window of ``window_ticks`` ticks (1 s), on the window's mean load
(each tick's load is clamped at ``LOAD_CLAMP``, so one long stall weighs like two slow ticks
a tick, not like a sustained overload):

- **down** one step after ``down_windows`` consecutive windows above ``high``;
- **up** one step after ``up_windows`` consecutive windows whose load, *predicted at the next
  level up*, stays under ``high``: the window's load with its encode part (the clock's wait
  for the encode batch, reported beside each tick's load) scaled by the encode-cost ratio of
  the two levels (``ENCODE_US``; complexity 1 -> 4 is 70 -> 134 us a frame, x1.9). Much of a
  moderately loaded worker's load is not the encode, so a fixed "calm" bar left workers stuck
  low (a set-up burst stepped a 60-call worker down to 1, whose load then sat at ~0.36, above a
  0.25 bar, for good), while a prediction from the whole load would refuse steps that fit;
- **back-off**: a step up that is undone (a step down) within ``up_windows`` windows doubles
  the windows the next step up needs (up to ``MAX_UP_WINDOWS``), so an overload that comes
  back every time the complexity rises does not flap; a step up that holds resets it.

The ladder: the configured complexity, then 1, then 0 (docs/media.md "Opus complexity: why
4": 3 and 2 cost ~80 % of 4 for the whole quality loss of leaving 4; 1 costs ~52 %, 0 ~45 %),
never below ``floor`` (``opus_complexity_min``).
"""

from __future__ import annotations

from dataclasses import dataclass

LOAD_CLAMP = 2.0  # one tick's load counts at most this (a 500 ms stall is one bad tick, not 25)
MAX_UP_WINDOWS = 60  # the back-off's ceiling: at most a minute of calm before a step up
CHEAP_STEPS = (1, 0)  # below the configured complexity (docs/media.md: 3 and 2 do not pay)
# encode us per 20 ms frame by complexity, 24 kHz mono 32 kb/s (docs/media.md "Opus complexity: why 4"):
# only the ratios matter here, to predict the load one level up
ENCODE_US = (61, 70, 100, 105, 134, 134, 135, 152, 177, 177, 177)


def ladder(top: int, floor: int) -> tuple[int, ...]:
    """The complexities to step through, highest first: ``top``, then 1, 0, none below ``floor``."""
    if not 0 <= floor <= top <= 10:
        raise ValueError(f"need 0 <= opus_complexity_min ({floor}) <= opus_complexity ({top}) <= 10")
    return (top,) + tuple(c for c in CHEAP_STEPS if floor <= c < top)


@dataclass(frozen=True)
class Step:
    """A decision: the complexity changed ``before`` -> ``after`` because the window's mean load
    was ``load`` (fraction of a tick)."""

    before: int
    after: int
    load: float

    @property
    def down(self) -> bool:
        return self.after < self.before


class ComplexityController:
    """Feed ``observe(load, encode_load)`` once per tick; it returns a ``Step`` when the complexity changes."""

    def __init__(self, top: int, floor: int = 0, *, window_ticks: int = 50, high: float = 0.6,
                 down_windows: int = 2, up_windows: int = 5) -> None:
        if not 0 < high:
            raise ValueError("need 0 < high")
        if window_ticks < 1 or down_windows < 1 or up_windows < 1:
            raise ValueError("windows must be at least 1")
        self.levels = ladder(top, floor)
        self.window_ticks = window_ticks
        self.high = high
        self.down_windows = down_windows
        self.base_up_windows = up_windows
        self.up_windows = up_windows  # grows by back-off
        self._index = 0  # into levels
        self._sum = 0.0
        self._encode_sum = 0.0
        self._count = 0
        self._hot = 0  # consecutive windows above high
        self._calm = 0  # consecutive windows whose load predicted one level up is under high
        self._since_up: int | None = None  # windows since the last step up (None: none pending)
        self.last_load = 0.0  # the last full window's mean load
        self.steps_down = 0
        self.steps_up = 0

    @property
    def complexity(self) -> int:
        return self.levels[self._index]

    def observe(self, load: float, encode_load: float | None = None) -> Step | None:
        """One tick: ``load`` how far into its period it finished, ``encode_load`` the part of the
        period spent encoding (``None``: count all of ``load`` as encoding, the cautious guess)."""
        clamped = min(max(load, 0.0), LOAD_CLAMP)
        self._sum += clamped
        self._encode_sum += clamped if encode_load is None else min(max(encode_load, 0.0), clamped)
        self._count += 1
        if self._count < self.window_ticks:
            return None
        mean, encode = self._sum / self._count, self._encode_sum / self._count
        self._sum, self._encode_sum, self._count = 0.0, 0.0, 0
        return self._window(mean, encode)

    def reset_window(self) -> None:
        """Forget the partial window (the clock paused: no calls)."""
        self._sum, self._encode_sum, self._count = 0.0, 0.0, 0

    def _up_ratio(self) -> float:
        """How much dearer a frame is one level up than at the current level."""
        return ENCODE_US[self.levels[self._index - 1]] / ENCODE_US[self.levels[self._index]]

    def predicted_up(self, mean: float, encode: float) -> float:
        """The load one level up: the encode part grows by the levels' cost ratio, the rest stays."""
        return mean + encode * (self._up_ratio() - 1.0)

    def _window(self, mean: float, encode: float) -> Step | None:
        self.last_load = mean
        if self._since_up is not None:
            self._since_up += 1
        if mean > self.high:
            self._hot, self._calm = self._hot + 1, 0
        elif self._index > 0 and self.predicted_up(mean, encode) < self.high:
            self._calm, self._hot = self._calm + 1, 0
        else:
            self._hot = self._calm = 0
        before = self.complexity
        if self._hot >= self.down_windows and self._index < len(self.levels) - 1:
            if self._since_up is not None and self._since_up <= self.up_windows:
                self.up_windows = min(self.up_windows * 2, MAX_UP_WINDOWS)  # the step up did not hold
            self._since_up = None
            self._index += 1
            self._hot = self._calm = 0
            self.steps_down += 1
            return Step(before, self.complexity, mean)
        if self._calm >= self.up_windows and self._index > 0:
            self._index -= 1
            self._hot = self._calm = 0
            self._since_up = 0
            self.steps_up += 1
            return Step(before, self.complexity, mean)
        if self._since_up is not None and self._since_up > self.up_windows:
            self._since_up = None  # the step up held
            self.up_windows = self.base_up_windows
        return None
