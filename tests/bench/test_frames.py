"""The downlink fields cannot contradict each other: every hole in arrivals is explained by a field."""

from __future__ import annotations

from bench.device import DeviceResult, account_downlink
from bench.report import contradictions, summarize
from relay.client.receiver import AudioReceiver


class Stream:
    """An Opus RTP stream as a sender produces it: 20 ms frames, 960 timestamp ticks each."""

    def __init__(self) -> None:
        self.rx = AudioReceiver(decode=False)
        self.seq, self.ts, self.t = 1000, 5000, 100.0

    def frames(self, n: int, *, spacing_s: float = 0.02, ts_step: int = 960, deliver: bool = True) -> None:
        for _ in range(n):
            if deliver:
                self.rx.handle_packet(self.seq & 0xFFFF, 111, b"x", self.t, self.ts & 0xFFFFFFFF)
            self.seq += 1
            self.ts += ts_step
            self.t += spacing_s

    def hole(self, seconds: float) -> None:
        self.t += seconds

    def result(self) -> DeviceResult:
        r = DeviceResult(0, ok=True)
        account_downlink(r, self.rx.stats)
        return r


def test_a_stall_then_a_burst_is_delayed_not_missing():
    s = Stream()
    s.frames(100)
    s.hole(0.5)  # the sender's loop stalled 500 ms...
    s.frames(26, spacing_s=0.0005)  # ...then sent the late frames back to back
    s.frames(100)
    r = s.result()
    assert r.max_gap_ms > 500 and r.holes_over_100ms == 1
    assert r.frames_lost == 0 and r.frames_missing == 0 and r.frames_declared_gap == 0
    assert r.frames_delayed >= 20 and 400 < r.max_delay_ms < 560
    assert r.unexplained_holes == 0


def test_skipped_ticks_are_missing_not_delayed():
    s = Stream()
    s.frames(100)
    s.hole(0.5)  # 25 slots with nothing, and the timestamps do not say so
    s.frames(100)
    r = s.result()
    assert 24 <= r.frames_missing <= 26 and r.frames_delayed == 0 and r.frames_lost == 0
    assert r.unexplained_holes == 0


def test_dtx_is_declared_and_a_lost_packet_is_lost():
    s = Stream()
    s.frames(50)
    s.frames(1, ts_step=960 * 20)  # one frame, then the timestamp jumps: 19 frames not sent, on purpose
    s.hole(0.38)
    s.frames(50)
    s.frames(1, deliver=False)  # lost on the way
    s.frames(50)
    r = s.result()
    assert r.frames_declared_gap == 19 and r.frames_missing == 0 and r.frames_delayed == 0
    assert r.frames_lost == 1 and r.frames_received == 151 and r.frames_expected == 152


def test_duplicates_never_make_received_exceed_expected():
    s = Stream()
    s.frames(10)
    s.rx.handle_packet((s.seq - 1) & 0xFFFF, 111, b"x", s.t, (s.ts - 960) & 0xFFFFFFFF)  # a duplicate
    s.seq += 1  # one lost...
    s.ts += 960
    s.frames(5)
    s.rx.handle_packet((s.seq - 6) & 0xFFFF, 111, b"x", s.t, 0)  # ...arrives late after all
    r = s.result()
    assert r.frames_duplicates == 1 and r.frames_lost == 0
    assert r.frames_received == r.frames_expected == 16


def test_report_flags_contradictions():
    ok = Stream()
    ok.frames(50)
    good = summarize("relay", 1, 20.0, 5.0, [ok.result()], {})
    assert contradictions(good) == []
    bad = ok.result()
    bad.max_gap_ms, bad.unexplained_holes = 525.0, 1
    report = summarize("relay", 1, 20.0, 5.0, [bad], {})
    assert any("hole" in c for c in contradictions(report))
    report["frames"]["received"] = report["frames"]["expected"] + 1
    assert any("received" in c for c in contradictions(report))
