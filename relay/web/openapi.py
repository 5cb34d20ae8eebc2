"""``GET /openapi.json``: the OpenAPI 3.1 document of relay's public and admin HTTP API.

Each area documents its own paths: an area module listed in ``AREAS`` may define

    OPENAPI = {"paths": {...}, "components": {"schemas": {...}}}

and ``build_document(areas)`` merges it with the foundation's part below. Shared
components: ``#/components/schemas/Error`` (the Realtime device API's shape), ``AppError``
(the app API's shape), ``#/components/responses/<status>`` (error responses) and the
security schemes ``ClientId``/``ClientSecret``/``WorkspaceKey``/``AdminToken``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from types import ModuleType
from typing import Any

from aiohttp import web

import relay
from relay.models import DEVICE_UPDATABLE_FIELDS
from relay.web import keys
from relay.web.middleware import json_response

OPENAPI_DOC = web.AppKey("openapi_doc", dict)


def _err(description: str, app: bool = False) -> dict[str, Any]:
    ref = "#/components/schemas/AppError" if app else "#/components/schemas/Error"
    return {"description": description, "content": {"application/json": {"schema": {"$ref": ref}}}}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): {"$ref": f"#/components/responses/E{c}"} for c in codes}


#: a header value: surrounding blanks are ignored, so a blank one counts as missing
CLIENT_ID_HEADER = {"type": "string", "minLength": 1, "maxLength": 128, "pattern": r"\S"}

DEVICE_HEADERS = [
    {"name": "X-Client-Id", "in": "header", "required": True, "schema": CLIENT_ID_HEADER,
     "description": "The device's client id (a UUID); required of demo calls too."},
    {"name": "X-Client-Secret", "in": "header", "required": False,
     "schema": {"type": "string", "minLength": 32, "maxLength": 512},
     "description": "The device secret; the first one is enrolled (trust on first use)."},
    {"name": "X-Demo-Mode", "in": "header", "required": False, "schema": {"type": "string", "enum": ["true", "false"]},
     "description": "`true`: a demo call (only when the operator enabled demo mode; else 403 demo_mode_disabled)."},
    {"name": "X-Assistant-Id", "in": "header", "required": False, "schema": {"type": "string"},
     "description": "Use this assistant of the client's workspace instead of its own."},
    {"name": "X-Workspace-Key", "in": "header", "required": False, "schema": {"type": "string"},
     "description": "Workspace key: lets a new client id (UUID) enrol itself into a self-enrolling workspace."},
]

_ID = {"type": "string"}
#: a name: not blank (surrounding blanks are ignored)
_NAME = {"type": "string", "minLength": 1, "pattern": r"\S"}
_TEXT = {"type": "string", "maxLength": 32 * 1024}  # relay.store.assistants' limit on its text fields
_ASSISTANT_FIELDS: dict[str, Any] = {
    "name": {**_TEXT, "minLength": 1, "pattern": r"\S"},
    "provider": {"type": "string", "enum": ["local", "openai", "azure", "compatible"]},
    "upstream_url": {**_TEXT, "pattern": r"^(wss?://[\s\S]*)?$", "description": "ws:// or wss://; empty: none"},
    "api_key": {**_TEXT, "writeOnly": True}, "model": _TEXT, "voice": _TEXT, "instructions": _TEXT,
    "tools": {"type": "array", "items": {"$ref": "#/components/schemas/Tool"}}, "device_tools": {"type": "boolean"},
    "turn_detection": {"type": ["object", "null"]}, "transcription": {"type": ["object", "null"]},
    "input_audio_format": {"type": "string", "enum": ["pcm16", "g711_ulaw", "g711_alaw"]},
    "output_audio_format": {"type": "string", "enum": ["pcm16", "g711_ulaw", "g711_alaw"]},
    "dialect": {"type": "string", "enum": ["beta", "ga"]}, "allow_g711": {"type": "boolean"},
    "device_update_allow": {"type": "array", "description": "session fields (or their sub-fields) a device may set",
                            "items": {"type": "string", "pattern": f"^({'|'.join(DEVICE_UPDATABLE_FIELDS)})([.][\\s\\S]*)?$"}},
}
_TS = {"type": "string", "format": "date-time", "description": "ISO 8601, UTC"}
_TS_N = {"type": ["string", "null"], "format": "date-time"}

SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"], "additionalProperties": False, "properties": {
        "error": {"type": "object", "required": ["message", "type", "code"], "additionalProperties": False,
                  "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                                 "code": {"type": "string"}}}}},
    "AppError": {"type": "object", "required": ["detail"], "additionalProperties": False, "properties": {
        "detail": {"type": "object", "required": ["error", "code"], "additionalProperties": False,
                   "properties": {"error": {"type": "string"}, "code": {"type": "string"}}}}},
    "IceServer": {"type": "object", "required": ["urls"], "properties": {
        "urls": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "username": {"type": "string"}, "credential": {"type": "string"}}},
    "SessionRequest": {"type": "object", "properties": {
        "modalities": {"type": "array", "items": {"type": "string", "enum": ["text", "audio"]}, "minItems": 1,
                       "maxItems": 2, "uniqueItems": True}}},
    "Session": {"type": "object", "required": ["id", "iceServers"], "properties": {
        "id": {"type": "string", "pattern": "^session_"},
        "iceServers": {"type": "array", "items": _ref("IceServer")},
        "expires_at": {"type": "integer", "description": "unix seconds; the TURN credentials expire then"},
        "assistant": {"type": "object", "description": "relay's extension: what relay applies to this device's "
                      "calls (never the instructions); devices may ignore it",
                      "properties": {"id": {"type": "string"}, "name": {"type": "string"},
                                     "model": {"type": "string"}, "voice": {"type": "string"},
                                     "turn_detection": {"type": ["object", "null"]},
                                     "tools": {"type": "array", "items": {"type": "object", "properties": {
                                         "name": {"type": "string"},
                                         "side": {"type": "string", "enum": ["client", "server"]}}}}}}}},
    "Workspace": {"type": "object", "required": ["id", "name", "allow_self_enrol", "allow_secretless", "has_key"],
                  "properties": {"id": _ID, "name": {"type": "string"}, "allow_self_enrol": {"type": "boolean"},
                                 "allow_secretless": {"type": "boolean"},
                                 "default_assistant_id": {"type": ["string", "null"]},
                                 "settings": {"type": "object"}, "has_key": {"type": "boolean"},
                                 "key": {"type": "string", "description": "only when just issued"},
                                 "created_at": _TS}},
    "WorkspaceCreate": {"type": "object", "required": ["name"], "additionalProperties": False, "properties": {
        "name": _NAME, "allow_self_enrol": {"type": "boolean"}, "allow_secretless": {"type": "boolean"},
        "default_assistant_id": {"type": ["string", "null"]}, "settings": {"type": ["object", "null"]},
        "with_key": {"type": "boolean"}}},
    "WorkspaceUpdate": {"type": "object", "additionalProperties": False, "properties": {
        "name": _NAME, "allow_self_enrol": {"type": "boolean"}, "allow_secretless": {"type": "boolean"},
        "default_assistant_id": {"type": ["string", "null"], "description": "an assistant of this workspace; "
                                 "null: none"},
        "settings": {"type": ["object", "null"], "description": "null: {}"}}},
    "Tool": {"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string", "minLength": 1}, "description": {"type": ["string", "null"]},
        "parameters": {"type": ["object", "null"], "description": "JSON Schema of the arguments; null or {}: none"},
        "side": {"type": "string", "enum": ["client", "server"], "description": "default client"},
        "webhook_url": {"type": ["string", "null"], "pattern": "^(https?://[\\s\\S]*)?$",
                        "description": "http(s); required of server-side tools"}},
        "if": {"required": ["side"], "properties": {"side": {"const": "server"}}},
        "then": {"required": ["webhook_url"], "properties": {"webhook_url": {"type": "string", "minLength": 1}}}},
    "AssistantFields": {"type": "object", "additionalProperties": False, "properties": _ASSISTANT_FIELDS,
                        "description": "An assistant's fields; tool names must be unique."},
    "AssistantCreate": {"type": "object", "required": ["name"], "additionalProperties": False, "properties": {
        **_ASSISTANT_FIELDS, "workspace_id": {"type": "string", "description": "default `default`"}},
                        "description": "An assistant's fields; tool names must be unique."},
    "Assistant": {"type": "object", "required": ["id", "name", "workspace_id", "provider", "model", "has_api_key"],
                  "properties": {"id": _ID, "name": {"type": "string"}, "workspace_id": {"type": ["string", "null"]},
                                 "provider": {"type": "string"}, "upstream_url": {"type": "string"},
                                 "has_api_key": {"type": "boolean"}, "model": {"type": "string"},
                                 "voice": {"type": "string"}, "instructions": {"type": "string"},
                                 "tools": {"type": "array", "items": _ref("Tool")},
                                 "device_tools": {"type": "boolean"}, "turn_detection": {"type": ["object", "null"]},
                                 "transcription": {"type": ["object", "null"]},
                                 "input_audio_format": {"type": "string"}, "output_audio_format": {"type": "string"},
                                 "dialect": {"type": "string"}, "allow_g711": {"type": "boolean"},
                                 "device_update_allow": {"type": "array", "items": {"type": "string"}},
                                 "created_at": _TS},
                  "not": {"required": ["api_key"]}},
    "Client": {"type": "object", "required": ["id", "workspace_id", "status", "enrolled"], "properties": {
        "id": {"type": "string", "format": "uuid"}, "workspace_id": _ID, "assistant_id": {"type": ["string", "null"]},
        "name": {"type": "string"}, "status": {"type": "string", "enum": ["active", "disabled"]},
        "enrolled": {"type": "boolean"}, "enrolled_at": _TS_N, "last_seen_at": _TS_N, "created_at": _TS}},
    "ClientCreate": {"type": "object", "additionalProperties": False, "properties": {
        "id": {"type": ["string", "null"], "format": "uuid", "description": "null: a new UUID"},
        "workspace_id": {"type": ["string", "null"], "description": "null: `default`"},
        "assistant_id": {"type": ["string", "null"], "description": "null: the workspace's default"},
        "name": {"type": ["string", "null"]}}},
    "ClientUpdate": {"type": "object", "additionalProperties": False, "properties": {
        "assistant_id": {"type": ["string", "null"], "description": "null: the workspace's default"},
        "status": {"type": "string", "enum": ["active", "disabled"]}}},
    "Deleted": {"type": "object", "required": ["id", "deleted"], "properties": {"id": _ID, "deleted": {"const": True}}},
    "LiveCall": {"type": "object", "required": ["id", "kind", "client_id", "started_at", "duration_s"], "properties": {
        "id": {"type": "string", "description": "the call's id (X-Session-Id of its SDP answer)"},
        "kind": {"type": "string", "enum": ["webrtc", "websocket"]},
        "client_id": {"type": "string"}, "workspace_id": {"type": ["string", "null"]},
        "assistant_id": {"type": "string"}, "assistant_name": {"type": "string"}, "demo": {"type": "boolean"},
        "started_at": {"type": "string", "format": "date-time"}, "duration_s": {"type": "number"},
        "node": {"type": "string", "description": "the node holding it (node_name)"},
        "worker": {"type": "integer", "description": "its worker's index on that node"},
        "ended": {"const": True, "description": "in the answer of an end request (a call held by another worker "
                                                "or node ends at its holder's next lease renewal)"}}},
}


def _list_of(name: str) -> dict[str, Any]:
    return {"type": "object", "required": ["data"], "properties": {"data": {"type": "array", "items": _ref(name)}}}


def _admin_paths() -> dict[str, Any]:
    sec = [{"AdminToken": []}]
    idp = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
    errs = _errors(400, 401, 404, 409, 413, 415, 429)

    def op(summary: str, ok: dict[str, Any], status: int = 200, body: str | None = None,
           params: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"summary": summary, "tags": ["admin"], "security": sec,
                               "responses": {str(status): ok, **errs}}
        if body:
            out["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
        if params:
            out["parameters"] = params
        return out

    wsq = [{"name": "workspace_id", "in": "query", "required": False, "schema": {"type": "string"}}]
    page = [*wsq, {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
            {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}}]
    p = "/admin/v1"
    return {
        f"{p}/workspaces": {
            "get": op("List workspaces", _json(_list_of("Workspace"))),
            "post": op("Create a workspace (with_key: issue a key, shown once)", _json(_ref("Workspace")), 201,
                       "WorkspaceCreate")},
        f"{p}/workspaces/{{id}}": {
            "parameters": idp,
            "get": op("Get a workspace", _json(_ref("Workspace"))),
            "patch": op("Update a workspace", _json(_ref("Workspace")), body="WorkspaceUpdate"),
            "delete": op("Delete a workspace (and its assistants and clients)", _json(_ref("Deleted")))},
        f"{p}/workspaces/{{id}}/rotate-key": {
            "parameters": idp, "post": op("Issue a new workspace key", _json(_ref("Workspace")))},
        f"{p}/assistants": {
            "get": op("List assistants", _json(_list_of("Assistant")), params=wsq),
            "post": op("Create an assistant", _json(_ref("Assistant")), 201, "AssistantCreate")},
        f"{p}/assistants/{{id}}": {
            "parameters": idp,
            "get": op("Get an assistant", _json(_ref("Assistant"))),
            "patch": op("Update an assistant", _json(_ref("Assistant")), body="AssistantFields"),
            "delete": op("Delete an assistant", _json(_ref("Deleted")))},
        f"{p}/clients": {
            "get": op("List clients", _json(_list_of("Client")), params=page),
            "post": op("Create a client", _json(_ref("Client")), 201, "ClientCreate")},
        f"{p}/clients/{{id}}": {
            "parameters": idp,
            "get": op("Get a client", _json(_ref("Client"))),
            "patch": op("Change a client's assistant or status", _json(_ref("Client")), body="ClientUpdate"),
            "delete": op("Delete a client", _json(_ref("Deleted")))},
        f"{p}/clients/{{id}}/disable": {"parameters": idp, "post": op("Disable (404 to its requests)",
                                                                        _json(_ref("Client")))},
        f"{p}/clients/{{id}}/enable": {"parameters": idp, "post": op("Enable again", _json(_ref("Client")))},
        f"{p}/clients/{{id}}/reset-secret": {"parameters": idp, "post": op(
            "Clear the enrolled secret: the next one is enrolled (TOFU)", _json(_ref("Client")))},
        f"{p}/clients/{{id}}/usage": {"parameters": idp, "get": op("Usage rows and totals", _json({
            "type": "object", "required": ["totals", "data"],
            "properties": {"totals": {"type": "object"}, "data": {"type": "array", "items": {"type": "object"}}}}))},
        f"{p}/calls": {"get": op("Every live call of the fleet (the live-call registry: every worker of every "
                                 "node sharing the database), oldest first", _json(_list_of("LiveCall")))},
        f"{p}/calls/{{id}}": {"parameters": idp, "delete": op(
            "End a live call (same as POST .../end)", _json(_ref("LiveCall")))},
        f"{p}/calls/{{id}}/end": {"parameters": idp, "post": op(
            "End a live call: the device gets an error event call_ended_by_operator, then the close; "
            "a call held by another worker or node ends at its holder's next lease renewal; "
            "404 call_not_found when no such call is live", _json(_ref("LiveCall")))},
    }


def foundation_part() -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/v1/realtime/sessions": {"post": {
            "summary": "Create a WebRTC session: authenticates the device and returns ICE servers (the Realtime device API)",
            "tags": ["realtime"], "parameters": DEVICE_HEADERS,
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("SessionRequest")}}},
            "responses": {"200": _json(_ref("Session")), **_errors(400, 401, 403, 404, 413, 415, 429, 500)}}},
        "/healthz": {"get": {"summary": "Liveness", "tags": ["ops"], "responses": {"200": _json(
            {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}})}}},
        "/readyz": {"get": {"summary": "Readiness (the database answers)", "tags": ["ops"], "responses": {
            "200": _json({"type": "object", "required": ["status", "database"],
                          "properties": {"status": {"const": "ready"},
                                         "database": {"enum": ["sqlite", "postgresql"]}}}),
            "503": {"$ref": "#/components/responses/E503"}}}},
        "/openapi.json": {"get": {"summary": "This document", "tags": ["ops"],
                                  "responses": {"200": _json({"type": "object"})}}},
        **_admin_paths(),
    }
    descriptions = {400: "Invalid request or missing header", 401: "Invalid or missing credentials",
                    403: "Refused (e.g. demo mode disabled)", 404: "Not found / client not activated",
                    409: "Conflict", 413: "Request too large", 415: "Unsupported content type",
                    429: "Too many failed attempts (see Retry-After)", 500: "Server error",
                    503: "Unavailable"}
    responses = {f"E{c}": _err(d) for c, d in descriptions.items()}
    return {"paths": paths, "components": {"schemas": SCHEMAS, "responses": responses}}


def _merge(doc: dict[str, Any], part: dict[str, Any]) -> None:
    for path, item in part.get("paths", {}).items():
        doc["paths"].setdefault(path, {}).update(copy.deepcopy(item))
    for section, entries in part.get("components", {}).items():
        doc["components"].setdefault(section, {}).update(copy.deepcopy(entries))


def build_document(areas: Iterable[ModuleType]) -> dict[str, Any]:
    """The whole document: the foundation's part plus each area module's ``OPENAPI`` (``areas``: the
    app's area modules, ``relay.web.app.AREAS``)."""
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "relay", "version": relay.__version__,
                 "description": "WebRTC <-> Realtime media relay: device sessions, SDP exchange, app API, admin."},
        "paths": {},
        "components": {"securitySchemes": {
            "ClientId": {"type": "apiKey", "in": "header", "name": "X-Client-Id"},
            "ClientSecret": {"type": "apiKey", "in": "header", "name": "X-Client-Secret"},
            "WorkspaceKey": {"type": "apiKey", "in": "header", "name": "X-Workspace-Key"},
            "AdminToken": {"type": "http", "scheme": "bearer"}}},
    }
    _merge(doc, foundation_part())
    for area in areas:
        part = getattr(area, "OPENAPI", None)
        if isinstance(part, dict):
            _merge(doc, part)
    return doc


async def openapi_json(request: web.Request) -> web.Response:
    doc = request.app[OPENAPI_DOC]
    if not doc:  # built on first use, when every area module is imported
        areas: list[ModuleType] = request.app[keys.AREAS] if keys.AREAS in request.app else []
        doc.update(build_document(areas))
    return json_response(doc)


def setup(app: web.Application) -> None:
    app[OPENAPI_DOC] = {}
    app.router.add_get("/openapi.json", openapi_json)
