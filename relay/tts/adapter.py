"""Qwen3-TTS through an adapter service: the HTTP client side of the protocol in docs/app_api.md.

The adapter owns the model (GPU); relay sends it reference audio + transcript
(clone -> ``profile_id``), a prompt (design -> ``voice_clone_prompt`` + sample
audio), and text (-> WAV). Qwen3-TTS reports no word timings, so relay
estimates them: an espeak-ng pass over the same text gives each word's relative
position, stretched linearly onto the span of the adapter's audio that has
speech energy (``relay.tts.jobs.estimated_timings``). That is an estimate, not
forced alignment, and the docs say so.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from relay.tts import jobs, timing
from relay.tts.audio import AudioDecodeError
from relay.tts.engine import Piece, RefCallback, Registration, TtsEngine, TtsError, VoiceSpec
from relay.tts.espeak import CHUNK_CHARS
from relay.tts.espeak_lib import EspeakError
from relay.tts.pool import WorkerCrashed, WorkerPool
from relay.tts.voices import VoiceParams, clone_params, design_params

log = logging.getLogger("relay.tts")
MAX_ADAPTER_AUDIO_S = 20 * 60
MAX_ADAPTER_RESPONSE_BYTES = 200 * 1024 * 1024


async def read_bounded(resp: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The whole body, or None when it exceeds ``limit`` bytes (reading stops there)."""
    body = bytearray()
    async for chunk in resp.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


