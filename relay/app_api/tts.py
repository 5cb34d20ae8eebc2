"""Text to speech with the configured engine, shared by ``POST /v1/app/text-to-speech/...`` and stories."""

from __future__ import annotations

from relay.app_api.services import AppServices
from relay.files import StorageError
from relay.store import app_voices as voices_repo
from relay.store.app_voices import VoiceRow
from relay.store.db import Database
from relay.tts.engine import Speech, VoiceSpec


def voice_spec(services: AppServices, voice: VoiceRow) -> VoiceSpec:
    async def load_reference() -> bytes:
        stored = await services.storage.get(voice.reference_key) if voice.reference_key else None
        if stored is None:
            raise StorageError(f"reference audio of voice {voice.id} is missing")
        return stored.data

    return VoiceSpec(voice_id=voice.id, kind=voice.kind, params=voice.params, engine_ref=voice.engine_ref,
                     language=voice.language, transcript=voice.transcript, design_prompt=voice.design_prompt,
                     load_reference=load_reference if voice.reference_key else None)


async def synthesise(services: AppServices, db: Database, voice: VoiceRow, text: str, *, speed: float,
                     stability: float, fmt: str, client_id: str | None) -> Speech:
    """Synthesise with the configured engine (inside a pool admission); persists a new adapter registration."""
    engine = services.require_engine()
    async with services.admit(client_id):
        speech, new_ref = await engine.synthesise(voice_spec(services, voice), text, speed=speed,
                                                  stability=stability, fmt=fmt)
    if new_ref is not None:
        await voices_repo.set_engine_ref(db, voice.id, new_ref)
    return speech
