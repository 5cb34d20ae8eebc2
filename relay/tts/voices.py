"""Voice parameters for the espeak-ng engine, and how designs and clones map onto them (sans-I/O).

espeak-ng is a formant synthesiser: it cannot imitate a person. What it can
vary is its language voice, a variant (timbre/gender: ``m1..m7``, ``f1..f5``,
``klatt``, ``whisper``, ...), base pitch (0-99), pitch range (0-99) and speed
(words per minute). A *designed* voice maps its prompt onto those
deterministically (keywords first, a stable hash for the rest); a *cloned* voice
takes its pitch from the reference recording's median F0 and its gender-ish
variant from that pitch.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import asdict, dataclass

BASE_RATE_WPM = 165
LANGUAGES = {"en": "en", "en-us": "en-us", "en-gb": "en", "de": "de", "fr": "fr", "es": "es", "it": "it",
             "nl": "nl", "pt": "pt", "pl": "pl", "sv": "sv", "ru": "ru", "ja": "ja", "zh": "cmn"}
_FEMALE = ("f1", "f2", "f3", "f4", "f5")
_MALE = ("m1", "m2", "m3", "m4", "m5", "m6", "m7")


@dataclass(frozen=True)
class VoiceParams:
    language: str = "en"
    variant: str = "m3"
    pitch: int = 50        # espeak 0-99
    pitch_range: int = 50  # espeak 0-99
    rate_wpm: int = BASE_RATE_WPM

    def espeak_voice(self) -> str:
        return f"{self.language}+{self.variant}" if self.variant else self.language

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, object] | None) -> VoiceParams:
        if not doc:
            return cls()
        allowed = {k: doc[k] for k in ("language", "variant", "pitch", "pitch_range", "rate_wpm") if k in doc}
        return cls(**allowed)  # type: ignore[arg-type]

    def for_request(self, speed: float, stability: float) -> VoiceParams:
        """Apply the request's ``speed`` (x rate) and ``stability`` (0..1; lower = livelier intonation)."""
        rate = int(round(self.rate_wpm * speed))
        spread = int(round(self.pitch_range + (0.75 - stability) * 60))
        return VoiceParams(self.language, self.variant, self.pitch, _clamp(spread, 0, 99), _clamp(rate, 80, 450))


def _clamp(v: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, v))


def language_voice(language: str | None) -> str:
    key = (language or "en").strip().lower()
    return LANGUAGES.get(key) or LANGUAGES.get(key.split("-")[0], "en")


_KEYWORDS: list[tuple[tuple[str, ...], dict[str, int | str]]] = [
    (("woman", "female", "girl", "lady", "mother", "grandma", "her", "she"), {"gender": "f"}),
    (("man", "male", "boy", "gentleman", "father", "grandpa", "his", "he"), {"gender": "m"}),
    (("deep", "low", "bass", "baritone", "gravelly"), {"pitch": -22}),
    (("high", "bright", "squeaky", "child", "kid", "young"), {"pitch": +18}),
    (("old", "elderly", "aged"), {"pitch": -6, "rate": -20}),
    (("calm", "soothing", "bedtime", "gentle", "soft", "relaxed", "slow"), {"rate": -25, "range": -15}),
    (("warm", "friendly", "kind"), {"range": +5}),
    (("excited", "energetic", "cheerful", "lively", "enthusiastic", "playful"), {"rate": +25, "range": +25}),
    (("fast", "quick", "brisk"), {"rate": +40}),
    (("monotone", "flat", "robotic", "serious"), {"range": -30}),
    (("expressive", "dramatic", "animated"), {"range": +30}),
]


def design_params(prompt: str, language: str | None = None) -> VoiceParams:
    """Deterministic espeak parameters for a text description: same prompt, same voice."""
    words = set(re.findall(r"[a-z]+", prompt.lower()))
    digest = hashlib.sha256(prompt.strip().lower().encode()).digest()
    gender = None
    pitch, rate, spread = 0, 0, 0
    for keys, effect in _KEYWORDS:
        if words.intersection(keys):
            if "gender" in effect and gender is None:
                gender = effect["gender"]
            pitch += int(effect.get("pitch", 0))
            rate += int(effect.get("rate", 0))
            spread += int(effect.get("range", 0))
    if gender is None:
        gender = "f" if digest[0] % 2 else "m"
    variants = _FEMALE if gender == "f" else _MALE
    variant = variants[digest[1] % len(variants)]
    base_pitch = 62 if gender == "f" else 40
    return VoiceParams(
        language=language_voice(language),
        variant=variant,
        pitch=_clamp(base_pitch + pitch + (digest[2] % 9) - 4, 0, 99),
        pitch_range=_clamp(50 + spread + (digest[3] % 11) - 5, 0, 99),
        rate_wpm=_clamp(BASE_RATE_WPM + rate + (digest[4] % 11) - 5, 80, 450),
    )


def clone_params(median_f0_hz: float | None, language: str | None = None) -> VoiceParams:
    """espeak parameters approximating a reference speaker: variant and pitch from the median F0.

    espeak's pitch 50 is about 118 Hz for male variants; each octave is roughly
    40 pitch units. Female variants sit about an octave up, so above 165 Hz a
    female variant is chosen and the pitch is mapped relative to ~200 Hz.
    """
    lang = language_voice(language)
    if median_f0_hz is None or median_f0_hz <= 0:
        return VoiceParams(language=lang)
    female = median_f0_hz >= 165.0
    ref_hz = 200.0 if female else 118.0
    pitch = _clamp(int(round(50 + 40 * math.log2(median_f0_hz / ref_hz))), 0, 99)
    return VoiceParams(language=lang, variant="f2" if female else "m3", pitch=pitch)
