"""The short-response workload, device side: did each chime come back, with its first frame, and when.

Sans-I/O. The local assistant in ``relay-short`` mode answers every other utterance, after a pause,
with one chime in a single audio delta (``relay.assistant.audio.chime``: 20 ms of an onset tone,
then a body tone). :class:`ShortTracker` is fed

- ``on_turn_end(t)``: the device sent the last voiced frame of an utterance (``BenchAudio.turn_end_frames``);
- ``on_event(event, t)``: data-channel events; a ``response.done`` whose transcript is ``[chime]``
  is a short response the upstream sent (what the device is owed);
- ``on_frame(pcm, t, index)``: each decoded downlink frame, ``index`` its position in the stream
  (packets received so far).

A chime is *heard* when the body tone starts (a rising edge); it was heard *with its first frame*
when the onset tone was detected at most ``ONSET_WINDOW_FRAMES`` frames before it in the stream
(by position, not arrival time: a late burst does not separate them). A relay that drops or mutes a
response's first frame (a quiet gate, an encoder reset) delivers chimes without their onset.
Latency: onset (or body) arrival - the device's latest utterance end before it; it includes the
assistant's end-of-turn detection (``silence_duration_ms``, 500 ms by default) and its pause
(``SHORT_PAUSE_S``), the same for every relay under test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.markers import MarkerDetector
from relay.assistant.audio import CHIME_BODY_HZ, CHIME_ONSET_HZ
from relay.assistant.session import CHIME_TRANSCRIPT

ONSET_WINDOW_FRAMES = 3  # onset edge -> body edge: one frame apart when sent, plus codec/framing slack
DUE_AFTER_S = 1.0  # a chime is owed once its response.done is this old


def is_chime_done(event: dict[str, Any]) -> bool:
    """A ``response.done`` (completed) whose output is the assistant's chime."""
    if event.get("type") != "response.done":
        return False
    resp = event.get("response")
    if not isinstance(resp, dict) or resp.get("status") != "completed":
        return False
    for item in resp.get("output") or []:
        for part in (item.get("content") or []) if isinstance(item, dict) else []:
            if isinstance(part, dict) and part.get("transcript") == CHIME_TRANSCRIPT:
                return True
    return False


MATCH_EARLY_S = 0.1  # the chime's audio may beat its response.done (data channel vs the next tick) by this
MATCH_LATE_S = 1.0  # ...or follow it by up to this


@dataclass
class ShortTracker:
    rate_hz: int = 48000
    turn_ends: list[float] = field(default_factory=list)
    done_at: list[float] = field(default_factory=list)  # response.done of each chime, arrival
    heard_at: list[tuple[float, bool]] = field(default_factory=list)  # (body edge, its onset heard too)
    latencies_ms: list[float] = field(default_factory=list)
    _onset_at: tuple[float, int] | None = None  # (arrival, stream position) of the last onset edge

    def __post_init__(self) -> None:
        # index 0: onset tone, 1: body tone; the same Goertzel edge detector as the latency markers
        self.detector = MarkerDetector(self.rate_hz, freqs_hz=(CHIME_ONSET_HZ, CHIME_BODY_HZ))

    def on_turn_end(self, t_s: float) -> None:
        self.turn_ends.append(t_s)

    def on_event(self, event: dict[str, Any], t_s: float) -> None:
        if is_chime_done(event):
            self.done_at.append(t_s)

    def on_frame(self, pcm: np.ndarray, t_s: float, index: int) -> None:
        edge = self.detector.feed(pcm, t_s)
        if edge == 0:
            self._onset_at = (t_s, index)
        elif edge == 1:
            onset = self._onset_at
            with_onset = onset is not None and 0 < index - onset[1] <= ONSET_WINDOW_FRAMES
            self.heard_at.append((t_s, with_onset))
            self._onset_at = None
            start = onset[0] if with_onset and onset is not None else t_s - 0.02
            prior = [e for e in self.turn_ends[-8:] if e <= start]
            if prior:
                self.latencies_ms.append(round((start - prior[-1]) * 1000.0, 2))

    def summary(self, now_s: float) -> dict[str, int]:
        """Chimes ``owed`` (response.done at least ``DUE_AFTER_S`` old), of those ``heard`` (a body edge
        matched to its response.done), ``lost`` (owed - heard), ``without_first_frame`` (heard, no onset);
        ``unmatched``: chimes heard that match no response.done (should be 0)."""
        owed = [d for d in self.done_at if now_s - d >= DUE_AFTER_S]
        free = sorted(self.done_at)
        heard = without = unmatched = 0
        for t, with_onset in sorted(self.heard_at):
            match = next((d for d in free if t - MATCH_LATE_S <= d <= t + MATCH_EARLY_S), None)
            if match is None:
                unmatched += 1
                continue
            free.remove(match)
            if now_s - match >= DUE_AFTER_S:
                heard += 1
                without += not with_onset
        return {"owed": len(owed), "heard": heard, "lost": len(owed) - heard, "without_first_frame": without,
                "unmatched": unmatched}
