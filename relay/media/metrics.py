"""Per-worker media counters and latency samples (bounded), read by tests, bench and /metrics."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


class LatencySamples:
    """The last ``capacity`` latency samples in seconds, with count/max over all time."""

    def __init__(self, capacity: int = 4096) -> None:
        self._samples: deque[float] = deque(maxlen=capacity)
        self.count = 0
        self.max_s = 0.0

    def add(self, seconds: float) -> None:
        self._samples.append(seconds)
        self.count += 1
        if seconds > self.max_s:
            self.max_s = seconds

    def percentile(self, p: float) -> float | None:
        if not self._samples:
            return None
        ordered = sorted(self._samples)
        idx = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
        return ordered[idx]

    def summary_ms(self) -> dict[str, float | int | None]:
        def ms(v: float | None) -> float | None:
            return None if v is None else round(v * 1000, 3)

        return {"count": self.count, "p50_ms": ms(self.percentile(50)), "p99_ms": ms(self.percentile(99)),
                "max_ms": ms(self.max_s if self.count else None)}


@dataclass
class MediaMetrics:
    """Counters of one worker process's media plane."""

    calls_started: int = 0
    calls_ended: int = 0
    calls_rejected: int = 0
    rtp_in_packets: int = 0
    rtp_in_lost: int = 0
    rtp_in_late: int = 0
    rtp_in_bad: int = 0
    rtp_in_flood: int = 0
    dc_events_refused: int = 0
    frames_out: int = 0
    frames_out_silent: int = 0
    frames_out_dropped: int = 0
    frames_out_dtx: int = 0
    clock_overruns: int = 0
    dc_events_dropped: int = 0
    # RTP packet handed to relay (after SRTP) -> its audio sent upstream as input_audio_buffer.append
    uplink_latency: LatencySamples = field(default_factory=LatencySamples)
    # audio delta from upstream parsed -> first frame of it handed to aiortc as an RTP payload
    downlink_latency: LatencySamples = field(default_factory=LatencySamples)

    def snapshot(self) -> dict[str, object]:
        out: dict[str, object] = {k: v for k, v in vars(self).items() if isinstance(v, int)}
        out["uplink_latency"] = self.uplink_latency.summary_ms()
        out["downlink_latency"] = self.downlink_latency.summary_ms()
        return out
