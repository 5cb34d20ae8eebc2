"""``POST /v1/realtime``: the device's SDP offer in, relay's SDP answer out (seeds 000, 001).

Thin HTTP edge: check the content type and size, authenticate (same headers as
``/v1/realtime/sessions``), parse the offer and pick the codec, admit the call
into the worker's registry, answer. Every failure is a 4xx/5xx in the Realtime device API's
error shape, and no peer is left half-open (``Call.start`` closes it on error).

``setup(app)`` also owns the media plane's per-worker services (cleanup_ctx):
the media clock, the call registry, the HTTP client session for upstream
sockets and tool webhooks, and the built-in local assistant when some assistant
may use it. Shutdown drains live calls (``shutdown_timeout_s``), then closes.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from relay.bridge import RunServerTool
from relay.media import dtls, ice
from relay.media.call import Call, CallConfig, CallUsage
from relay.media.clock import MediaClock
from relay.media.codecs import OfferError, choose_audio_codec, opus_max_playback_hz, opus_wants_fec, parse_offer
from relay.media.metrics import MediaMetrics
from relay.media.mux import IceMux
from relay.media.registry import CallLimitReached, CallRegistry, ClientCallLimitReached, HalfOpenLimitReached
from relay.node.handoff import Siblings, arrived_from_sibling
from relay.node.state import choose_sibling, port_slice
from relay.settings import Settings, SettingsError
from relay.web import keys
from relay.web.authn import require_operator_bearer
from relay.web.errors import ApiError
from relay.web.middleware import remote_address
from relay.web.openapi import DEVICE_HEADERS
from relay.web.sessions import server_timing
from relay.web.usage_book import final_recorder, usage_ctx

log = logging.getLogger("relay.media")

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


@dataclass
class MediaPlane:
    """The per-worker media services, under ``app[MEDIA]``."""

    settings: Settings
    metrics: MediaMetrics
    clock: MediaClock
    registry: CallRegistry
    ice_udp_port: int = 0  # the worker's one ICE port with settings.ice_mux (worker i of a node: base + i)
    mux: IceMux | None = None  # that port's sockets and routing table; set at startup (needs the loop)
    http: aiohttp.ClientSession | None = None  # upstream sockets; set at startup (needs the running loop)
    tool_http: aiohttp.ClientSession | None = None  # tool webhooks, with the private-address guard
    local_assistant_url: str = ""
    local_assistant_runner: Any = None
    worker: Any = None  # relay.node.state.WorkerSlot under --workers N > 1 (None: the only worker)
    worker_index: int = 0  # this worker's index on the node (0..N-1): e.g. a per-worker UDP port is base + index
    ice_port_range: tuple[int, int] | None = None  # this worker's slice of ice_port_min..ice_port_max
    siblings: Any = None  # relay.node.handoff.Siblings under --workers N > 1
    fleet: Any = None  # relay.node.leases.FleetCalls: the store's live-call registry and caps (set at startup)

    def call_finished(self, call: Any) -> None:
        """A call (either edge) ended: free its worker slot and its row in the fleet's registry."""
        self.registry.remove(call)
        if self.fleet is not None:
            self.fleet.release_soon(call.id)

    async def admit_fleet(self, call_id: str, device: Any, edge: str = "webrtc") -> None:
        """The fleet-wide caps (one database round trip); the documented 429 when one is reached.
        The caller holds a registry slot for ``device.client_id`` and releases it when this raises."""
        if self.fleet is None:
            return
        from relay.store.live_calls import CapReached

        try:
            await self.fleet.admit(call_id, device, edge)
        except CapReached as exc:
            self.metrics.calls_rejected += 1
            holder, cap = (("client", self.settings.max_calls_per_client) if exc.which == "client"
                           else ("workspace", self.settings.max_calls_per_workspace))
            raise ApiError(429, f"This {holder} already has {cap} live calls", "too_many_calls",
                           headers={"Retry-After": "5"}) from None
        except Exception as exc:  # the database does not answer: no call goes unregistered (and uncapped)
            log.warning("live-call admission failed: %s", type(exc).__name__)
            raise ApiError(503, "The call registry is unavailable; try again shortly", "unavailable",
                           headers={"Retry-After": "2"}) from None
    _local_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def local_assistant(self) -> str:
        """The built-in local assistant's URL, starting it on first use (stopped at app cleanup)."""
        async with self._local_lock:
            if not self.local_assistant_url:
                from relay.assistant import start_local_assistant

                self.local_assistant_runner, self.local_assistant_url = await start_local_assistant(
                    "127.0.0.1", 0, session_s=self.settings.local_assistant_session_s)
                log.info("built-in local assistant started at %s", self.local_assistant_url)
            return self.local_assistant_url


