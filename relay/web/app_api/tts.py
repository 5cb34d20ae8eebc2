"""``POST /v1/app/text-to-speech/{voice_id}/with-timestamps`` (the synthesis itself: ``relay.app_api.tts``)."""

from __future__ import annotations

import time
import uuid

from aiohttp import web

from relay.app_api.errors import service_errors
from relay.app_api.services import TTS_OUTPUT_PREFIX, AppServices
from relay.app_api.tts import synthesise
from relay.web import keys
from relay.web.app_api.common import (
    SERVICES,
    base_url,
    check_voice_id,
    db_of,
    device_of,
    json_object,
    number,
    recorded,
    visible_voice,
)
from relay.web.errors import AppApiError
from relay.web.middleware import json_response

MAX_TEXT_CHARS = 15_000


@recorded("tts")
async def text_to_speech(request: web.Request) -> web.Response:
    device = await device_of(request)
    services: AppServices = request.app[SERVICES]
    voice_id = request.match_info["voice_id"]
    check_voice_id(voice_id)
    doc = await json_object(request)
    text = doc.get("text")
    if text is not None and not isinstance(text, str):
        raise AppApiError(400, "text must be a string", "EMPTY_TEXT")
    if text is not None and len(text) > MAX_TEXT_CHARS:
        raise AppApiError(400, f"text is longer than {MAX_TEXT_CHARS} characters", "TEXT_TOO_LONG")
    if not text or not text.strip():
        raise AppApiError(400, "text is empty", "EMPTY_TEXT")
    output_format = doc.get("output_format")
    if output_format is not None and (not isinstance(output_format, str) or len(output_format) > 64):
        raise AppApiError(400, "output_format must be a string of at most 64 characters", "INVALID_OUTPUT_FORMAT")
    output_format = output_format or "mp3_44100_128"
    fmt = "mp3" if "mp3" in output_format.lower() else "wav"
    speed = number(doc, "speed", 1.0, 0.25, 4.0, "INVALID_SPEED")
    stability = number(doc, "stability", 0.75, 0.0, 1.0, "INVALID_STABILITY")
    voice = await visible_voice(request, device, voice_id)
    settings = request.app[keys.SETTINGS]
    with service_errors("TTS_FAILED"):
        speech = await synthesise(services, db_of(request), voice, text, speed=speed, stability=stability, fmt=fmt,
                                  client_id=device.client_id)
        key = f"{TTS_OUTPUT_PREFIX}/{time.strftime('%Y%m%d', time.gmtime())}/{uuid.uuid4().hex}.{fmt}"
        await services.storage.put(key, speech.audio)
        url, expires_in = services.storage.signed_url(key, base_url(request), settings.signed_url_ttl_s)
    return json_response({
        "audio_url": url,
        "expires_in": expires_in,
        "duration_seconds": round(speech.duration_s, 3),
        "timestamps": [t.as_json() for t in speech.timings],
        "full_text": text,
    })
