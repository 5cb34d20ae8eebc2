"""Transcription of clone reference recordings.

- ``OpenAITranscriber``: any OpenAI-compatible ``POST {url}/v1/audio/transcriptions``
  (multipart ``file`` + ``model``; answer ``{"text": ...}``), when configured.
- ``PocketsphinxTranscriber``: the embedded default; pocketsphinx's bundled
  US-English model, run in the TTS worker processes. It is a small
  2010s-era acoustic model: fine for clean English, rough on anything else; the
  transcript only feeds the adapter's voice cloning and is stored for reference.
"""

from __future__ import annotations

import abc

import aiohttp
import orjson

from relay.tts import audio, jobs
from relay.tts.adapter import read_bounded
from relay.tts.pool import WorkerCrashed, WorkerPool

MAX_TRANSCRIPT_CHARS = 4000


class TranscriptionError(RuntimeError):
    """No transcript: the service failed, or no speech was recognised."""


class Transcriber(abc.ABC):
    name = ""

    @abc.abstractmethod
    async def transcribe(self, pcm16: bytes, rate_hz: int, language: str) -> str:
        """Text of mono 16-bit speech at ``rate_hz``; raises ``TranscriptionError`` when there is none."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""


class PocketsphinxTranscriber(Transcriber):
    name = "pocketsphinx"

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool

    async def transcribe(self, pcm16: bytes, rate_hz: int, language: str) -> str:
        try:
            text = await self.pool.run(jobs.transcribe, pcm16, rate_hz)
        except (WorkerCrashed, RuntimeError, ValueError) as exc:
            raise TranscriptionError(f"speech recognition failed: {exc}") from None
        if not text.strip():
            raise TranscriptionError("no speech recognised in the recording")
        return text[:MAX_TRANSCRIPT_CHARS]


class OpenAITranscriber(Transcriber):
    name = "openai"

    def __init__(self, base_url: str, api_key: str, model: str, *, timeout_s: float = 60.0) -> None:
        self.url = base_url.rstrip("/") + "/v1/audio/transcriptions"
        self._api_key = api_key
        self.model = model
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def transcribe(self, pcm16: bytes, rate_hz: int, language: str) -> str:
        if self._session is None:
            headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
            self._session = aiohttp.ClientSession(headers=headers, timeout=self._timeout)
        form = aiohttp.FormData()
        form.add_field("model", self.model)
        form.add_field("language", language.split("-")[0])
        form.add_field("response_format", "json")
        form.add_field("file", audio.encode_wav(pcm16, rate_hz), filename="reference.wav",
                       content_type="audio/wav")
        try:
            async with self._session.post(self.url, data=form) as resp:
                body = await read_bounded(resp, 1 << 20)
                if resp.status != 200 or body is None:
                    raise TranscriptionError(f"transcription service answered HTTP {resp.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TranscriptionError(f"transcription service unreachable: {type(exc).__name__}") from None
        try:
            text = orjson.loads(body).get("text", "")
        except (orjson.JSONDecodeError, AttributeError):
            raise TranscriptionError("transcription service answered with invalid JSON") from None
        if not isinstance(text, str) or not text.strip():
            raise TranscriptionError("no speech recognised in the recording")
        return text.strip()[:MAX_TRANSCRIPT_CHARS]

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