MEDIA = web.AppKey("media", MediaPlane)


def call_config(settings: Settings, device: Any, plane: MediaPlane | None = None) -> CallConfig:
    """The call's configuration; with the worker's ``plane``: its slice of the port range and its port mux."""
    if plane is not None:
        ice_port_range = plane.ice_port_range
    else:
        ice_port_range = (settings.ice_port_min, settings.ice_port_max) if settings.ice_port_min else None
    limit_s = min(float(settings.max_call_s), float(getattr(device, "max_call_s", 0) or settings.max_call_s))
    if getattr(device, "demo", False):
        limit_s = min(limit_s, float(settings.demo_max_call_s))
    return CallConfig(
        uplink_chunk_ms=settings.uplink_chunk_ms,
        opus_complexity=settings.opus_complexity,
        playout_trim_above_ms=settings.playout_trim_above_ms,
        opus_bitrate_bps=settings.opus_bitrate_bps,
        dc_queue_max=settings.datachannel_queue_max,
        dc_max_buffered_bytes=settings.datachannel_max_buffered_bytes,
        device_events_per_s=settings.device_events_per_s,
        ice_public_ip=settings.ice_public_ip,
        ice_port_range=ice_port_range,
        ice_mux=plane.mux if plane is not None else None,
        dtx=settings.downlink_dtx,
        ice_connect_timeout_s=settings.ice_connect_timeout_s,
        max_call_s=limit_s,
        recycle_after_s=float(settings.upstream_recycle_s) if settings.upstream_recycle_s > 0 else None,
        device_event_max_bytes=settings.device_event_max_bytes,
        upstream_slow_notice_s=settings.upstream_slow_notice_s,
        device_liveness_timeout_s=settings.device_liveness_timeout_s,
    )


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
    from relay.web.authn import authenticate

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
    address = remote_address(request)  # half-open calls are bounded per address (relay/media/registry.py)
    admit_call(plane, client_id, settings.max_calls_per_client, holder="client", address=address)
    call_id = "call_" + uuid.uuid4().hex
    try:
        await plane.admit_fleet(call_id, device)
    except BaseException:
        plane.registry.release(client_id, address)
        raise
    try:
        call = _new_call(request.app, plane, call_id, device, codec, opus_max_playback_hz(desc), opus_wants_fec(desc))
        t2 = time.perf_counter()
        answer = await call.start(offer)
        t3 = time.perf_counter()
    except OfferError as exc:
        _unadmit(plane, client_id, call_id, address)
        raise ApiError(400, str(exc), exc.code) from None
    except ice.NoFreePort:
        _unadmit(plane, client_id, call_id, address)
        plane.metrics.calls_rejected += 1
        raise ApiError(503, "No free media port on this server; try again shortly", "capacity_exceeded",
                       headers={"Retry-After": "1"}) from None
    except BaseException:
        _unadmit(plane, client_id, call_id, address)
        raise
    plane.registry.add(call, address)
    return web.Response(status=201, text=answer, content_type=SDP_CONTENT_TYPE,
                        headers={"X-Session-Id": call_id, "Server-Timing": server_timing(auth=t1 - t0, answer=t3 - t2)})


def _unadmit(plane: MediaPlane, client_id: str, call_id: str, address: str | None = None) -> None:
    plane.registry.release(client_id, address)
    if plane.fleet is not None:
        plane.fleet.release_soon(call_id)


def upstream_factory(plane: MediaPlane) -> Callable[[Any, str], Awaitable[Any]]:
    """Opens a call's upstream socket over the plane's HTTP session (also used by the WebSocket edge)."""
    settings = plane.settings

    async def factory(assistant: Any, log_id: str) -> Any:
        from relay.upstream.client import UpstreamClient, connect_request

        local_url = ""
        if assistant.provider == "local" and not assistant.upstream_url:
            local_url = await plane.local_assistant()
        request = connect_request(assistant, local_url=local_url)
        assert plane.http is not None
        return UpstreamClient(plane.http, request, connect_timeout_s=settings.upstream_connect_timeout_s,
                              send_queue_max=settings.upstream_send_queue_max, log_id=log_id,
                              heartbeat_s=settings.upstream_heartbeat_s)

    return factory


