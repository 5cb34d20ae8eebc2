"""Per-worker media counters and latency samples (bounded), read by tests, bench and /metrics."""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from dataclasses import dataclass, field

# upper bounds of the latency histogram's buckets, seconds (GET /metrics: relay_*_latency_seconds)
LATENCY_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28)
MAX_REASONS = 64  # distinct end reasons / setup failure codes kept; beyond: "other"


def bump(counts: dict[str, int], key: str) -> None:
    """``counts[key] += 1`` with at most ``MAX_REASONS`` keys (reasons come from code, this is a guard)."""
    if key not in counts and len(counts) >= MAX_REASONS:
        key = "other"
    counts[key] = counts.get(key, 0) + 1


class LatencySamples:
    """The last ``capacity`` latency samples in seconds, with count/max/sum and histogram buckets over all time."""

    def __init__(self, capacity: int = 4096) -> None:
        self._samples: deque[float] = deque(maxlen=capacity)
        self.count = 0
        self.max_s = 0.0
        self.sum_s = 0.0
        self.bucket_counts = [0] * (len(LATENCY_BUCKETS_S) + 1)  # non-cumulative; last: above every bound

    def add(self, seconds: float) -> None:
        self._samples.append(seconds)
        self.count += 1
        self.sum_s += seconds
        self.bucket_counts[bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
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
    calls_handed_off: int = 0  # new calls this worker passed to a sibling (relay serve --workers N)
    rtp_in_packets: int = 0
    rtp_in_lost: int = 0
    rtp_in_late: int = 0
    rtp_in_bad: int = 0
    rtp_in_flood: int = 0
    dc_events_refused: int = 0
    dc_messages_too_large: int = 0  # device messages refused while reassembling (over a=max-message-size)
    frames_out: int = 0
    frames_out_silent: int = 0
    frames_out_dropped: int = 0
    frames_out_dtx: int = 0
    frames_out_trimmed: int = 0  # quiet frames skipped by the backlog trim (relay.bridge.trim), added at call end
    upstream_events_invalid: int = 0  # upstream events dropped for a malformed field (relay.bridge.shapes), at call end
    dc_events_policy_refused: int = 0  # device events refused whole by the device policy (relay.bridge.policy), at call end
    clock_overruns: int = 0
    clock_late_ticks: int = 0  # ticks run behind schedule by a ptime or more (catching up a stall)
    clock_stalls: int = 0  # times the clock fell behind and started catching up
    opus_complexity: int = -1  # the worker's downlink Opus complexity (relay.media.clock; -1: none set)
    clock_load: float = 0.0  # last second's mean tick load: how far into its ptime a tick finished
    opus_complexity_steps: dict[str, int] = field(default_factory=dict)  # adaptive steps by direction
    dc_events_dropped: int = 0
    dc_events_in: int = 0  # data-channel messages received from devices (refused ones included)
    dc_events_out: int = 0  # events handed to the peer for devices (dropped ones included)
    rtp_out_packets: int = 0  # downlink packets taken by aiortc's senders (one RTP packet each)
    upstream_connect_failures: int = 0
    upstream_recycles: int = 0
    upstream_recycle_failures: int = 0
    dtls_first_flight_resends: int = 0  # ClientHellos sent again early (relay.media.handshake.FirstFlight)
    calls_ended_by_reason: dict[str, int] = field(default_factory=dict)
    dtls_failures: dict[str, int] = field(default_factory=dict)  # failed DTLS handshakes by alert / detail
    setup_failures: dict[str, int] = field(default_factory=dict)  # POST /v1/realtime errors by code
    # RTP packet handed to relay (after SRTP) -> its audio sent upstream as input_audio_buffer.append
    uplink_latency: LatencySamples = field(default_factory=LatencySamples)
    # audio delta from upstream parsed -> first frame of it handed to aiortc as an RTP payload
    downlink_latency: LatencySamples = field(default_factory=LatencySamples)
    # POST /v1/realtime answered with an SDP answer: request in -> response ready (session checks, ICE gathering)
    setup_latency: LatencySamples = field(default_factory=LatencySamples)
    # per media-clock tick: how long the tick blocked the event loop (pull + gate + push + inline encodes)
    clock_tick_blocked: LatencySamples = field(default_factory=LatencySamples)
    # per encode batch: handed to the encode thread -> back on the loop (what the batch adds to downlink latency)
    clock_encode_batch: LatencySamples = field(default_factory=LatencySamples)

    def snapshot(self) -> dict[str, object]:
        out: dict[str, object] = {k: v for k, v in vars(self).items() if isinstance(v, int)}
        out["calls_ended_by_reason"] = dict(self.calls_ended_by_reason)
        out["setup_failures"] = dict(self.setup_failures)
        out["dtls_failures"] = dict(self.dtls_failures)
        out["opus_complexity_steps"] = dict(self.opus_complexity_steps)
        out["clock_load"] = round(self.clock_load, 3)
        out["uplink_latency"] = self.uplink_latency.summary_ms()
        out["downlink_latency"] = self.downlink_latency.summary_ms()
        out["clock_tick_blocked"] = self.clock_tick_blocked.summary_ms()
        out["clock_encode_batch"] = self.clock_encode_batch.summary_ms()
        return out
