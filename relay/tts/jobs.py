"""Jobs that run inside the TTS worker processes (module-level functions, picklable arguments).

Each worker process lazily creates its own ``Espeak`` instance; a worker runs
one job at a time, which is what libespeak-ng's global state requires.
"""

from __future__ import annotations

import re
from typing import Any

from relay.tts import audio, timing
from relay.tts.espeak_lib import Espeak
from relay.tts.voices import VoiceParams

RECOGNISER_RATE_HZ = 16000
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u200b-\u200f\u2028\u2029\ufeff]")


def _espeak() -> Espeak:
    return Espeak.shared()


def speak(text: str, params: dict[str, Any]) -> tuple[bytes, int, list[tuple[str, int, int]]]:
    """espeak-ng synthesis of one chunk: (pcm16, rate_hz, [(word, start_ms, end_ms)])."""
    text = _CONTROL.sub(" ", text)  # same length: character offsets stay valid
    p = VoiceParams.from_json(params)
    raw = _espeak().synthesise(text, voice=p.espeak_voice(), rate_wpm=p.rate_wpm, pitch=p.pitch,
                               pitch_range=p.pitch_range)
    timings = timing.word_timings(text, [(w.text_position, w.start_sample) for w in raw.words],
                                  raw.pcm16, raw.rate_hz)
    return raw.pcm16, raw.rate_hz, [(t.word, t.start_ms, t.end_ms) for t in timings]


def encode(pcm16: bytes, rate_hz: int, fmt: str) -> bytes:
    return audio.encode_mp3(pcm16, rate_hz) if fmt == "mp3" else audio.encode_wav(pcm16, rate_hz)


def decode_audio(data: bytes, rate_hz: int, max_seconds: float) -> tuple[bytes, float | None]:
    """(pcm16 mono at rate_hz, median F0 or None). Raises ``audio.AudioDecodeError``."""
    pcm = audio.decode_to_pcm16(data, rate_hz, max_seconds=max_seconds)
    return pcm, audio.median_pitch_hz(pcm, rate_hz)


def speech_span(data: bytes, max_seconds: float) -> tuple[bytes, int, int, int]:
    """Decode engine output: (pcm16 at 24 kHz, rate, first_ms, last_ms with speech)."""
    rate = 24000
    pcm = audio.decode_to_pcm16(data, rate, max_seconds=max_seconds)
    first, last = timing.speech_bounds_ms(pcm, rate)
    return pcm, rate, first, last


def estimated_timings(text: str, params: dict[str, Any], dst_span_ms: tuple[int, int]) -> list[tuple[str, int, int]]:
    """Word timings for audio from an engine without word timings (see docs/app_api.md)."""
    pcm, rate, words = speak(text, params)
    src = timing.speech_bounds_ms(pcm, rate)
    scaled = timing.rescale([timing.WordTiming(*w) for w in words], src, dst_span_ms)
    return [(t.word, t.start_ms, t.end_ms) for t in scaled]


_DECODER: Any = None


def transcribe(pcm16: bytes, rate_hz: int) -> str:
    """English speech recognition with pocketsphinx's bundled model (resampled to 16 kHz mono)."""
    global _DECODER
    from pocketsphinx import Decoder

    pcm16_16k = audio.resample_pcm16(pcm16, rate_hz, RECOGNISER_RATE_HZ)

    if _DECODER is None:
        _DECODER = Decoder(loglevel="FATAL")
    d = _DECODER
    d.start_utt()
    d.process_raw(pcm16_16k, full_utt=True)
    d.end_utt()
    hyp = d.hyp()
    return hyp.hypstr.strip() if hyp is not None else ""
