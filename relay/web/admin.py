"""Admin HTTP API under ``/admin/v1/``: workspaces, assistants, clients.

``Authorization: Bearer <RELAY_ADMIN_TOKEN>`` (constant-time compare). With no
token configured the whole API answers 404, as if it did not exist. Errors use
the ``{"error": {message, type, code}}`` shape. Lists are ``{"data": [...]}``.
Failed tokens count against the caller's address in the auth throttle (429).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from relay.admin.output import iso8601, readable
from relay.store import assistants as assistants_repo
from relay.store import clients as clients_repo
from relay.store import usage as usage_repo
from relay.store import workspaces as workspaces_repo
from relay.store.db import Database
from relay.store.errors import Conflict, NotFound
from relay.web import keys
from relay.web.authn import require_operator_bearer
from relay.web.errors import ApiError
from relay.web.middleware import json_response, read_json

log = logging.getLogger("relay.admin")
PREFIX = "/admin/v1"

Handler = Callable[[web.Request], Awaitable[web.Response]]


async def _check_token(request: web.Request) -> None:
    await require_operator_bearer(request, request.app[keys.SETTINGS].admin_token, code="invalid_admin_token",
                            message="Missing or invalid admin bearer token", realm="relay-admin")


def _readable(resp: web.Response) -> web.Response:
    """Admin answers for people: ``*_at`` times as ISO 8601 UTC, counts as integers (relay.admin.output)."""
    if resp.content_type != "application/json" or not isinstance(resp.body, bytes) or not resp.body:
        return resp
    doc = orjson.loads(resp.body)
    return json_response(readable(doc), resp.status, headers={k: v for k, v in resp.headers.items()
                                                              if k.lower() not in ("content-type", "content-length")})


def _guarded(handler: Handler) -> Handler:
    async def wrapper(request: web.Request) -> web.Response:
        await _check_token(request)
        try:
            return _readable(await handler(request))
        except NotFound as exc:
            raise ApiError(404, str(exc), "not_found") from None
        except Conflict as exc:
            raise ApiError(409, str(exc), "conflict") from None
        except ValueError as exc:
            raise ApiError(400, str(exc), "invalid_request") from None

    return wrapper


def _db(request: web.Request) -> Database:
    return request.app[keys.DB]


async def _object(request: web.Request) -> dict[str, Any]:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ApiError(400, "Request body must be a JSON object", "invalid_request")
    return body


def _take(body: dict[str, Any], allowed: dict[str, type | tuple[type, ...]],
          nullable: frozenset[str] = frozenset()) -> dict[str, Any]:
    """``body`` when it has only ``allowed`` fields of their types; ``null`` only for the ``nullable`` ones
    (where it means "none", as the OpenAPI document says). ``ValueError`` (400) otherwise."""
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise ValueError(f"unknown fields: {', '.join(unknown)}")
    for name, kind in allowed.items():
        if name not in body:
            continue
        value = body[name]
        if value is None:
            if name not in nullable:
                raise ValueError(f"{name} must not be null")
        elif not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ValueError(f"{name} has the wrong type")
    return body


MAX_OFFSET = 2**31 - 1
MAX_LIMIT = 1000


def _limit(request: web.Request) -> tuple[int, int]:
    try:
        limit = int(request.query.get("limit", "100"))
        offset = int(request.query.get("offset", "0"))
    except ValueError:
        raise ApiError(400, "limit and offset must be integers", "invalid_request") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(400, f"limit must be from 1 to {MAX_LIMIT}", "invalid_request")
    if not 0 <= offset <= MAX_OFFSET:  # beyond any list, and beyond what the databases' integers hold
        raise ApiError(400, f"offset must be from 0 to {MAX_OFFSET}", "invalid_request")
    return limit, offset


# --- workspaces ---------------------------------------------------------------

_WS_FIELDS: dict[str, Any] = {"name": str, "allow_self_enrol": bool, "allow_secretless": bool,
                              "default_assistant_id": str, "settings": dict}
_WS_NULLABLE = frozenset({"default_assistant_id", "settings"})  # null: none / {}


async def list_workspaces(request: web.Request) -> web.Response:
    return json_response({"data": [w.public_json() for w in await workspaces_repo.list_all(_db(request))]})


async def create_workspace(request: web.Request) -> web.Response:
    body = _take(await _object(request), {**_WS_FIELDS, "with_key": bool}, _WS_NULLABLE)
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError("name is required")
    ws, key = await workspaces_repo.create(
        _db(request), name, allow_self_enrol=bool(body.get("allow_self_enrol")),
        allow_secretless=bool(body.get("allow_secretless")), settings=body.get("settings"),
        with_key=bool(body.get("with_key")))
    log.info("workspace created", extra={"workspace_id": ws.id})
    return json_response({**ws.public_json(), **({"key": key} if key else {})}, status=201)


async def get_workspace(request: web.Request) -> web.Response:
    return json_response((await workspaces_repo.get(_db(request), request.match_info["id"])).public_json())


async def update_workspace(request: web.Request) -> web.Response:
    body = _take(await _object(request), _WS_FIELDS, _WS_NULLABLE)
    if "name" in body and not body["name"].strip():
        raise ValueError("name must not be empty")
    wid = request.match_info["id"]
    await workspaces_repo.get(_db(request), wid)
    aid = body.get("default_assistant_id")
    if aid is not None:
        if (await assistants_repo.get(_db(request), aid)).workspace_id != wid:
            raise Conflict("the assistant belongs to another workspace")
    return json_response((await workspaces_repo.update(_db(request), wid, **body)).public_json())


async def rotate_workspace_key(request: web.Request) -> web.Response:
    wid = request.match_info["id"]
    key = await workspaces_repo.rotate_key(_db(request), wid)
    return json_response({**(await workspaces_repo.get(_db(request), wid)).public_json(), "key": key})


async def delete_workspace(request: web.Request) -> web.Response:
    await workspaces_repo.delete(_db(request), request.match_info["id"])
    return json_response({"id": request.match_info["id"], "deleted": True})


# --- assistants ---------------------------------------------------------------


async def list_assistants(request: web.Request) -> web.Response:
    found = await assistants_repo.list_all(_db(request), request.query.get("workspace_id"))
    return json_response({"data": [a.public_json() for a in found]})


async def create_assistant(request: web.Request) -> web.Response:
    body = await _object(request)
    workspace_id = body.pop("workspace_id", "default")
    name = body.pop("name", None)
    if not isinstance(workspace_id, str) or not isinstance(name, str) or not name.strip():
        raise ValueError("name (and optionally workspace_id) are required strings")
    await workspaces_repo.get(_db(request), workspace_id)
    a = await assistants_repo.create(_db(request), workspace_id, name, **body)
    return json_response(a.public_json(), status=201)


async def get_assistant(request: web.Request) -> web.Response:
    return json_response((await assistants_repo.get(_db(request), request.match_info["id"])).public_json())


async def update_assistant(request: web.Request) -> web.Response:
    body = await _object(request)
    return json_response((await assistants_repo.update(_db(request), request.match_info["id"], **body)).public_json())


async def delete_assistant(request: web.Request) -> web.Response:
    await assistants_repo.delete(_db(request), request.match_info["id"])
    return json_response({"id": request.match_info["id"], "deleted": True})


# --- clients ------------------------------------------------------------------


async def list_clients(request: web.Request) -> web.Response:
    limit, offset = _limit(request)
    found = await clients_repo.list_all(_db(request), request.query.get("workspace_id"), limit=limit, offset=offset)
    return json_response({"data": [c.public_json() for c in found]})


async def create_client(request: web.Request) -> web.Response:
    body = _take(await _object(request), {"id": str, "workspace_id": str, "assistant_id": str, "name": str},
                 frozenset({"id", "workspace_id", "assistant_id", "name"}))  # null: a new id / default / none / ""
    c = await clients_repo.create(_db(request), body.get("workspace_id") or "default", client_id=body.get("id"),
                                  assistant_id=body.get("assistant_id"), name=body.get("name") or "")
    log.info("client created", extra={"client_id": c.id})
    return json_response(c.public_json(), status=201)


async def get_client(request: web.Request) -> web.Response:
    return json_response((await clients_repo.get(_db(request), request.match_info["id"])).public_json())


async def update_client(request: web.Request) -> web.Response:
    body = _take(await _object(request), {"assistant_id": str, "status": str}, frozenset({"assistant_id"}))
    cid = request.match_info["id"]
    db = _db(request)
    if "assistant_id" in body:
        await clients_repo.set_assistant(db, cid, body["assistant_id"])
    if "status" in body:
        await clients_repo.set_status(db, cid, body["status"])
    return json_response((await clients_repo.get(db, cid)).public_json())


def _status_op(status: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        c = await clients_repo.set_status(_db(request), request.match_info["id"], status)
        log.info("client %s", "disabled" if status == "disabled" else "enabled", extra={"client_id": c.id})
        return json_response(c.public_json())

    return handler


async def reset_client_secret(request: web.Request) -> web.Response:
    c = await clients_repo.reset_secret(_db(request), request.match_info["id"])
    log.info("client secret reset", extra={"client_id": c.id})
    return json_response(c.public_json())


async def delete_client(request: web.Request) -> web.Response:
    await clients_repo.delete(_db(request), request.match_info["id"])
    return json_response({"id": request.match_info["id"], "deleted": True})


async def client_usage(request: web.Request) -> web.Response:
    cid = (await clients_repo.get(_db(request), request.match_info["id"])).id
    rows = await usage_repo.list_usage(_db(request), client_id=cid, limit=_limit(request)[0])
    return json_response({"totals": await usage_repo.totals(_db(request), cid),
                          "data": [r.__dict__ for r in rows]})


def _live_call_json(call: Any, now: float) -> dict[str, Any]:
    """What an operator may see of a live call (never the instructions, secrets or tokens)."""
    device = call.device
    started = float(call.usage.started_at)
    return {
        "id": call.id,
        "kind": "websocket" if hasattr(call, "ws") else "webrtc",
        "client_id": device.client_id,
        "workspace_id": device.workspace_id,
        "assistant_id": device.assistant.id,
        "assistant_name": device.assistant.name,
        "demo": device.demo,
        "started_at": iso8601(started),
        "duration_s": round(max(0.0, now - started), 1),
    }


def _registry(request: web.Request) -> Any:
    from relay.web.realtime import MEDIA

    plane = request.app.get(MEDIA)
    if plane is None:
        raise ApiError(404, "This server carries no calls", "not_found")
    return plane.registry


def _fleet_call_json(row: Any, local: Any, now: float) -> dict[str, Any]:
    """A live call of the fleet's registry (``relay.store.live_calls``), with what this worker knows of it."""
    out = _live_call_json(local, now) if local is not None else {
        "id": row.call_id,
        "kind": "websocket" if row.edge == "websocket" else "webrtc",
        "client_id": row.client_id,
        "workspace_id": row.workspace_id,
        "started_at": iso8601(row.started_at),
        "duration_s": round(max(0.0, now - row.started_at), 1),
    }
    return {**out, "node": row.node, "worker": row.worker}


