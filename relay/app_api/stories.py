"""A story's narration: synthesised chunk by chunk into a temporary file (``POST /v1/app/stories/{slug}/read``)."""

from __future__ import annotations

import asyncio
import tempfile
from typing import IO, Any

from relay.app_api.services import AppServices
from relay.app_api.tts import voice_spec
from relay.files import StorageError
from relay.store import app_voices as voices_repo
from relay.store.app_voices import VoiceRow
from relay.store.db import Database
from relay.tts.engine import TtsEngine, TtsError


async def narrate(services: AppServices, db: Database, engine: TtsEngine, voice: VoiceRow,
                  text: str) -> tuple[IO[bytes], int, int]:
    """Synthesise chunk by chunk into an anonymous temporary file: memory stays at one chunk (~4 MB)."""
    refs: list[dict[str, Any]] = []
    spec = await engine.prepare(voice_spec(services, voice), refs.append)
    tmp_dir = services.settings.data_path / "tmp"
    await asyncio.to_thread(tmp_dir.mkdir, parents=True, exist_ok=True)
    try:
        spool = await asyncio.to_thread(tempfile.TemporaryFile, dir=tmp_dir)
    except OSError as exc:
        raise StorageError(f"cannot create a temporary file: {exc.strerror}") from None
    total, rate_hz = 0, 0
    try:
        async for piece in engine.stream(spec, text, speed=1.0, stability=0.75, with_timings=False,
                                         on_ref=refs.append):
            if rate_hz and piece.rate_hz != rate_hz:
                raise TtsError(502, "TTS_FAILED", "engine changed sample rate mid-story")
            rate_hz = piece.rate_hz
            await asyncio.to_thread(spool.write, piece.pcm16)
            total += len(piece.pcm16)
    except OSError as exc:
        spool.close()
        raise StorageError(f"cannot write narration: {exc.strerror}") from None
    except BaseException:
        spool.close()
        raise
    if refs:
        await voices_repo.set_engine_ref(db, voice.id, refs[-1])
    if not total:
        spool.close()
        raise TtsError(502, "TTS_FAILED", "the engine produced no audio")
    return spool, total, rate_hz
