"""Admin HTTP routes of the app API (stories, workspace voices), mounted by ``relay.web.admin`` under ``/admin/v1/``
(same bearer token); the operations are ``relay.app_api.admin``.

    GET    /admin/v1/stories?workspace_id=...     {"data": [...]}
    POST   /admin/v1/stories                      {workspace_id, name, slug?, transcript?, excerpt?, age_group?,
                                                   illustration_url?, illustration_alt?, sort_order?, default_voice_id?}
    GET    /admin/v1/stories/{id}
    PATCH  /admin/v1/stories/{id}                 any of the fields above (not workspace_id)
    DELETE /admin/v1/stories/{id}
    GET    /admin/v1/voices?workspace_id=...      {"data": [...]}
    POST   /admin/v1/voices                       JSON {workspace_id, name, design_prompt, language?, description?}
                                                  or multipart (workspace_id, name, description?, audio_file)
    PATCH  /admin/v1/voices/{id}                  {name?, description?}
    DELETE /admin/v1/voices/{id}
    GET    /admin/v1/app-usage?workspace_id=...   {"data": [{app_source, endpoint, requests}]} (X-App-Source analytics)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from relay.app_api import admin
from relay.store import app_requests
from relay.store.app_stories import FIELDS as STORY_FIELDS
from relay.web import keys
from relay.web.app_api.common import SERVICES
from relay.web.errors import ApiError
from relay.web.middleware import json_response, read_json

Handler = Callable[[web.Request], Awaitable[web.Response]]


def _mapped(handler: Handler) -> Handler:
    async def inner(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except admin.AdminError as exc:
            raise ApiError(exc.status, exc.message, exc.code) from None

    return inner


async def _object(request: web.Request) -> dict[str, Any]:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ApiError(400, "Request body must be a JSON object", "invalid_request")
    return body


def _story_fields(body: dict[str, Any]) -> dict[str, Any]:
    unknown = set(body) - set(STORY_FIELDS) - {"workspace_id"}
    if unknown:
        raise ApiError(400, f"unknown story fields: {', '.join(sorted(unknown))}", "invalid_request")
    return {k: v for k, v in body.items() if k in STORY_FIELDS}


async def list_stories(request: web.Request) -> web.Response:
    stories = await admin.list_stories(request.app[keys.DB], request.query.get("workspace_id") or None)
    return json_response({"data": [s.admin_json() for s in stories]})


async def create_story(request: web.Request) -> web.Response:
    body = await _object(request)
    wid = body.get("workspace_id")
    if wid is not None and not isinstance(wid, str):
        raise ApiError(400, "workspace_id must be a string", "invalid_request")
    wid = wid or "default"
    story = await admin.create_story(request.app[keys.DB], wid, _story_fields(body))
    return json_response(story.admin_json(), status=201)


async def get_story(request: web.Request) -> web.Response:
    return json_response((await admin.get_story(request.app[keys.DB], request.match_info["id"])).admin_json())


async def update_story(request: web.Request) -> web.Response:
    body = await _object(request)
    if "workspace_id" in body:
        raise ApiError(400, "a story cannot move to another workspace", "invalid_request")
    story = await admin.update_story(request.app[keys.DB], request.match_info["id"], _story_fields(body))
    return json_response(story.admin_json())


async def delete_story(request: web.Request) -> web.Response:
    await admin.delete_story(request.app[keys.DB], request.match_info["id"])
    return json_response({"id": request.match_info["id"], "deleted": True})


async def list_voices(request: web.Request) -> web.Response:
    wid = request.query.get("workspace_id") or "default"
    voices = await admin.list_voices(request.app[keys.DB], wid)
    return json_response({"data": [v.admin_json() for v in voices]})


async def _voice_form(request: web.Request) -> dict[str, Any]:
    try:
        return await _read_voice_form(request)
    except (ValueError, HttpProcessingError) as exc:  # malformed multipart (e.g. a part header's control character)
        detail = getattr(exc, "message", None) or str(exc)
        raise ApiError(400, f"malformed multipart body: {detail}"[:300], "invalid_request") from None


async def _read_voice_form(request: web.Request) -> dict[str, Any]:
    limit = request.app[keys.SETTINGS].max_upload_bytes
    out: dict[str, Any] = {}
    reader = await request.multipart()
    for _ in range(16):
        part = await reader.next()
        if part is None:
            return out
        if not isinstance(part, BodyPartReader):
            raise ApiError(400, "nested multipart is not accepted", "invalid_request")
        data = bytearray()
        field_limit = limit if part.name == "audio_file" else 8192
        while chunk := await part.read_chunk(65536):
            data += chunk
            if len(data) > field_limit:
                raise ApiError(413, f"{part.name} is too large", "request_too_large")
        out[part.name or ""] = bytes(data) if part.name == "audio_file" else data.decode("utf-8", "replace")
    raise ApiError(400, "too many form fields", "invalid_request")


async def create_voice(request: web.Request) -> web.Response:
    if request.content_type == "multipart/form-data":
        body = await _voice_form(request)
    else:
        body = await _object(request)
    for name in ("workspace_id", "name", "design_prompt", "language", "description"):
        if name in body and not isinstance(body[name], str):
            raise ApiError(400, f"{name} must be a string", "invalid_request")
    voice = await admin.create_workspace_voice(
        request.app[keys.DB], request.app[SERVICES], body.get("workspace_id") or "default",
        name=body.get("name", ""), design_prompt=body.get("design_prompt", ""), audio=body.get("audio_file"),
        description=body.get("description", ""), language=body.get("language") or "en")
    return json_response(voice.admin_json(), status=201)


async def update_voice(request: web.Request) -> web.Response:
    body = await _object(request)
    voice = await admin.update_voice(request.app[keys.DB], request.match_info["id"], body)
    return json_response(voice.admin_json())


async def delete_voice(request: web.Request) -> web.Response:
    await admin.delete_voice(request.app[keys.DB], request.app[SERVICES], request.match_info["id"])
    return json_response({"id": request.match_info["id"], "deleted": True})


async def app_usage(request: web.Request) -> web.Response:
    wid = request.query.get("workspace_id") or "default"
    rows = await app_requests.counts_by_source(request.app[keys.DB], wid)
    return json_response({"data": rows})


ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/app-usage", _mapped(app_usage)),
    ("GET", "/stories", _mapped(list_stories)),
    ("POST", "/stories", _mapped(create_story)),
    ("GET", "/stories/{id}", _mapped(get_story)),
    ("PATCH", "/stories/{id}", _mapped(update_story)),
    ("DELETE", "/stories/{id}", _mapped(delete_story)),
    ("GET", "/voices", _mapped(list_voices)),
    ("POST", "/voices", _mapped(create_voice)),
    ("PATCH", "/voices/{id}", _mapped(update_voice)),
    ("DELETE", "/voices/{id}", _mapped(delete_voice)),
]
