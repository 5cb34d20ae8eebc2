"""``GET /v1/app/files/{key}``: the files behind signed URLs (local or database storage), checked by HMAC and expiry.

Both honour single ``Range`` requests (206), so ``<audio>`` can seek: local files through
aiohttp's ``FileResponse`` (sendfile), database files by slicing the bytes read.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from relay.app_api.services import AppServices
from relay.files import DatabaseStorage, LocalStorage, StorageError
from relay.files.base import check_key, content_type_for
from relay.web.app_api.common import SERVICES
from relay.web.errors import AppApiError

log = logging.getLogger("relay.app_api")


async def get_file(request: web.Request) -> web.StreamResponse:
    services: AppServices = request.app[SERVICES]
    storage = services.storage
    if not isinstance(storage, (LocalStorage, DatabaseStorage)):
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
    headers = {"Content-Type": content_type_for(key), "Cache-Control": "private, max-age=300"}
    if isinstance(storage, DatabaseStorage):
        try:
            stored = await storage.get(key)
        except StorageError as exc:
            log.error("storage error: %s", exc)
            raise AppApiError(503, "File storage is unavailable; retry shortly", "STORAGE_ERROR",
                              headers={"Retry-After": "2"}) from None
        if stored is None:
            raise AppApiError(404, "File not found", "FILE_NOT_FOUND")
        return _whole_or_range(request, stored.data, headers)
    path = storage.local_path(key)
    if not await asyncio.to_thread(path.is_file):
        raise AppApiError(404, "File not found", "FILE_NOT_FOUND")
    # sendfile, Range requests (seeking in <audio>), conditional GETs
    return web.FileResponse(path, headers=headers)


def _whole_or_range(request: web.Request, data: bytes, headers: dict[str, str]) -> web.Response:
    """The file, or the one byte range ``Range`` asks for (206; 416 when it lies outside the file)."""
    headers = {**headers, "Accept-Ranges": "bytes"}
    if "Range" not in request.headers:
        return web.Response(body=data, headers=headers)
    size = len(data)
    try:
        rng = request.http_range
    except ValueError:  # malformed or several ranges: the whole file, as RFC 9110 allows
        return web.Response(body=data, headers=headers)
    start, stop = rng.start, rng.stop
    if start is None:
        start = 0
    if start < 0:  # "bytes=-N": the last N bytes
        start = max(size + start, 0)
    stop = size if stop is None else min(stop, size)
    if start >= size or start >= stop:
        return web.Response(status=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    return web.Response(status=206, body=data[start:stop],
                        headers={**headers, "Content-Range": f"bytes {start}-{stop - 1}/{size}"})
