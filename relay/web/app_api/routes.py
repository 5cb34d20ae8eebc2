"""The app API area: routes under ``/v1/app`` and its services' lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from relay.app_api.services import build_services, janitor
from relay.web import keys
from relay.web.app_api import files, stories, tts, voices
from relay.web.app_api.common import SERVICES
from relay.web.app_api.openapi import OPENAPI

__all__ = ["OPENAPI", "setup"]


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(services_ctx)
    r = app.router
    r.add_get("/v1/app/voices", voices.list_voices)
    r.add_post("/v1/app/voices/clone", voices.clone_voice)
    r.add_post("/v1/app/voices/design", voices.design_voice)
    r.add_post("/v1/app/text-to-speech/{voice_id}/with-timestamps", tts.text_to_speech)
    r.add_get("/v1/app/stories", stories.list_stories)
    r.add_get("/v1/app/stories/{slug}", stories.get_story)
    r.add_post("/v1/app/stories/{slug}/read", stories.read_story)
    r.add_get("/v1/app/files/{key:.+}", files.get_file)


async def services_ctx(app: web.Application) -> AsyncIterator[None]:
    services = await build_services(app[keys.SETTINGS], app[keys.DB])
    app[SERVICES] = services
    cleaner = asyncio.create_task(janitor(services, app[keys.DB]), name="app-api-janitor")
    try:
        yield
    finally:
        cleaner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await cleaner
        await services.close()
