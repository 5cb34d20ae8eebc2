"""``GET /v1/app/files/{key}``: the files behind signed URLs (local storage), checked by HMAC and expiry."""

from __future__ import annotations

from aiohttp import web

from relay.app_api.services import SERVICES, AppServices
from relay.storage import LocalStorage, StorageError
from relay.storage.base import check_key
from relay.web.errors import AppApiError


async def get_file(request: web.Request) -> web.Response:
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
    try:
        stored = await storage.get(key)
    except StorageError:
        raise AppApiError(500, "Could not read the file", "STORAGE_ERROR") from None
    if stored is None:
        raise AppApiError(404, "File not found", "FILE_NOT_FOUND")
    return web.Response(body=stored.data, content_type=stored.content_type,
                        headers={"Cache-Control": "private, max-age=300"})