def tool_runner(plane: MediaPlane) -> Callable[[RunServerTool], Awaitable[str]]:
    """Runs a server-side tool's webhook (also used by the WebSocket edge)."""
    settings = plane.settings

    async def run(action: RunServerTool) -> str:
        from relay.bridge.tools import run_webhook_tool

        assert plane.tool_http is not None
        return await run_webhook_tool(
            plane.tool_http, action.webhook_url, name=action.name, call_id=action.call_id,
            arguments=action.arguments, timeout_s=settings.tool_timeout_s,
            max_response_bytes=settings.tool_max_response_bytes, allow_private=settings.tool_allow_private)

    return run


def usage_recorder(app: web.Application, device: Any) -> Callable[[Any, CallUsage], Awaitable[None]]:
    """Records a finished call's usage row (also used by the WebSocket edge; checkpoints: relay.web.usage_book)."""
    return final_recorder(app)


def _new_call(app: web.Application, plane: MediaPlane, call_id: str, device: Any, codec: Any,
              max_playback_hz: int | None = None, downlink_fec: bool = False) -> Call:
    return Call(call_id=call_id, device=device, codec=codec, config=call_config(plane.settings, device, plane),
                metrics=plane.metrics, clock=plane.clock, upstream_factory=upstream_factory(plane),
                tool_runner=tool_runner(plane), usage_recorder=usage_recorder(app, device),
                on_finished=plane.call_finished, on_connected=plane.registry.connected,
                max_playback_hz=max_playback_hz, downlink_fec=downlink_fec)


def _needs_local_assistant(settings: Settings) -> bool:
    """The default assistant is the built-in local one when no upstream URL is configured."""
    return not settings.upstream_url



def admit_call(plane: MediaPlane, client_id: str, max_per_client: int, *, holder: str,
               address: str | None = None) -> None:
    """Take a registry slot for ``client_id`` (both edges; a WebRTC offer gives its ``address``: half-open
    until connected), or raise the documented 503 / 429."""
    try:
        plane.registry.admit(client_id, address)
    except HalfOpenLimitReached as exc:
        plane.metrics.calls_rejected += 1
        if exc.per_address:
            raise ApiError(429, "Too many calls from this address have not connected yet; connect them first",
                           "too_many_pending_calls", headers={"Retry-After": "5"}) from None
        raise ApiError(503, "This server has too many calls still connecting; try again shortly",
                       "capacity_exceeded", headers={"Retry-After": "1"}) from None
    except CallLimitReached:
        plane.metrics.calls_rejected += 1
        raise ApiError(503, "This server is at its call limit; try again shortly", "capacity_exceeded",
                       headers={"Retry-After": "1"}) from None
    except ClientCallLimitReached:
        plane.metrics.calls_rejected += 1
        raise ApiError(429, f"This {holder} already has {max_per_client} live calls",
                       "too_many_calls", headers={"Retry-After": "5"}) from None

async def media_plane_ctx(app: web.Application) -> AsyncIterator[None]:
    plane = app[MEDIA]
    settings = plane.settings
    ice.configure_host_addresses(settings.ice_host_addresses)
    dtls.configure(settings.dtls_cert_rotate_s)  # this worker's DTLS certificate (relay/media/dtls.py)
    if settings.ice_mux:
        plane.mux = IceMux(plane.ice_udp_port)
        try:
            await plane.mux.open(ice.gather_addresses())  # fails start-up when the port is taken
        except OSError as exc:
            plane.mux.close()
            raise SettingsError(f"ice_udp_port {plane.ice_udp_port}: cannot bind the worker's ICE UDP port "
                                f"({exc.strerror or exc}); pick a free one") from None
    plane.clock.start()
    from relay.bridge.tools import make_tool_session

    plane.http = aiohttp.ClientSession()
    plane.tool_http = make_tool_session(allow_private=settings.tool_allow_private)
    try:
        await _start_fleet(app, plane)
        if _needs_local_assistant(settings):  # the default assistant: start it now, not on the first call
            await plane.local_assistant()
        yield
    finally:
        await plane.registry.drain(0)
        if plane.fleet is not None:
            await plane.fleet.close()
        if plane.siblings is not None:
            await plane.siblings.close()
        await plane.clock.stop()
        if plane.mux is not None:
            plane.mux.close()
        if plane.local_assistant_runner is not None:
            await plane.local_assistant_runner.cleanup()
        await plane.tool_http.close()
        await plane.http.close()


