"""``GET /v1/app/files/{key}``: the files behind signed URLs (local storage), checked by HMAC and expiry."""

from __future__ import annotations

import asyncio

from aiohttp import web

from relay.app_api.services import SERVICES, AppServices
from relay.storage import LocalStorage
from relay.storage.base import check_key, content_type_for
from relay.web.errors import AppApiError


async def get_file(request: web.Request) -> web.StreamResponse:
    services: AppServices = request.app[SERVICES]
    storage = services.storage
    if not isinstance(storage, LocalStorage):
        raise AppApiError(404, "Files are not served by relay with this storage", "FILE_NOT_FOUND")
    key = request.match_info["key"]
    try:
        check_key(key)
    except ValueError:
        raise AppApiError(404, "File not found", "FILE_NOT_FOUND") from None
    reason = storage.signer.verify(key, request.query.get("expires", ""), request.query.get("sig", ""))
    if reason == "expired":
        raise AppApiError(403, "This link has expired", "URL_EXPIRED")
    if reason is not None:
        raise AppApiError(403, "Invalid link signature", "INVALID_SIGNATURE")
    path = storage.local_path(key)
    if not await asyncio.to_thread(path.is_file):
        raise AppApiError(404, "File not found", "FILE_NOT_FOUND")
    # sendfile, Range requests (seeking in <audio>), conditional GETs
    return web.FileResponse(path, headers={"Content-Type": content_type_for(key),
                                           "Cache-Control": "private, max-age=300"})
