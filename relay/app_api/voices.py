"""Voice operations shared by the app API's voice routes and the admin's workspace voices: clone, design."""

from __future__ import annotations

from relay.app_api.errors import AppError, service_errors
from relay.app_api.services import AppServices
from relay.tts import jobs, timing
from relay.tts.audio import AudioDecodeError, encode_wav
from relay.tts.engine import Registration
from relay.tts.transcribe import TranscriptionError

CLONE_MIN_S = 10.0
CLONE_MAX_S = 30.0
REFERENCE_RATE_HZ = 24000


def reference_key(voice_id: str) -> str:
    return f"voices/{voice_id}/reference.wav"


async def make_clone(services: AppServices, name: str, data: bytes, language: str,
                     client_id: str | None = None) -> tuple[bytes, str, Registration]:
    """Decode (any format), check 10-30 s, transcribe, register with the engine: (reference WAV, transcript, reg)."""
    with service_errors("TRANSCRIPTION_FAILED"):
        engine = services.require_engine()
        async with services.admit(client_id):
            try:
                pcm, f0 = await services.pool.run(jobs.decode_audio, data, REFERENCE_RATE_HZ, CLONE_MAX_S)
            except AudioDecodeError as exc:
                raise AppError(400, f"audio_file is not a decodable audio file ({exc})", "INVALID_AUDIO") from None
            seconds = len(pcm) / 2 / REFERENCE_RATE_HZ
            if not pcm or timing.speech_bounds_ms(pcm, REFERENCE_RATE_HZ) == (0, 0):
                raise AppError(400, "audio_file contains no audible audio", "EMPTY_AUDIO")
            if seconds < CLONE_MIN_S:
                raise AppError(400, f"Audio is {seconds:.1f} s; at least {CLONE_MIN_S:.0f} s is required",
                               "AUDIO_TOO_SHORT")
            if seconds > CLONE_MAX_S:
                raise AppError(400, f"Audio is longer than {CLONE_MAX_S:.0f} s", "AUDIO_TOO_LONG")
            try:
                transcript = await services.transcriber.transcribe(pcm, REFERENCE_RATE_HZ, language)
            except TranscriptionError as exc:
                raise AppError(422, f"Could not transcribe the recording: {exc}", "TRANSCRIPTION_FAILED") from None
            wav = encode_wav(pcm, REFERENCE_RATE_HZ)
            reg = await engine.register_clone(name=name, reference_wav=wav, transcript=transcript,
                                              median_f0_hz=f0, language=language)
    return wav, transcript, reg


async def make_design(services: AppServices, name: str, prompt: str, language: str,
                      client_id: str | None = None) -> Registration:
    with service_errors("DESIGN_FAILED"):
        engine = services.require_engine()
        async with services.admit(client_id):
            return await engine.design(name=name, prompt=prompt, language=language)