async def _start_fleet(app: web.Application, plane: MediaPlane) -> None:
    """The store's live-call registry for this worker: caps fleet-wide, leases, operator end requests."""
    db = app.get(keys.DB)
    if db is None:
        return
    from relay.node.leases import END_REASON, FleetCalls
    from relay.store.live_calls import ensure_schema

    await ensure_schema(db)
    settings = plane.settings
    plane.fleet = FleetCalls(db, node=settings.node_name, worker=plane.worker_index,
                             lease_s=settings.call_lease_s, client_cap=settings.max_calls_per_client,
                             workspace_cap=settings.max_calls_per_workspace)

    def end_call(call_id: str) -> None:
        call = plane.registry.get(call_id)
        if call is not None:
            log.info("ending call %s at an operator's request", call_id)
            call.end_with_error(END_REASON, "An operator ended this call.")

    plane.fleet.start(end_call)


async def _drain_on_shutdown(app: web.Application) -> None:
    plane = app.get(MEDIA)
    if plane is not None:
        if plane.worker is not None:
            plane.worker.set_draining()
        await plane.registry.drain(plane.settings.shutdown_timeout_s)


async def get_stats(request: web.Request) -> web.Response:
    """``GET /v1/realtime/stats``: this worker's media counters and latency percentiles (admin token)."""
    plane = request.app[MEDIA]
    require_operator_bearer(request, plane.settings.admin_token, code="invalid_admin_token",
                            message="A valid admin bearer token is required", realm="relay-admin")
    body = {"live_calls": len(plane.registry), "max_calls": plane.registry.max_calls,
            "clock_ticks": plane.clock.ticks, **plane.metrics.snapshot()}
    return web.json_response(body)


def setup(app: web.Application) -> None:
    settings = app[keys.SETTINGS]
    if settings.ice_public_ip:
        try:
            ipaddress.ip_address(settings.ice_public_ip)
        except ValueError:
            raise SettingsError(f"ice_public_ip is not an IP address: {settings.ice_public_ip!r}") from None
    if settings.ice_port_min or settings.ice_port_max:
        if not 0 < settings.ice_port_min <= settings.ice_port_max <= 65535:
            raise SettingsError("ice_port_min/ice_port_max: need 0 < min <= max <= 65535 (or both 0)")
        if settings.ice_mux:
            raise SettingsError("ice_port_min/ice_port_max configure one port per call: set ice_mux = false to use "
                                "them, or ice_udp_port for the worker's one ICE port")
    if not 0 <= settings.ice_udp_port <= 65535:
        raise SettingsError("ice_udp_port: need 0..65535 (0: a free port chosen at start)")
    if not 0 < settings.dtls_cert_rotate_s <= dtls.MAX_ROTATE_S:
        raise SettingsError(f"dtls_cert_rotate_s: need 0 < s <= {dtls.MAX_ROTATE_S:.0f} (certificates last 30 days)")
    metrics = MediaMetrics()
    worker = app.get(keys.WORKER)  # the one place the media plane learns its worker index
    index, count = (worker.index, worker.count) if worker is not None else (0, 1)
    try:
        port_range = port_slice(settings.ice_port_min, settings.ice_port_max, index, count)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    registry = CallRegistry(settings.max_calls, settings.max_calls_per_client,
                            max_half_open=settings.max_half_open_calls,
                            max_half_open_per_address=settings.max_half_open_calls_per_address)
    plane = MediaPlane(settings=settings, metrics=metrics, clock=MediaClock(metrics), registry=registry,
                       worker=worker, worker_index=index, ice_port_range=port_range,
                       # the ICE mux: worker i of a node uses ice_udp_port + i (0: each picks a free port)
                       ice_udp_port=settings.ice_udp_port + index if settings.ice_udp_port else 0)
    if worker is not None:
        registry.on_load = worker.set_load
        plane.siblings = Siblings(worker.node.run_dir, timeout_s=settings.upstream_connect_timeout_s + 10)
    app[MEDIA] = plane
    app.cleanup_ctx.append(usage_ctx(lambda a: a[MEDIA].registry.calls()))
    app.cleanup_ctx.append(media_plane_ctx)
    app.on_shutdown.append(_drain_on_shutdown)
    app.router.add_post("/v1/realtime", post_realtime)
    app.router.add_get("/v1/realtime/stats", get_stats)
