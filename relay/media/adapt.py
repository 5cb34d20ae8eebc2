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
- **up** one step after ``up_windows`` consecutive windows below ``low``. ``low`` is well
  under half of ``high`` because a step down roughly halves the encode cost (complexity 4 ->
  1: 134 -> 70 us a frame), so the load a step up brings back stays below ``high``;
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
    """Feed ``observe(load)`` once per tick; it returns a ``Step`` when the complexity changes."""

    def __init__(self, top: int, floor: int = 0, *, window_ticks: int = 50, high: float = 0.6,
                 low: float = 0.25, down_windows: int = 2, up_windows: int = 5) -> None:
        if not 0 < low < high:
            raise ValueError("need 0 < low < high")
        if window_ticks < 1 or down_windows < 1 or up_windows < 1:
            raise ValueError("windows must be at least 1")
        self.levels = ladder(top, floor)
        self.window_ticks = window_ticks
        self.high = high
        self.low = low
        self.down_windows = down_windows
        self.base_up_windows = up_windows
        self.up_windows = up_windows  # grows by back-off
        self._index = 0  # into levels
        self._sum = 0.0
        self._count = 0
        self._hot = 0  # consecutive windows above high
        self._calm = 0  # consecutive windows below low
        self._since_up: int | None = None  # windows since the last step up (None: none pending)
        self.last_load = 0.0  # the last full window's mean load
        self.steps_down = 0
        self.steps_up = 0

    @property
    def complexity(self) -> int:
        return self.levels[self._index]

    def observe(self, load: float) -> Step | None:
        self._sum += min(max(load, 0.0), LOAD_CLAMP)
        self._count += 1
        if self._count < self.window_ticks:
            return None
        mean = self._sum / self._count
        self._sum, self._count = 0.0, 0
        return self._window(mean)

    def reset_window(self) -> None:
        """Forget the partial window (the clock paused: no calls)."""
        self._sum, self._count = 0.0, 0

    def _window(self, mean: float) -> Step | None:
        self.last_load = mean
        if self._since_up is not None:
            self._since_up += 1
        if mean > self.high:
            self._hot, self._calm = self._hot + 1, 0
        elif mean < self.low:
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
