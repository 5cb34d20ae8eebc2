"""``GET /v1/app/voices``, ``POST /v1/app/voices/clone``, ``POST /v1/app/voices/design`` (the operations:
``relay.app_api.voices``)."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from relay.app_api.errors import service_errors
from relay.app_api.services import AppServices
from relay.app_api.voices import make_clone, make_design, reference_key
from relay.store import app_voices as voices_repo
from relay.store.app_voices import VoiceRow
from relay.web import keys
from relay.web.app_api.common import SERVICES, base_url, db_of, device_of, json_object, opt_str, recorded
from relay.web.errors import AppApiError
from relay.web.middleware import json_response

log = logging.getLogger("relay.app_api")

MAX_NAME_CHARS = 200
MAX_DESCRIPTION_CHARS = 2000
MAX_PROMPT_CHARS = 1000
MAX_VOICES_PER_CLIENT = 50
MAX_FORM_FIELD_BYTES = 8 * 1024


def preview_url(request: web.Request, voice: VoiceRow) -> str | None:
    if not voice.reference_key:
        return None
    services: AppServices = request.app[SERVICES]
    url, _ = services.storage.signed_url(voice.reference_key, base_url(request),
                                         request.app[keys.SETTINGS].signed_url_ttl_s)
    return url


def clone_response(request: web.Request, voice: VoiceRow) -> dict[str, Any]:
    return {"voice_id": voice.id, "name": voice.name, "status": voice.status,
            "preview_url": preview_url(request, voice)}


@recorded("voices.list")
async def list_voices(request: web.Request) -> web.Response:
    device = await device_of(request)
    assert device.workspace_id is not None
    voices = await voices_repo.list_visible(db_of(request), device.workspace_id, device.client_id)
    out = []
    for v in voices:
        item: dict[str, Any] = {"voice_id": v.id, "name": v.name, "category": v.category}
        url = preview_url(request, v)
        if url:
            item["preview_url"] = url
        out.append(item)
    return json_response({"voices": out})


async def _check_quota(request: web.Request, workspace_id: str, client_id: str) -> None:
    rows = await db_of(request).fetchall(
        "SELECT id FROM app_voices WHERE workspace_id = ? AND client_id = ?", workspace_id, client_id)
    if len(rows) >= MAX_VOICES_PER_CLIENT:
        raise AppApiError(409, f"This device has {MAX_VOICES_PER_CLIENT} voices already", "VOICE_LIMIT_REACHED")


async def _read_part(part: BodyPartReader, limit: int, too_large_code: str) -> bytes:
    data = bytearray()
    while True:
        chunk = await part.read_chunk(64 * 1024)
        if not chunk:
            return bytes(data)
        data += chunk
        if len(data) > limit:
            raise AppApiError(413, f"{part.name} is larger than {limit} bytes", too_large_code)


async def _read_clone_form(request: web.Request) -> tuple[str, str, bytes | None]:
    if request.content_type != "multipart/form-data":
        raise AppApiError(415, "Content-Type must be multipart/form-data", "UNSUPPORTED_MEDIA_TYPE")
    limit = request.app[keys.SETTINGS].max_upload_bytes
    fields: dict[str, str] = {}
    audio: bytes | None = None
    try:
        reader = await request.multipart()
        seen = 0
        while True:
            part = await reader.next()
            if part is None:
                break
            seen += 1
            if seen > 16:
                raise AppApiError(400, "Too many form fields", "INVALID_FORM")
            if not isinstance(part, BodyPartReader):
                raise AppApiError(400, "Nested multipart is not accepted", "INVALID_FORM")
            if part.name == "audio_file":
                audio = await _read_part(part, limit, "REQUEST_TOO_LARGE")
            elif part.name in ("name", "description"):
                raw = await _read_part(part, MAX_FORM_FIELD_BYTES, "REQUEST_TOO_LARGE")
                fields[part.name] = raw.decode("utf-8", errors="replace").strip()
            else:
                await _read_part(part, limit, "REQUEST_TOO_LARGE")  # drained, bounded, ignored
    except (ValueError, HttpProcessingError) as exc:  # malformed multipart (e.g. a part header's control character)
        detail = getattr(exc, "message", None) or str(exc)
        raise AppApiError(400, f"Malformed multipart body: {detail}"[:300], "INVALID_FORM") from None
    name = fields.get("name", "")
    if not name:
        raise AppApiError(400, "name is required", "MISSING_NAME")
    if len(name) > MAX_NAME_CHARS:
        raise AppApiError(400, f"name must be at most {MAX_NAME_CHARS} characters", "INVALID_FIELD")
    description = fields.get("description", "")[:MAX_DESCRIPTION_CHARS]
    return name, description, audio


@recorded("voices.clone")
async def clone_voice(request: web.Request) -> web.Response:
    device = await device_of(request)
    assert device.workspace_id is not None
    services: AppServices = request.app[SERVICES]
    name, description, data = await _read_clone_form(request)
    if data is None:
        raise AppApiError(400, "audio_file is required", "MISSING_AUDIO_FILE")
    if not data:
        raise AppApiError(400, "audio_file is empty", "EMPTY_AUDIO")
    await _check_quota(request, device.workspace_id, device.client_id)
    language = "en"
    wav, transcript, reg = await make_clone(services, name, data, language, device.client_id)
    voice_id = voices_repo.new_id()
    with service_errors():
        await services.storage.put(reference_key(voice_id), wav)
    voice = await voices_repo.create(
        db_of(request), voice_id=voice_id, workspace_id=device.workspace_id, client_id=device.client_id,
        category="cloned", kind="clone", name=name, description=description, language=language,
        transcript=transcript, params=reg.params, engine_ref=reg.engine_ref, reference_key=reference_key(voice_id),
        status=reg.status)
    log.info("voice cloned", extra={"voice_id": voice.id, "client_id": device.client_id})
    return json_response(clone_response(request, voice), status=201)


@recorded("voices.design")
async def design_voice(request: web.Request) -> web.Response:
    device = await device_of(request)
    assert device.workspace_id is not None
    services: AppServices = request.app[SERVICES]
    doc = await json_object(request)
    prompt = opt_str(doc, "design_prompt", MAX_PROMPT_CHARS, "INVALID_DESIGN_PROMPT")
    if not prompt:
        raise AppApiError(400, "design_prompt is required", "MISSING_DESIGN_PROMPT")
    name = opt_str(doc, "name", MAX_NAME_CHARS) or prompt[:60]
    description = opt_str(doc, "description", MAX_DESCRIPTION_CHARS)
    language = opt_str(doc, "language", 16) or "en"
    await _check_quota(request, device.workspace_id, device.client_id)
    reg = await make_design(services, name, prompt, language, device.client_id)
    with service_errors():
        voice_id = voices_repo.new_id()
        key = reference_key(voice_id) if reg.reference_wav else None
        if key and reg.reference_wav:
            await services.storage.put(key, reg.reference_wav)
    voice = await voices_repo.create(
        db_of(request), voice_id=voice_id, workspace_id=device.workspace_id, client_id=device.client_id,
        category="cloned", kind="design", name=name, description=description, language=language,
        design_prompt=prompt, params=reg.params, engine_ref=reg.engine_ref, reference_key=key, status=reg.status)
    return json_response(clone_response(request, voice), status=201)
