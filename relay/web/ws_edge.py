"""``GET /v1/realtime`` upgraded to a WebSocket: the edge for server clients (the Realtime API over WebSocket).

The same path as the WebRTC SDP exchange (``POST``, ``relay.web.realtime``); aiohttp routes
the methods separately. Before the upgrade everything is plain HTTP with the Realtime device API's error
shape: 426 when the request is not a WebSocket upgrade, 401 ``missing_token`` /
``invalid_token`` / ``token_revoked``, 429 ``rate_limited`` (failed tokens are throttled per
token id and per address, with the device-secret throttle's settings), 404
``assistant_not_found``, 503 ``capacity_exceeded`` / 429 ``too_many_calls`` (the media plane's
call registry and limits: one mechanism for both edges). After the upgrade the client speaks
the OpenAI Realtime events (beta or GA) and relay runs the call (``relay.wsedge.wscall.WsCall``).

Dialect, chosen at the handshake (``handshake_dialect``): ``OpenAI-Beta: realtime=v1`` -> beta (the
SDK's beta client); else ``?dialect=beta|ga``; else the token's configured client dialect; else a
``?model=`` in the URL -> GA (the SDK's GA client connects so, with no beta header); else beta (the
dialect of the WebSocket-edge contract).
An event shaped unambiguously in the other dialect still switches it (``CallCore``).

Token: ``?token=...`` or ``Authorization: Bearer ...`` in the handshake (the header wins when
both are given). Tokens are created by the operator (``relay admin tokens create``,
``POST /admin/v1/tokens``), scoped to a workspace and its assistant.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import uuid

from aiohttp import web

from relay.bridge.core import AUDIO_FORMATS
from relay.models import Device
from relay.node.handoff import arrived_from_sibling
from relay.node.state import choose_sibling
from relay.settings import Settings
from relay.upstream import dialect as dl
from relay.web.authn import authenticate_token
from relay.web.errors import ApiError
from relay.web.middleware import remote_address
from relay.web.realtime import MEDIA, admit
from relay.web.token_admin import OPENAPI as ADMIN_OPENAPI
from relay.wsedge.wscall import WsCall, WsCallConfig

log = logging.getLogger("relay.wsedge")

#: the largest frame read at all; frames between ``device_event_max_bytes`` and this get an error
#: event (the call goes on), larger ones are refused by the WebSocket layer (close 1009)
HARD_FRAME_FACTOR = 4
MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")

_E = {c: {"$ref": f"#/components/responses/E{c}"} for c in (400, 401, 404, 429, 503)}
OPENAPI = {"paths": {
    "/v1/realtime": {"get": {
        "summary": "WebSocket edge for server clients (the Realtime API over WebSocket): upgrade, then OpenAI Realtime events "
                   "(beta or GA) both ways; relay injects the assistant's configuration",
        "description": "Authenticate with `?token=` or `Authorization: Bearer` (an API token from "
                       "`relay admin tokens create` / `POST /admin/v1/tokens`). Client events: session.update, "
                       "input_audio_buffer.append/commit/clear, conversation.item.create/delete/truncate/"
                       "retrieve, response.create/cancel. Server events: session.created, session.updated, "
                       "response.audio.delta, transcripts, function-call events, response.done (usage), "
                       "conversation.item.created, error. Audio: pcm16 24 kHz mono (or `audio_format`). "
                       "See docs/ws_edge.md.",
        "tags": ["realtime"],
        "security": [{"ApiToken": []}, {"ApiTokenQuery": []}],
        "parameters": [
            {"name": "token", "in": "query", "required": False, "schema": {"type": "string", "maxLength": 256},
             "description": "The API token (or send `Authorization: Bearer <token>`)."},
            {"name": "audio_format", "in": "query", "required": False,
             "schema": {"type": "string", "enum": sorted(AUDIO_FORMATS), "default": "pcm16"},
             "description": "Audio format both ways (G.711 only when the assistant allows it)."},
            {"name": "dialect", "in": "query", "required": False, "schema": {"type": "string", "enum": ["beta", "ga"]},
             "description": "The client's event dialect. `OpenAI-Beta: realtime=v1` -> beta wins over it; "
                            "without either: the token's configured client dialect, else a `model` query "
                            "parameter -> GA, else beta."},
            {"name": "model", "in": "query", "required": False, "schema": {"type": "string", "maxLength": 128},
             "description": "Sent by OpenAI's GA clients; selects the GA dialect (see `dialect`). Used as the "
                            "model only when the assistant lets devices choose it (`model` in "
                            "`device_update_allow`), otherwise ignored: `session.created` shows the model in use."},
        ],
        "responses": {
            "101": {"description": "Switching Protocols: the WebSocket is open; relay sends session.created"},
            "426": {"description": "Not a WebSocket upgrade request",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            **{str(c): _E[c] for c in (400, 401, 404, 429, 503)}}}},
}, "components": {"securitySchemes": {
    "ApiToken": {"type": "http", "scheme": "bearer", "description": "API token `rtk_...` (the Realtime API over WebSocket)"},
    "ApiTokenQuery": {"type": "apiKey", "in": "query", "name": "token"}}}}
OPENAPI["paths"].update(ADMIN_OPENAPI["paths"])  # the token admin routes (mounted by relay.web.admin)
OPENAPI["components"]["schemas"] = ADMIN_OPENAPI["components"]["schemas"]




def asked_dialect(request: web.Request) -> str | None:
    """``?dialect=``, checked (400 ``invalid_dialect``) before the token is."""
    asked = request.query.get("dialect")
    if asked is not None and asked not in dl.DIALECTS:
        raise ApiError(400, f"dialect must be one of {', '.join(dl.DIALECTS)}", "invalid_dialect")
    return asked


def handshake_dialect(request: web.Request, token_dialect: str | None = None) -> str:
    """The client's dialect from its handshake, by the first rule that applies (module doc)."""
    flags = {flag.strip().lower() for header in request.headers.getall("OpenAI-Beta", [])
             for flag in header.split(",")}
    if "realtime=v1" in flags:
        return dl.BETA
    asked = asked_dialect(request)
    if asked is not None:
        return asked
    if token_dialect in dl.DIALECTS:
        return token_dialect
    if request.query.get("model"):
        return dl.GA
    return dl.BETA