class _AdapterFailed(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class AdapterEngine(TtsEngine):
    name = "qwen3"

    def __init__(self, pool: WorkerPool, base_url: str, api_key: str, *, timeout_s: float = 120.0) -> None:
        self.pool = pool
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
            self._session = aiohttp.ClientSession(headers=headers, timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(self, method: str, path: str, **kw: Any) -> tuple[bytes, str]:
        try:
            async with self._http().request(method, self.base_url + path, **kw) as resp:
                body = await read_bounded(resp, MAX_ADAPTER_RESPONSE_BYTES)
                if body is None:
                    raise _AdapterFailed(502, "too_large", "adapter response too large")
                if resp.status >= 400:
                    code, message = "http_error", f"HTTP {resp.status}"
                    try:
                        err = (await resp.json(content_type=None)).get("error") or {}
                        code, message = str(err.get("code", code)), str(err.get("message", message))[:200]
                    except (ValueError, AttributeError, aiohttp.ContentTypeError):
                        pass
                    raise _AdapterFailed(resp.status, code, message)
                return body, resp.headers.get("Content-Type", "")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _AdapterFailed(0, "unreachable", f"adapter unreachable: {type(exc).__name__}") from None

    async def _json(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        import orjson

        body, _ = await self._call(method, path, **kw)
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise _AdapterFailed(502, "bad_response", "adapter answered with invalid JSON") from None
        if not isinstance(doc, dict):
            raise _AdapterFailed(502, "bad_response", "adapter answered with a non-object")
        return doc

    # --- registration --------------------------------------------------------
    async def _clone(self, name: str, reference_wav: bytes, transcript: str, language: str) -> dict[str, Any]:
        form = aiohttp.FormData()
        form.add_field("name", name)
        form.add_field("language", language)
        form.add_field("transcript", transcript)
        form.add_field("audio", reference_wav, filename="reference.wav", content_type="audio/wav")
        doc = await self._json("POST", "/v1/voices/clone", data=form)
        pid = doc.get("profile_id")
        if not isinstance(pid, str) or not pid:
            raise _AdapterFailed(502, "bad_response", "adapter clone response has no profile_id")
        return {"profile_id": pid}

    async def register_clone(self, *, name: str, reference_wav: bytes, transcript: str,
                             median_f0_hz: float | None, language: str) -> Registration:
        try:
            ref = await self._clone(name, reference_wav, transcript, language)
        except _AdapterFailed as exc:
            raise TtsError(502, "ADAPTER_SYNC_FAILED", f"TTS adapter rejected the clone: {exc}") from None
        return Registration(params=clone_params(median_f0_hz, language).to_json(), engine_ref=ref)

    async def _design(self, name: str, prompt: str, language: str) -> tuple[dict[str, Any], bytes]:
        doc = await self._json("POST", "/v1/voices/design", json={"name": name, "prompt": prompt,
                                                                   "language": language})
        vcp = doc.get("voice_clone_prompt")
        try:
            wav = base64.b64decode(doc.get("audio_b64") or "", validate=True)
        except ValueError:
            raise _AdapterFailed(502, "bad_response", "adapter design audio is not base64") from None
        if not isinstance(vcp, str) or not vcp or not wav:
            raise _AdapterFailed(502, "bad_response", "adapter design response lacks voice_clone_prompt/audio")
        return {"voice_clone_prompt": vcp}, wav

    async def design(self, *, name: str, prompt: str, language: str) -> Registration:
        try:
            ref, wav = await self._design(name, prompt, language)
        except _AdapterFailed as exc:
            raise TtsError(502, "DESIGN_FAILED", f"TTS adapter could not design the voice: {exc}") from None
        return Registration(params=design_params(prompt, language).to_json(), engine_ref=ref, reference_wav=wav)

    async def _sync(self, voice: VoiceSpec) -> dict[str, Any]:
        """(Re-)register a voice the adapter does not know; raises ADAPTER_SYNC_FAILED."""
        try:
            if voice.kind == "design" and voice.design_prompt:
                ref, _wav = await self._design(voice.voice_id, voice.design_prompt, voice.language)
                return ref
            if voice.load_reference is None:
                raise _AdapterFailed(0, "no_reference", "the voice has no reference audio to sync")
            wav = await voice.load_reference()
            return await self._clone(voice.voice_id, wav, voice.transcript, voice.language)
        except _AdapterFailed as exc:
            raise TtsError(502, "ADAPTER_SYNC_FAILED", f"could not sync the voice to the TTS adapter: {exc}") from None

    # --- synthesis ----------------------------------------------------------
    async def _tts(self, ref: dict[str, Any], text: str, language: str, speed: float, stability: float) -> bytes:
        body = {"text": text, "language": language, "speed": speed, "stability": stability, **ref}
        audio, ctype = await self._call("POST", "/v1/tts", json=body)
        if not audio:
            raise _AdapterFailed(502, "bad_response", "adapter returned no audio")
        return audio

    async def prepare(self, voice: VoiceSpec, on_ref: RefCallback) -> VoiceSpec:
        if voice.engine_ref.get("profile_id") or voice.engine_ref.get("voice_clone_prompt"):
            return voice
        ref = await self._sync(voice)
        on_ref(ref)
        return dataclasses.replace(voice, engine_ref=ref)

    async def stream(self, voice: VoiceSpec, text: str, *, speed: float, stability: float, with_timings: bool,
                     on_ref: RefCallback) -> AsyncIterator[Piece]:
        ref = voice.engine_ref
        resynced = False
        params = VoiceParams.from_json(voice.params).for_request(speed, 0.75).to_json()
        for _off, chunk in timing.split_text(text, CHUNK_CHARS):
            try:
                try:
                    audio = await self._tts(ref, chunk, voice.language, speed, stability)
                except _AdapterFailed as exc:
                    if exc.status != 404 or resynced:
                        raise
                    log.info("adapter does not know voice %s; re-syncing", voice.voice_id)
                    ref, resynced = await self._sync(voice), True
                    on_ref(ref)
                    audio = await self._tts(ref, chunk, voice.language, speed, stability)
                pcm, rate_hz, first, last = await self.pool.run(jobs.speech_span, audio, MAX_ADAPTER_AUDIO_S)
                words = (await self.pool.run(jobs.estimated_timings, chunk, params, (first, last))
                         if with_timings else [])
            except _AdapterFailed as exc:
                raise TtsError(502, "TTS_FAILED", f"TTS adapter synthesis failed: {exc}") from None
            except AudioDecodeError as exc:
                raise TtsError(502, "TTS_FAILED", f"TTS adapter returned undecodable audio: {exc}") from None
            except (EspeakError, WorkerCrashed) as exc:
                raise TtsError(502, "TTS_FAILED", f"timing pass failed: {exc}") from None
            yield Piece(pcm, rate_hz, [timing.WordTiming(*w) for w in words])
