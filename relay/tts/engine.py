"""The TTS engine interface: synthesise with word timings, register a clone, design a voice.

Two implementations: ``EspeakEngine`` (embedded default, ``relay.tts.espeak``)
and ``AdapterEngine`` (HTTP client of a Qwen3-TTS adapter, ``relay.tts.adapter``).
Engines raise ``TtsError`` with the app API's error code; the web layer renders it.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from relay.tts import jobs
from relay.tts.pool import WorkerCrashed, WorkerPool
from relay.tts.timing import WordTiming, offset

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


@dataclass(frozen=True)
class Piece:
    """One synthesised chunk: mono 16-bit PCM and word timings relative to the chunk's start."""

    pcm16: bytes
    rate_hz: int
    timings: list[WordTiming]


RefCallback = Callable[[dict[str, Any]], None]


class TtsEngine(abc.ABC):
    """An engine speaks text chunk by chunk (``stream``); ``synthesise`` assembles and encodes.

    Every CPU-heavy step runs in ``self.pool`` (worker processes); callers hold a
    ``pool.admit()`` slot around ``synthesise``/``stream``.
    """

    name: str = ""
    pool: WorkerPool

    async def prepare(self, voice: VoiceSpec, on_ref: RefCallback) -> VoiceSpec:
        """Make sure the engine knows the voice (registering it if needed; ``on_ref`` gets a new engine_ref)."""
        return voice

    @abc.abstractmethod
    def stream(self, voice: VoiceSpec, text: str, *, speed: float, stability: float, with_timings: bool,
               on_ref: RefCallback) -> AsyncIterator[Piece]:
        """Speak ``text`` in sentence-aligned chunks, yielding each as soon as it is ready."""

    async def synthesise(self, voice: VoiceSpec, text: str, *, speed: float, stability: float,
                         fmt: str) -> tuple[Speech, dict[str, Any] | None]:
        """Speak ``text`` whole, encoded as ``fmt``; returns the speech and the voice's new engine_ref, if any."""
        refs: list[dict[str, Any]] = []
        voice = await self.prepare(voice, refs.append)
        parts: list[bytes] = []
        timings: list[WordTiming] = []
        rate_hz, elapsed = 0, 0
        async for piece in self.stream(voice, text, speed=speed, stability=stability, with_timings=True,
                                       on_ref=refs.append):
            rate_hz = piece.rate_hz
            timings += offset(piece.timings, elapsed * 1000 // rate_hz)
            parts.append(piece.pcm16)
            elapsed += len(piece.pcm16) // 2
        pcm16 = b"".join(parts)
        if not pcm16:
            raise TtsError(502, "TTS_FAILED", f"{self.name} produced no audio")
        try:
            data = pcm16 if fmt == "pcm" else await self.pool.run(jobs.encode, pcm16, rate_hz, fmt)
        except WorkerCrashed as exc:
            raise TtsError(502, "TTS_FAILED", f"encoding failed: {exc}") from None
        return Speech(data, fmt, rate_hz, elapsed / rate_hz, timings), (refs[-1] if refs else None)

    @abc.abstractmethod
    async def register_clone(self, *, name: str, reference_wav: bytes, transcript: str,
                             median_f0_hz: float | None, language: str) -> Registration:
        """Register a cloned voice from its reference recording (WAV) and transcript."""

    @abc.abstractmethod
    async def design(self, *, name: str, prompt: str, language: str) -> Registration:
        """Create a voice from a description; materialises reference audio."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release engine resources."""