def with_requested_model(request: web.Request, device: Device) -> Device:
    """The client's ``?model=`` replaces the assistant's model only when the assistant's policy lets
    devices choose it (``model`` in ``device_update_allow``); otherwise it is ignored and
    ``session.created`` shows the model in use. 400 ``invalid_model`` for a malformed name it would use."""
    asked = request.query.get("model")
    if not asked or "model" not in device.assistant.device_update_allow or asked == device.assistant.model:
        return device
    if not MODEL_RE.match(asked):
        raise ApiError(400, "model must be 1-128 characters of letters, digits and . _ : -", "invalid_model")
    return dataclasses.replace(device, assistant=dataclasses.replace(device.assistant, model=asked))


def ws_call_config(settings: Settings, audio_format: str, client_dialect: str = dl.BETA) -> WsCallConfig:
    return WsCallConfig(
        audio_format=audio_format,
        max_call_s=float(settings.max_call_s),
        recycle_after_s=float(settings.upstream_recycle_s) if settings.upstream_recycle_s > 0 else None,
        event_max_bytes=settings.device_event_max_bytes,
        events_per_s=settings.ws_events_per_s,
        bytes_per_s=settings.ws_bytes_per_s,
        send_backlog_bytes=settings.ws_send_backlog_bytes,
        client_dialect=client_dialect,
        heartbeat_s=settings.ws_heartbeat_s,
        upstream_slow_notice_s=settings.upstream_slow_notice_s,
    )


async def get_realtime_ws(request: web.Request) -> web.StreamResponse:
    plane = request.app[MEDIA]
    settings = plane.settings
    ws = web.WebSocketResponse(max_msg_size=settings.device_event_max_bytes * HARD_FRAME_FACTOR,
                               heartbeat=settings.ws_heartbeat_s, autoping=True, compress=False, timeout=2.0)
    if not ws.can_prepare(request).ok:
        raise ApiError(426, "GET /v1/realtime is a WebSocket endpoint: send an Upgrade: websocket request "
                            "(WebRTC devices POST their SDP offer instead)", "websocket_required",
                       headers={"Upgrade": "websocket"})
    audio_format = request.query.get("audio_format", "pcm16")
    if audio_format not in AUDIO_FORMATS:
        raise ApiError(400, f"audio_format must be one of {', '.join(sorted(AUDIO_FORMATS))}", "invalid_audio_format")
    asked_dialect(request)
    device, token_dialect = await authenticate_token(request)
    device = with_requested_model(request, device)
    client_dialect = handshake_dialect(request, token_dialect)
    if audio_format != "pcm16" and not device.assistant.allow_g711:
        raise ApiError(400, "This assistant does not allow G.711 audio", "invalid_audio_format")
    if plane.worker is not None and not plane.registry.draining and not arrived_from_sibling(request):
        # only when full: a relayed WebSocket call costs this worker CPU per frame, so no balancing hand-off
        target = choose_sibling(plane.registry.load, plane.registry.max_calls, plane.worker.siblings(),
                                margin=plane.registry.max_calls + 1)
        if target is not None:  # full here: the sibling with the most room runs it
            def handed() -> None:
                plane.metrics.calls_handed_off += 1

            proxied = await plane.siblings.proxy_websocket(target, request, remote_address(request), ws, handed)
            if proxied is not None:
                return proxied
    call_id = "call_" + uuid.uuid4().hex
    await admit(plane, device, call_id, holder="token", edge="websocket")
    try:
        ws.headers["X-Session-Id"] = call_id
        await ws.prepare(request)
        call = WsCall(call_id=call_id, device=device, ws=ws, config=ws_call_config(settings, audio_format, client_dialect),
                      upstream_factory=plane.open_upstream, tool_runner=plane.run_tool,
                      usage_recorder=plane.record_usage, on_finished=plane.call_finished,
                      transport=request.transport, metrics=plane.metrics)
    except BaseException:
        plane.unadmit(device.client_id, call_id)
        raise
    plane.registry.add(call)
    await call.run()
    return ws


def setup(app: web.Application) -> None:
    app.router.add_get("/v1/realtime", get_realtime_ws, allow_head=False)
