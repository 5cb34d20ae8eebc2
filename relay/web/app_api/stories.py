"""``GET /v1/app/stories``, ``GET /v1/app/stories/{slug}``, ``POST /v1/app/stories/{slug}/read`` (the narration:
``relay.app_api.stories``)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from relay.app_api.errors import service_errors
from relay.app_api.services import AppServices
from relay.app_api.stories import narrate
from relay.models import Device
from relay.store import app_stories as stories_repo
from relay.store import app_voices as voices_repo
from relay.store.app_stories import StoryRow
from relay.store.app_voices import VoiceRow
from relay.tts.audio import wav_header
from relay.web.app_api.common import SERVICES, db_of, device_of, json_object, recorded, visible_voice
from relay.web.errors import AppApiError
from relay.web.middleware import json_response

SEND_CHUNK_BYTES = 256 * 1024


async def _story(request: web.Request, device: Device) -> StoryRow:
    slug = request.match_info["slug"].strip().lower()
    assert device.workspace_id is not None
    story = await stories_repo.find_by_slug(db_of(request), device.workspace_id, slug) \
        if stories_repo.SLUG_RE.match(slug) else None
    if story is None:
        raise AppApiError(404, "Story not found", "STORY_NOT_FOUND")
    return story


@recorded("stories.list")
async def list_stories(request: web.Request) -> web.Response:
    device = await device_of(request)
    assert device.workspace_id is not None
    stories = await stories_repo.list_slugged(db_of(request), device.workspace_id)
    return json_response([s.card_json() for s in stories])


@recorded("stories.get")
async def get_story(request: web.Request) -> web.Response:
    device = await device_of(request)
    return json_response((await _story(request, device)).full_json())


async def _choose_voice(request: web.Request, device: Device, story: StoryRow, requested: object) -> VoiceRow:
    """Body voice_id, else the story's default voice, else the first voice of the workspace the device may use."""
    if requested is not None:
        if not isinstance(requested, str):
            raise AppApiError(400, "voice_id must be a UUID", "INVALID_VOICE_ID")
        return await visible_voice(request, device, requested)
    if story.default_voice_id:
        voice = await voices_repo.find_in_workspace(db_of(request), story.workspace_id, story.default_voice_id)
        if voice is not None:
            return voice
    assert device.workspace_id is not None
    voices = await voices_repo.list_visible(db_of(request), device.workspace_id, device.client_id)
    if not voices:
        raise AppApiError(400, "No voice is available in this workspace", "VOICE_NOT_AVAILABLE")
    return voices[0]


@recorded("stories.read")
async def read_story(request: web.Request) -> web.Response:
    device = await device_of(request)
    story = await _story(request, device)
    doc = await json_object(request, optional=True)
    voice = await _choose_voice(request, device, story, doc.get("voice_id"))
    if not story.transcript.strip():
        raise AppApiError(400, "This story has no transcript", "EMPTY_TEXT")
    services: AppServices = request.app[SERVICES]
    with service_errors("TTS_FAILED"):
        engine = services.require_engine()
        async with services.admit(device.client_id):
            spool, pcm_bytes, rate_hz = await narrate(services, db_of(request), engine, voice, story.transcript)
    try:
        response = web.StreamResponse(headers={
            "Content-Type": "audio/wav", "Content-Length": str(44 + pcm_bytes),
            "Content-Disposition": f'inline; filename="{story.slug}.wav"'})
        await response.prepare(request)
        await response.write(wav_header(pcm_bytes, rate_hz))
        await asyncio.to_thread(spool.seek, 0)
        while chunk := await asyncio.to_thread(spool.read, SEND_CHUNK_BYTES):
            await response.write(chunk)
        await response.write_eof()
        return response
    finally:
        await asyncio.to_thread(spool.close)
