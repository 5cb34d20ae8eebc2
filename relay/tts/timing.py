"""Word timestamps from engine word events, and energy-based speech bounds (sans-I/O).

espeak-ng reports where each word *starts* (``espeakEVENT_WORD`` with a sample
index and a character position) but not where it ends. A word's end is taken
as the next word's start (or the end of the audio) pulled back over trailing
silence, found by frame energy. Numbers and abbreviations that espeak speaks as
several words ("42" -> "forty two") produce several events inside one text
token; they are merged into the one text word.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_WORD_RE = re.compile(r"\S+")
_STRIP = "\"'“”‘’()[]{}<>.,;:!?…-–—*_/\\|"
FRAME_MS = 10
SILENCE_DBFS = -45.0


@dataclass(frozen=True)
class Token:
    start: int  # character offset, inclusive
    end: int    # character offset, exclusive
    word: str


@dataclass(frozen=True)
class WordTiming:
    word: str
    start_ms: int
    end_ms: int

    def as_json(self) -> dict[str, object]:
        return {"word": self.word, "start_ms": self.start_ms, "end_ms": self.end_ms}


def tokenise(text: str) -> list[Token]:
    """Whitespace-separated words with surrounding punctuation stripped; pure punctuation dropped."""
    out = []
    for m in _WORD_RE.finditer(text):
        raw = m.group(0)
        word = raw.strip(_STRIP)
        if not word:
            continue
        lead = len(raw) - len(raw.lstrip(_STRIP))
        start = m.start() + lead
        out.append(Token(start, start + len(word), word))
    return out


def frame_active(pcm16: bytes, rate_hz: int, *, frame_ms: int = FRAME_MS,
                 threshold_dbfs: float = SILENCE_DBFS) -> np.ndarray:
    """Boolean per ``frame_ms`` frame: is the RMS level above ``threshold_dbfs``?"""
    samples = np.frombuffer(pcm16, dtype="<i2").astype(np.float32) / 32768.0
    n = max(1, rate_hz * frame_ms // 1000)
    frames = len(samples) // n
    if frames == 0:
        return np.zeros(0, dtype=bool)
    blocks = samples[: frames * n].reshape(frames, n)
    rms = np.sqrt(np.mean(blocks * blocks, axis=1) + 1e-12)
    return 20.0 * np.log10(rms) > threshold_dbfs


def speech_bounds_ms(pcm16: bytes, rate_hz: int) -> tuple[int, int]:
    """(first, last) millisecond with speech energy; (0, 0) for silence."""
    active = frame_active(pcm16, rate_hz)
    idx = np.flatnonzero(active)
    if len(idx) == 0:
        return 0, 0
    return int(idx[0]) * FRAME_MS, int(idx[-1] + 1) * FRAME_MS


def word_timings(text: str, events: Sequence[tuple[int, int]], pcm16: bytes, rate_hz: int) -> list[WordTiming]:
    """Timings for every word of ``text``.

    ``events`` are ``(char_offset, start_sample)`` pairs in speaking order. Each
    text token takes the earliest event whose character offset falls inside it.
    espeak-ng speaks some unstressed words together with a neighbour and marks
    only the group ("on the" -> one event at "on"); the unmarked words share
    the group's span in proportion to their length. Every span is then pulled
    in over leading/trailing silence.
    """
    tokens = tokenise(text)
    if not tokens:
        return []
    total_samples = len(pcm16) // 2
    marks: list[tuple[int, int]] = []  # (token index, start sample)
    ti = 0
    for pos, sample in events:
        while ti < len(tokens) and tokens[ti].end <= pos:
            ti += 1
        if ti >= len(tokens):
            break
        if marks and marks[-1][0] == ti:
            continue
        marks.append((ti, min(max(0, sample), total_samples)))
    if not marks:
        marks = [(0, 0)]
    if marks[0][0] != 0:
        marks.insert(0, (0, 0))
    spans: list[tuple[Token, int, int]] = []
    for m, (first, start) in enumerate(marks):
        last, end = (marks[m + 1][0], marks[m + 1][1]) if m + 1 < len(marks) else (len(tokens), total_samples)
        group = tokens[first:last]
        weights = [len(t.word) + 1 for t in group]
        total_w = sum(weights)
        acc = 0
        for tok, w in zip(group, weights, strict=True):
            a = start + (end - start) * acc // total_w
            acc += w
            spans.append((tok, a, start + (end - start) * acc // total_w))
    active = frame_active(pcm16, rate_hz)
    out: list[WordTiming] = []
    for tok, start, end in spans:
        start_ms = start * 1000 // rate_hz
        end_ms = max(start_ms, end * 1000 // rate_hz)
        f_lo, f_hi = start_ms // FRAME_MS, min(len(active), -(-end_ms // FRAME_MS))
        # pull the end back over trailing silence (pauses at commas and full stops) ...
        hi = f_hi
        while hi > f_lo + 1 and not active[hi - 1]:
            hi -= 1
        if hi < f_hi:
            end_ms = min(end_ms, hi * FRAME_MS)
        # ... and push the start forward over leading silence
        lo = f_lo
        while lo < hi - 1 and not active[lo]:
            lo += 1
        if lo > f_lo:
            start_ms = max(start_ms, min(lo * FRAME_MS, end_ms))
        out.append(WordTiming(tok.word, int(start_ms), int(max(end_ms, start_ms + 1))))
    return out


def offset(timings: Sequence[WordTiming], by_ms: int) -> list[WordTiming]:
    return [WordTiming(t.word, t.start_ms + by_ms, t.end_ms + by_ms) for t in timings]


def rescale(timings: Sequence[WordTiming], src: tuple[int, int], dst: tuple[int, int]) -> list[WordTiming]:
    """Map timings linearly from the speech span ``src`` (ms) onto the speech span ``dst`` (ms).

    Used for engines without word timings: an espeak-ng pass gives the relative
    rhythm of the words, stretched onto where the real audio has speech.
    """
    s0, s1 = src
    d0, d1 = dst
    ratio = (d1 - d0) / (s1 - s0) if s1 > s0 else 1.0
    out = []
    for t in timings:
        a = int(round(d0 + (t.start_ms - s0) * ratio))
        b = int(round(d0 + (t.end_ms - s0) * ratio))
        out.append(WordTiming(t.word, max(0, a), max(a + 1, b)))
    return out


def split_text(text: str, max_chars: int) -> list[tuple[int, str]]:
    """Split ``text`` into ``(char_offset, chunk)`` pieces of at most ``max_chars`` at sentence/word breaks."""
    chunks: list[tuple[int, str]] = []
    i, n = 0, len(text)
    while i < n:
        if n - i <= max_chars:
            chunks.append((i, text[i:]))
            break
        window = text[i: i + max_chars]
        cut = -1
        for m in re.finditer(r"[.!?…;:]['\"”’)]*\s+|\n\s*", window):
            cut = m.end()
        if cut <= max_chars // 4:
            sp = window.rfind(" ")
            cut = sp + 1 if sp > 0 else max_chars
        chunks.append((i, text[i: i + cut]))
        i += cut
    return [(off, c) for off, c in chunks if c.strip()]
