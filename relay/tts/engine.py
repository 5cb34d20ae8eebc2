"""The TTS engine interface: synthesise with word timings, register a clone, design a voice.

Two implementations: ``EspeakEngine`` (embedded default, ``relay.tts.espeak``)
and ``AdapterEngine`` (HTTP client of a Qwen3-TTS adapter, ``relay.tts.adapter``).
Engines raise ``TtsError`` with the app API's error code; the web layer renders it.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from relay.tts.timing import WordTiming

OUTPUT_FORMATS = ("wav", "mp3", "pcm")


class TtsError(RuntimeError):
    """A failure with the app API's status and code (TTS_FAILED, DESIGN_FAILED, ADAPTER_SYNC_FAILED, ...)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class VoiceSpec:
    """What an engine needs of a stored voice profile."""

    voice_id: str
    kind: str                     # clone | design | preset
    params: dict[str, Any]        # espeak parameters (VoiceParams JSON); every voice has them
    engine_ref: dict[str, Any] = field(default_factory=dict)  # {"profile_id"} or {"voice_clone_prompt"} (adapter)
    language: str = "en"
    transcript: str = ""
    design_prompt: str = ""
    # loads the stored reference recording (WAV) when an engine must (re-)register the voice
    load_reference: Callable[[], Awaitable[bytes]] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Speech:
    audio: bytes                  # encoded as requested ("pcm": raw 16-bit mono)
    fmt: str                      # wav | mp3 | pcm
    rate_hz: int
    duration_s: float
    timings: list[WordTiming]


@dataclass(frozen=True)
class Registration:
    """The result of registering a voice with an engine."""

    params: dict[str, Any]
    engine_ref: dict[str, Any] = field(default_factory=dict)
    reference_wav: bytes | None = None   # designs: the materialised reference audio
    status: str = "ready"


class TtsEngine(abc.ABC):
    name: str = ""

    @abc.abstractmethod
    async def synthesise(self, voice: VoiceSpec, text: str, *, speed: float, stability: float,
                         fmt: str) -> tuple[Speech, dict[str, Any] | None]:
        """Speak ``text``; returns the speech and, when the engine (re-)registered the voice, its new engine_ref."""

    @abc.abstractmethod
    async def register_clone(self, *, name: str, reference_wav: bytes, transcript: str,
                             median_f0_hz: float | None, language: str) -> Registration:
        """Register a cloned voice from its reference recording (WAV) and transcript."""

    @abc.abstractmethod
    async def design(self, *, name: str, prompt: str, language: str) -> Registration:
        """Create a voice from a description; materialises reference audio."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release engine resources."""
