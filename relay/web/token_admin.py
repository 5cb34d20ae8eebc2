"""Operator management of the WebSocket edge's API tokens over HTTP (``relay admin tokens``: ``relay.wsedge.token_cli``).

HTTP (mounted by ``relay.web.admin`` under ``/admin/v1/``, same bearer token and error shape):

    GET    /admin/v1/tokens?workspace_id=...         {"data": [token, ...]}
    POST   /admin/v1/tokens                          {workspace_id, assistant_id?, name?, client_dialect?}
                                                     -> 201 token + "token"
    GET    /admin/v1/tokens/{id}
    POST   /admin/v1/tokens/{id}/revoke
    DELETE /admin/v1/tokens/{id}                     (same as revoke; the record stays for the usage rows)
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from relay.store import tokens as tokens_repo
from relay.web import keys
from relay.web.errors import ApiError
from relay.web.middleware import json_response, read_json

# --- HTTP ------------------------------------------------------------------------

async def list_tokens(request: web.Request) -> web.Response:
    tokens = await tokens_repo.list_all(request.app[keys.DB], request.query.get("workspace_id") or None)
    return json_response({"data": [t.public_json() for t in tokens]})


async def create_token(request: web.Request) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ApiError(400, "Request body must be a JSON object", "invalid_request")
    unknown = sorted(set(body) - {"workspace_id", "assistant_id", "name", "client_dialect"})
    if unknown:
        raise ValueError(f"unknown fields: {', '.join(unknown)}")
    wid, aid, name = body.get("workspace_id", "default"), body.get("assistant_id"), body.get("name", "")
    if not isinstance(wid, str) or not wid or (aid is not None and not isinstance(aid, str)) \
            or not isinstance(name, str):
        raise ValueError("workspace_id, assistant_id and name must be strings")
    dialect = body.get("client_dialect")
    if dialect is not None and dialect not in tokens_repo.CLIENT_DIALECTS:
        raise ValueError("client_dialect must be beta, ga or null")
    token, plain = await tokens_repo.create(request.app[keys.DB], wid, assistant_id=aid, name=name,
                                            client_dialect=dialect)
    return json_response({**token.public_json(), "token": plain}, status=201)


async def get_token(request: web.Request) -> web.Response:
    return json_response((await tokens_repo.get(request.app[keys.DB], request.match_info["id"])).public_json())


async def revoke_token(request: web.Request) -> web.Response:
    return json_response((await tokens_repo.revoke(request.app[keys.DB], request.match_info["id"])).public_json())


ROUTES = [
    ("GET", "/tokens", list_tokens),
    ("POST", "/tokens", create_token),
    ("GET", "/tokens/{id}", get_token),
    ("POST", "/tokens/{id}/revoke", revoke_token),
    ("DELETE", "/tokens/{id}", revoke_token),
]

_TOKEN = {"type": "object", "required": ["id", "workspace_id", "name", "created_at", "revoked"], "properties": {
    "id": {"type": "string", "pattern": "^rtk_[0-9a-f]{16}$"}, "workspace_id": {"type": "string"},
    "assistant_id": {"type": ["string", "null"]}, "name": {"type": "string"},
    "created_at": {"type": "string", "format": "date-time"},
    "last_used_at": {"type": ["string", "null"], "format": "date-time"},
    "revoked_at": {"type": ["string", "null"], "format": "date-time"}, "revoked": {"type": "boolean"},
    "client_dialect": {"type": ["string", "null"], "enum": ["beta", "ga", None],
                       "description": "its clients' dialect when their handshake does not say (null: the handshake decides)"}}}
_REF = {"$ref": "#/components/schemas/ApiToken"}
_SEC = [{"AdminToken": []}]


def _ok(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errs(*codes: int) -> dict[str, Any]:
    return {str(c): {"$ref": f"#/components/responses/E{c}"} for c in codes}


OPENAPI = {"paths": {
    "/admin/v1/tokens": {
        "get": {"summary": "List API tokens of the WebSocket edge", "tags": ["admin"], "security": _SEC,
                "parameters": [{"name": "workspace_id", "in": "query", "required": False,
                                "schema": {"type": "string"}}],
                "responses": {"200": _ok({"type": "object", "properties": {"data": {"type": "array", "items": _REF}}}),
                              **_errs(401, 404, 429)}},
        "post": {"summary": "Create an API token (the plain token is in this answer only)", "tags": ["admin"],
                 "security": _SEC,
                 "requestBody": {"required": True, "content": {"application/json": {"schema": {
                     "type": "object", "additionalProperties": False, "properties": {
                         "workspace_id": {"type": "string", "default": "default"},
                         "assistant_id": {"type": ["string", "null"]},
                         "name": {"type": "string", "maxLength": 200},
                         "client_dialect": {"type": ["string", "null"], "enum": ["beta", "ga", None]}}}}}},
                 "responses": {"201": _ok({"allOf": [_REF, {"type": "object", "required": ["token"], "properties": {
                     "token": {"type": "string"}}}]}, "Created"), **_errs(400, 401, 404, 409, 413, 415, 429)}}},
    "/admin/v1/tokens/{id}": {
        "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
        "get": {"summary": "One API token", "tags": ["admin"], "security": _SEC,
                "responses": {"200": _ok(_REF), **_errs(401, 404, 429)}},
        "delete": {"summary": "Revoke an API token (same as POST .../revoke)", "tags": ["admin"], "security": _SEC,
                   "responses": {"200": _ok(_REF), **_errs(401, 404, 429)}}},
    "/admin/v1/tokens/{id}/revoke": {
        "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
        "post": {"summary": "Revoke an API token (live calls keep running; new connections get 401)",
                 "tags": ["admin"], "security": _SEC, "responses": {"200": _ok(_REF), **_errs(401, 404, 429)}}},
}, "components": {"schemas": {"ApiToken": _TOKEN}}}
