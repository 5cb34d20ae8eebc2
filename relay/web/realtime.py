"""``POST /v1/realtime``: the device's SDP offer in, relay's SDP answer out (seeds 000, 001), and
``GET /v1/realtime/stats``.

Thin HTTP edge: check the content type and size, authenticate (same headers as
``/v1/realtime/sessions``), parse the offer and pick the codec, admit the call
into the worker's registry, answer. Every failure is a 4xx/5xx in the Realtime device API's
error shape, and no peer is left half-open (``Call.start`` closes it on error).

The worker's services are ``relay.media.plane.MediaPlane`` (the call plane both edges share plus the
WebRTC edge's clock and ICE port), built by ``setup(app)`` under ``app[MEDIA]``, started and stopped
with the app (cleanup_ctx); shutdown drains live calls (``shutdown_timeout_s``) first.
``admit`` maps the plane's admission errors to the documented 503/429 (both edges' handlers).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from relay.call.plane import (
    CallLimitReached,
    CallPlane,
    CapReached,
    ClientCallLimitReached,
    FleetUnavailable,
    HalfOpenLimitReached,
)
from relay.media import ice
from relay.media.codecs import OfferError, choose_audio_codec, opus_max_playback_hz, opus_wants_fec, parse_offer
from relay.media.plane import MediaPlane
from relay.node.handoff import arrived_from_sibling
from relay.node.state import choose_sibling
from relay.web import keys
from relay.web.authn import authenticate, require_operator_bearer
from relay.web.errors import ApiError
from relay.web.middleware import remote_address
from relay.web.openapi import DEVICE_HEADERS
from relay.web.sessions import server_timing

SDP_CONTENT_TYPE = "application/sdp"

_E = {c: {"$ref": f"#/components/responses/E{c}"} for c in (400, 401, 403, 404, 413, 415, 429, 500, 503)}
_LATENCY = {"type": "object", "properties": {"count": {"type": "integer"}, "p50_ms": {"type": ["number", "null"]},
                                             "p99_ms": {"type": ["number", "null"]},
                                             "max_ms": {"type": ["number", "null"]}}}
OPENAPI = {"paths": {
    "/v1/realtime": {"post": {
        "summary": "WebRTC SDP exchange: the device's complete (non-trickle) offer in, relay's answer out (the Realtime device API)",
        "tags": ["realtime"],
        "parameters": DEVICE_HEADERS,
        "requestBody": {"required": True, "content": {SDP_CONTENT_TYPE: {"schema": {"type": "string"}}}},
        "responses": {
            "201": {"description": "The SDP answer", "headers": {"X-Session-Id": {"schema": {"type": "string"}},
                                                      "Server-Timing": {"schema": {"type": "string"}}},
                    "content": {SDP_CONTENT_TYPE: {"schema": {"type": "string"}}}},
            **{str(c): _E[c] for c in (400, 401, 403, 404, 413, 415, 429, 500, 503)}}}},
    "/v1/realtime/stats": {"get": {
        "summary": "This worker's media-plane counters and latency percentiles (admin token)",
        "tags": ["ops"], "security": [{"AdminToken": []}],
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {
            "type": "object", "properties": {"live_calls": {"type": "integer"}, "max_calls": {"type": "integer"},
                                             "uplink_latency": _LATENCY, "downlink_latency": _LATENCY},
            "additionalProperties": True}}}},
            "401": _E[401], "404": _E[404]}}},
}}


MEDIA = web.AppKey("media", MediaPlane)


async def _read_offer(request: web.Request, max_bytes: int) -> str:
    if request.content_length is not None and request.content_length > max_bytes:
        raise ApiError(413, f"SDP offer larger than {max_bytes} bytes", "request_too_large")
    body = bytearray()
    async for chunk in request.content.iter_chunked(16 * 1024):
        body += chunk
        if len(body) > max_bytes:
            raise ApiError(413, f"SDP offer larger than {max_bytes} bytes", "request_too_large")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "SDP offer is not valid UTF-8", "invalid_sdp") from None


async def post_realtime(request: web.Request) -> web.Response:
    plane = request.app[MEDIA]
    settings = plane.settings
    if request.content_type != SDP_CONTENT_TYPE:
        raise ApiError(415, f"Content-Type must be {SDP_CONTENT_TYPE}", "unsupported_media_type")
    if plane.worker is not None and not plane.registry.draining and not arrived_from_sibling(request):
        target = choose_sibling(plane.registry.load, plane.registry.max_calls, plane.worker.siblings())
        if target is not None:  # full here, or a sibling carries clearly fewer calls: it answers
            offer = await _read_offer(request, settings.max_sdp_bytes)
            handed = await plane.siblings.forward(target, request, offer.encode(), remote_address(request))
            if handed is not None:
                plane.metrics.calls_handed_off += 1
                return handed
            request["relay_offer"] = offer
    t0 = time.perf_counter()
    device = await authenticate(request)
    t1 = time.perf_counter()
    offer = request.get("relay_offer") or await _read_offer(request, settings.max_sdp_bytes)
    try:
        desc = parse_offer(offer)
        codec = choose_audio_codec(desc, allow_g711=device.assistant.allow_g711)
    except OfferError as exc:
        raise ApiError(400, str(exc), exc.code) from None
    client_id = device.client_id
    address = remote_address(request)  # half-open calls are bounded per address (relay/call/registry.py)
    call_id = "call_" + uuid.uuid4().hex
    await admit(plane, device, call_id, holder="client", edge="webrtc", address=address)
    try:
        call = plane.new_call(call_id, device, codec, opus_max_playback_hz(desc), opus_wants_fec(desc))
        t2 = time.perf_counter()
        answer = await call.start(offer)
        t3 = time.perf_counter()
    except OfferError as exc:
        plane.unadmit(client_id, call_id, address)
        raise ApiError(400, str(exc), exc.code) from None
    except ice.NoFreePort:
        plane.unadmit(client_id, call_id, address)
        plane.metrics.calls_rejected += 1
        raise ApiError(503, "No free media port on this server; try again shortly", "capacity_exceeded",
                       headers={"Retry-After": "1"}) from None
    except BaseException:
        plane.unadmit(client_id, call_id, address)
        raise
    plane.registry.add(call, address)
    return web.Response(status=201, text=answer, content_type=SDP_CONTENT_TYPE,
                        headers={"X-Session-Id": call_id, "Server-Timing": server_timing(auth=t1 - t0, answer=t3 - t2)})


async def admit(plane: CallPlane, device: Any, call_id: str, *, holder: str, edge: str,
                address: str | None = None) -> None:
    """Take a registry slot for the device's client (a WebRTC offer gives its ``address``: half-open until
    connected) and its row in the fleet's registry, or raise the documented 503 / 429. On success the
    caller owns the slot: ``plane.registry.add`` it, or ``plane.unadmit`` it."""
    settings = plane.settings
    try:
        plane.admit(device.client_id, address)
    except HalfOpenLimitReached as exc:
        if exc.per_address:
            raise ApiError(429, "Too many calls from this address have not connected yet; connect them first",
                           "too_many_pending_calls", headers={"Retry-After": "5"}) from None
        raise ApiError(503, "This server has too many calls still connecting; try again shortly",
                       "capacity_exceeded", headers={"Retry-After": "1"}) from None
    except CallLimitReached:
        raise ApiError(503, "This server is at its call limit; try again shortly", "capacity_exceeded",
                       headers={"Retry-After": "1"}) from None
    except ClientCallLimitReached:
        raise ApiError(429, f"This {holder} already has {settings.max_calls_per_client} live calls",
                       "too_many_calls", headers={"Retry-After": "5"}) from None
    try:
        await plane.admit_fleet(call_id, device, edge)
    except BaseException as exc:
        plane.unadmit(device.client_id, address=address)
        if isinstance(exc, CapReached):
            which, cap = (("client", settings.max_calls_per_client) if exc.which == "client"
                          else ("workspace", settings.max_calls_per_workspace))
            raise ApiError(429, f"This {which} already has {cap} live calls", "too_many_calls",
                           headers={"Retry-After": "5"}) from None
        if isinstance(exc, FleetUnavailable):
            raise ApiError(503, "The call registry is unavailable; try again shortly", "unavailable",
                           headers={"Retry-After": "2"}) from None
        raise


async def get_stats(request: web.Request) -> web.Response:
    """``GET /v1/realtime/stats``: this worker's media counters and latency percentiles (admin token)."""
    plane = request.app[MEDIA]
    await require_operator_bearer(request, plane.settings.admin_token, code="invalid_admin_token",
                            message="A valid admin bearer token is required", realm="relay-admin")
    body = {"live_calls": len(plane.registry), "max_calls": plane.registry.max_calls,
            "clock_ticks": plane.clock.ticks, **plane.metrics.snapshot()}
    return web.json_response(body)


async def _plane_ctx(app: web.Application) -> AsyncIterator[None]:
    plane = app[MEDIA]
    try:
        await plane.start(app.get(keys.DB))
        yield
    finally:
        await plane.close()


async def _drain_on_shutdown(app: web.Application) -> None:
    plane = app.get(MEDIA)
    if plane is not None:
        await plane.drain()


def setup(app: web.Application) -> None:
    # the one place the media plane learns its worker (index, count): relay serve --workers N
    app[MEDIA] = MediaPlane(app[keys.SETTINGS], worker=app.get(keys.WORKER))
    app.cleanup_ctx.append(_plane_ctx)
    app.on_shutdown.append(_drain_on_shutdown)
    app.router.add_post("/v1/realtime", post_realtime)
    app.router.add_get("/v1/realtime/stats", get_stats)