async def list_calls(request: web.Request) -> web.Response:
    """Every live call of the fleet (every worker of every node sharing the database), oldest first."""
    from relay.store import live_calls

    now = time.time()
    registry = _registry(request)
    rows = await live_calls.list_live(_db(request), now=now)
    return json_response({"data": [_fleet_call_json(r, registry.get(r.call_id), now) for r in rows]})


async def end_call(request: web.Request) -> web.Response:
    """End one live call: the device gets an ``error`` event (``call_ended_by_operator``), then the close.
    A call held by another worker or node is ended by its holder at its next lease renewal."""
    from relay.store import live_calls

    call_id = request.match_info["id"]
    call = _registry(request).get(call_id)
    if call is not None and not call.closed:
        payload = _live_call_json(call, time.time())
        call.end_with_error("call_ended_by_operator", "An operator ended this call.")
        log.info("call ended by an operator", extra={"session_id": call_id, "event": "call_ended_by_operator"})
        return json_response({**payload, "ended": True})
    now = time.time()
    row = next((r for r in await live_calls.list_live(_db(request), now=now) if r.call_id == call_id), None)
    if row is None or not await live_calls.request_end(_db(request), call_id):
        raise ApiError(404, f"No live call {call_id!r}", "call_not_found")
    log.info("end of a call requested by an operator", extra={"session_id": call_id, "event": "call_ended_by_operator"})
    return json_response({**_fleet_call_json(row, None, now), "ended": True})


ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/workspaces", list_workspaces),
    ("POST", "/workspaces", create_workspace),
    ("GET", "/workspaces/{id}", get_workspace),
    ("PATCH", "/workspaces/{id}", update_workspace),
    ("DELETE", "/workspaces/{id}", delete_workspace),
    ("POST", "/workspaces/{id}/rotate-key", rotate_workspace_key),
    ("GET", "/assistants", list_assistants),
    ("POST", "/assistants", create_assistant),
    ("GET", "/assistants/{id}", get_assistant),
    ("PATCH", "/assistants/{id}", update_assistant),
    ("DELETE", "/assistants/{id}", delete_assistant),
    ("GET", "/clients", list_clients),
    ("POST", "/clients", create_client),
    ("GET", "/clients/{id}", get_client),
    ("PATCH", "/clients/{id}", update_client),
    ("DELETE", "/clients/{id}", delete_client),
    ("POST", "/clients/{id}/disable", _status_op("disabled")),
    ("POST", "/clients/{id}/enable", _status_op("active")),
    ("POST", "/clients/{id}/reset-secret", reset_client_secret),
    ("GET", "/clients/{id}/usage", client_usage),
    ("GET", "/calls", list_calls),
    ("POST", "/calls/{id}/end", end_call),
    ("DELETE", "/calls/{id}", end_call),
]


async def _hidden(request: web.Request) -> web.Response:
    await _check_token(request)  # 404 when disabled, 401 without the token
    raise ApiError(404, "Not found", "not_found")


def setup(app: web.Application) -> None:
    from relay.web.app_api.admin import ROUTES as APP_ROUTES  # stories and workspace voices (#6)
    from relay.web.token_admin import ROUTES as TOKEN_ROUTES  # API tokens of the WebSocket edge (seed 003)

    for method, path, handler in ROUTES + APP_ROUTES + TOKEN_ROUTES:
        app.router.add_route(method, PREFIX + path, _guarded(handler))
    app.router.add_route("*", PREFIX + "/{tail:.*}", _hidden)
