"""``GET /metrics``: this worker's metrics in the Prometheus text exposition format (0.0.4).

Protected like the admin API: ``Authorization: Bearer <metrics_token>`` (or the
admin token when ``metrics_token`` is empty), compared in constant time; failed
tokens count against the caller's address in the operators' budget of the
failed-secret throttle, fleet-wide with a database (429; ``relay.web.authn``). With
neither token configured the route answers 404, as if it did not exist.

Nothing is counted here: the scrape reads the counters where they are already
kept -- the media plane's ``MediaMetrics`` (one source of truth with
``GET /v1/realtime/stats``, latency histograms included), the media clock, the
call registry, the HTTP/auth counters of ``relay.ops.counters`` (``app[OPS]``,
created here), the TTS pool -- and ``/proc/self`` for the process. Rendering is
O(metrics), done per scrape; nothing on the per-frame path changes.

``setup`` also adds one inner middleware that counts ``POST /v1/realtime``
errors by code (``relay_call_setup_failures_total``) into ``MediaMetrics``.
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Iterable

from aiohttp import web

import relay
from relay.call.metrics import LATENCY_BUCKETS_S, MediaMetrics, bump
from relay.node.handoff import arrived_from_sibling
from relay.ops.counters import OPS, OpsCounters
from relay.ops.exposition import CONTENT_TYPE, Exposition
from relay.ops.process import read_process_stats
from relay.web import keys
from relay.web.authn import require_operator_bearer
from relay.web.errors import ApiError
from relay.web.middleware import Handler

log = logging.getLogger("relay.ops")

SETUP_PATH = "/v1/realtime"
# setup failures that are load shedding, shown again in relay_throttled_requests_total{reason}
_SHED_CODES = {"capacity_exceeded": "call_capacity", "too_many_calls": "calls_per_client",
               "too_many_pending_calls": "pending_calls_per_address"}

OPENAPI = {
    "paths": {"/metrics": {"get": {
        "summary": "This node's metrics (every worker's, labelled worker) in the Prometheus text exposition format 0.0.4 "
                   "(bearer: metrics_token, or the admin token when it is empty; 404 when neither is set)",
        "tags": ["ops"], "security": [{"MetricsToken": []}],
        "responses": {
            "200": {"description": "Prometheus text exposition",
                    "content": {"text/plain": {"schema": {"type": "string"}}}},
            "401": {"$ref": "#/components/responses/E401"},
            "404": {"$ref": "#/components/responses/E404"},
            "429": {"$ref": "#/components/responses/E429"}}}}},
    "components": {"securitySchemes": {
        "MetricsToken": {"type": "http", "scheme": "bearer",
                         "description": "RELAY_METRICS_TOKEN (or RELAY_ADMIN_TOKEN when that is empty)"}}},
}


async def _check_token(request: web.Request) -> None:
    settings = request.app[keys.SETTINGS]  # the admin API's per-address budget: no extra guesses here
    await require_operator_bearer(request, settings.metrics_token or settings.admin_token, code="invalid_metrics_token",
                            message="A valid metrics bearer token is required", realm="relay-metrics")


async def get_metrics(request: web.Request) -> web.Response:
    await _check_token(request)
    worker = request.app.get(keys.WORKER)
    if worker is None or arrived_from_sibling(request):  # one worker, or a sibling asking for this one's own
        return web.Response(body=render(request.app), headers={"Content-Type": CONTENT_TYPE})
    return web.Response(body=await _node_metrics(request, worker), headers={"Content-Type": CONTENT_TYPE})


async def _node_metrics(request: web.Request, worker) -> bytes:  # type: ignore[no-untyped-def]
    """Every worker's exposition, merged and labelled by worker (relay.node.metrics)."""
    import asyncio

    from relay.node.metrics import merge
    from relay.web.realtime import MEDIA

    siblings = request.app[MEDIA].siblings
    auth = {"Authorization": request.headers.get("Authorization", "")}
    others = [r.index for r in worker.siblings()]
    texts = await asyncio.gather(*(siblings.text(i, "/metrics", auth) for i in others))
    parts = [(worker.index, render(request.app).decode())]
    parts += [(i, t) for i, t in zip(others, texts, strict=True) if t is not None]
    return merge(sorted(parts), workers=worker.count, restarts=worker.node.restarts).encode()


def _by(label: str, counts: dict[str, int]) -> Iterable[tuple[dict[str, str], int]]:
    return (({label: key}, n) for key, n in sorted(counts.items()))


def _fast_compiled() -> bool:
    from relay import _fast

    return bool(_fast.COMPILED)


def render(app: web.Application) -> bytes:
    """The whole exposition of this worker, from the counters already kept."""
    from relay.web.realtime import MEDIA

    out = Exposition()
    out.gauge("relay_build_info", "relay's version, whether the Cython kernels are compiled, Python version",
              1, {"version": relay.__version__, "fast": "true" if _fast_compiled() else "false",
                  "python": platform.python_version()})

    plane = app.get(MEDIA)
    media = plane.metrics if plane is not None else MediaMetrics()
    registry = plane.registry if plane is not None else None
    clock = plane.clock if plane is not None else None
    out.gauge("relay_live_calls", "Live calls on this worker (WebRTC and WebSocket edge)", len(registry) if registry is not None else 0)
    out.gauge("relay_max_calls", "Live-call limit of this worker (max_calls)",
              registry.max_calls if registry is not None else 0)
    out.counter("relay_calls_started_total", "Calls answered and started", media.calls_started)
    out.counter("relay_calls_handed_off_total",
                "New calls this worker passed to a sibling worker with room (relay serve --workers N)",
                media.calls_handed_off)
    out.labelled("relay_calls_ended_total", "counter", "Calls ended, by end reason",
                 _by("reason", media.calls_ended_by_reason))
    out.labelled("relay_call_setup_failures_total", "counter",
                 "POST /v1/realtime answered with an error, by error code", _by("code", media.setup_failures))
    out.labelled("relay_dtls_failures_total", "counter",
                 "DTLS handshakes with devices that failed, by the TLS alert sent or received (or detail)",
                 _by("reason", media.dtls_failures))
    out.counter("relay_dtls_first_flight_resends_total",
                "ClientHellos relay sent again before OpenSSL's 1 s retransmit (no answer from the device yet)",
                media.dtls_first_flight_resends)

    for name, samples, what in (("relay_call_setup_seconds", media.setup_latency,
                                 "POST /v1/realtime answered with an SDP answer: request in -> answer ready"),
                                ("relay_uplink_latency_seconds", media.uplink_latency,
                                 "RTP packet handed to relay -> its audio sent upstream (input_audio_buffer.append)"),
                                ("relay_downlink_latency_seconds", media.downlink_latency,
                                 "First upstream audio delta after silence -> its first frame handed to RTP")):
        out.histogram(name, what, LATENCY_BUCKETS_S, samples.bucket_counts, samples.sum_s)

    out.counter("relay_media_clock_ticks_total", "Ticks of the per-worker 20 ms media clock",
                clock.ticks if clock is not None else 0)
    out.counter("relay_media_clock_late_ticks_total",
                "Clock ticks run a ptime or more behind schedule (catching up an event-loop stall)",
                media.clock_late_ticks)
    out.counter("relay_media_clock_stalls_total", "Times the media clock fell behind and caught up tick by tick",
                media.clock_stalls)
    out.counter("relay_media_clock_skipped_ticks_total",
                "Ticks skipped after stalls longer than the catch-up limit (500 ms)", media.clock_overruns)
    if media.opus_complexity >= 0:
        out.gauge("relay_opus_complexity", "The worker's downlink Opus encoder complexity now (lowered by opus_adaptive "
                  "while the media clock is overloaded)", media.opus_complexity)
    out.labelled("relay_opus_complexity_steps_total", "counter",
                 "Steps of the load-adaptive downlink Opus complexity, by direction (down, up)",
                 _by("direction", media.opus_complexity_steps))
    out.gauge("relay_media_clock_load", "Mean load of the media clock's ticks over the last second: how far into "
              "its 20 ms period a tick finished (1: the next tick starts late)",
              media.clock_load)
    out.gauge("relay_media_clock_listeners", "Calls registered on the media clock",
              clock.listener_count if clock is not None else 0)

    mux = plane.mux if plane is not None else None
    port = mux.stats() if mux is not None else {}
    out.gauge("relay_ice_port_routes", "ICE connections on this worker's one UDP port (ice_mux)", port.get("routes", 0))
    out.labelled("relay_ice_port_dropped_total", "counter",
                 "Datagrams the worker's ICE port dropped, by reason (unknown source / ufrag / transaction, "
                 "bad MESSAGE-INTEGRITY)",
                 _by("reason", {k[len("dropped_"):]: v for k, v in port.items() if k.startswith("dropped_")}))
    out.counter("relay_ice_port_rebinds_total", "Calls moved to a device's new address (NAT rebinding)",
                port.get("rebinds", 0))
    out.counter("relay_ice_port_media_datagrams_sent_total",
                "SRTP datagrams (downlink audio of every call) the worker's ICE port sent from its media send queue",
                port.get("media_datagrams_sent", 0))
    out.counter("relay_ice_port_media_send_batches_total",
                "Flushes of the worker's media send queue that had datagrams to send (one sendmmsg each, "
                "more after a partial send)", port.get("media_send_batches", 0))
    out.counter("relay_ice_port_media_send_errors_total",
                "SRTP datagrams the worker's media send queue lost: the socket's send buffer was full (the rest "
                "of that flush) or the kernel refused the datagram (e.g. no route to the device)",
                port.get("media_send_errors", 0))

    out.counter("relay_downlink_frames_total", "20 ms downlink frames pushed to the calls' tracks", media.frames_out)
    out.counter("relay_downlink_frames_silent_total", "Downlink frames of silence", media.frames_out_silent)
    out.counter("relay_downlink_frames_dropped_total",
                "Downlink frames that could not be sent (the call's DTLS/ICE connection was gone)",
                media.frames_out_dropped)
    out.counter("relay_downlink_frames_dtx_skipped_total", "Silent frames not sent (downlink DTX)",
                media.frames_out_dtx)
    out.counter("relay_downlink_frames_trimmed_total",
                "Quiet frames skipped to remove a real-time stream's standing delay (counted when calls end)",
                media.frames_out_trimmed)
    out.counter("relay_upstream_events_invalid_total",
                "Upstream events dropped because a field had the wrong JSON type (WebRTC calls; counted when calls end)",
                media.upstream_events_invalid)
    out.counter("relay_datachannel_events_policy_refused_total",
                "Device events refused whole by the device policy (WebRTC calls; counted when calls end)",
                media.dc_events_policy_refused)
    out.counter("relay_rtp_out_packets_total", "Downlink RTP packets handed to aiortc's senders",
                media.rtp_out_packets)
    out.counter("relay_rtp_in_packets_total", "Uplink RTP packets received (after SRTP)", media.rtp_in_packets)
    out.counter("relay_rtp_in_flood_dropped_total", "Uplink RTP packets dropped by the per-call flood limit",
                media.rtp_in_flood)
    out.counter("relay_rtp_in_lost_packets_total", "Uplink RTP packets never received (sequence gaps)",
                media.rtp_in_lost)
    out.counter("relay_rtp_in_late_packets_total", "Uplink RTP packets arriving late or duplicated (ignored)",
                media.rtp_in_late)
    out.counter("relay_rtp_in_bad_packets_total", "Uplink RTP payloads that failed to decode", media.rtp_in_bad)

    out.counter("relay_datachannel_events_in_total", "Data-channel messages received from devices",
                media.dc_events_in)
    out.counter("relay_datachannel_events_out_total", "Events sent (or queued) to devices on the data channel",
                media.dc_events_out)
    out.counter("relay_datachannel_events_refused_total", "Device messages refused by the per-call event rate",
                media.dc_events_refused)
    out.counter("relay_datachannel_messages_too_large_total",
                "Device data-channel messages refused while reassembling (over a=max-message-size)",
                media.dc_messages_too_large)
    out.counter("relay_datachannel_events_dropped_total",
                "Events to devices dropped (backlog, channel closing, larger than the device accepts)",
                media.dc_events_dropped)

    out.counter("relay_upstream_connect_failures_total", "Upstream Realtime WebSocket connects that failed",
                media.upstream_connect_failures)
    out.counter("relay_upstream_recycles_total", "Upstream sessions replaced on a live call (upstream_recycle_s)",
                media.upstream_recycles)
    out.counter("relay_upstream_recycle_failures_total", "Upstream session replacements that failed",
                media.upstream_recycle_failures)

    counters = app.get(OPS) or OpsCounters()
    services = _app_services(app)
    throttled = dict(counters.throttled)
    for code, reason in _SHED_CODES.items():
        if media.setup_failures.get(code):
            throttled[reason] = throttled.get(reason, 0) + media.setup_failures[code]
    if services is not None:
        throttled["tts_busy"] = services.pool.rejected
        throttled["tts_per_client"] = services.client_busy_rejections
    out.labelled("relay_auth_failures_total", "counter",
                 "Refused device authentications and operator tokens, by error code", _by("code", counters.auth_failures))
    out.labelled("relay_throttled_requests_total", "counter", "Requests refused by a limit, by reason",
                 _by("reason", throttled))
    out.labelled("relay_http_connections_shed_total", "counter",
                 "HTTP connections closed by a limit (header_timeout, body_timeout, pending_per_address)",
                 _by("reason", counters.http_shed))
    out.labelled("relay_http_requests_total", "counter", "HTTP requests by method, route template and status",
                 (({"method": m, "route": r, "status": s}, n)
                  for (m, r, s), n in sorted(counters.http_requests.items())))

    if services is not None:
        pool = services.pool
        out.gauge("relay_tts_requests_in_flight", "TTS requests holding a slot (running or waiting)", pool.admitted)
        out.gauge("relay_tts_queue_depth", "TTS requests waiting for a worker process",
                  max(0, pool.admitted - pool.workers))
        out.gauge("relay_tts_slots", "TTS slots (workers + queue limit); beyond them 503 TTS_BUSY", pool.capacity)
        out.counter("relay_tts_busy_rejections_total", "TTS requests refused with 503 TTS_BUSY", pool.rejected)

    proc = read_process_stats()
    if proc is not None:
        out.counter("process_cpu_seconds_total", "User and system CPU time of this process, seconds",
                    proc.cpu_seconds)
        out.gauge("process_resident_memory_bytes", "Resident memory of this process, bytes", proc.resident_bytes)
        out.gauge("process_virtual_memory_bytes", "Virtual memory of this process, bytes", proc.virtual_bytes)
        out.gauge("process_max_fds", "Limit of open file descriptors", proc.max_fds)
        if proc.open_fds is not None:
            out.gauge("process_open_fds", "Open file descriptors", proc.open_fds)
        if proc.start_time_s is not None:
            out.gauge("process_start_time_seconds", "Start time of this process, unix seconds", proc.start_time_s)
    return out.render()


def _app_services(app: web.Application):  # type: ignore[no-untyped-def]
    try:
        from relay.web.app_api.common import SERVICES
    except ImportError:  # the app API area is optional
        return None
    return app.get(SERVICES)


@web.middleware
async def count_setup_failures(request: web.Request, handler: Handler) -> web.StreamResponse:
    """``POST /v1/realtime`` errors by code into ``MediaMetrics.setup_failures`` (inner: sees ``ApiError``),
    and the time to an answer of the successful ones into ``MediaMetrics.setup_latency``."""
    if request.method != "POST" or request.path != SETUP_PATH:
        return await handler(request)
    started_s = time.monotonic()
    try:
        response = await handler(request)
    except ApiError as exc:
        _setup_failed(request.app, exc.code)
        raise
    except web.HTTPException as exc:
        if exc.status >= 400:
            _setup_failed(request.app, f"http_{exc.status}")
        raise
    except Exception:
        _setup_failed(request.app, "internal_error")
        raise
    if response.status < 400 and not request.get("relay_handed_off"):  # a sibling counted it
        _setup_answered(request.app, time.monotonic() - started_s)
    return response


def _setup_answered(app: web.Application, seconds: float) -> None:
    from relay.web.realtime import MEDIA

    plane = app.get(MEDIA)
    if plane is not None:
        plane.metrics.setup_latency.add(seconds)


def _setup_failed(app: web.Application, code: str) -> None:
    from relay.web.realtime import MEDIA

    plane = app.get(MEDIA)
    if plane is not None:
        bump(plane.metrics.setup_failures, code)


def setup(app: web.Application) -> None:
    app[OPS] = OpsCounters()
    app.middlewares.append(count_setup_failures)
    app.router.add_get("/metrics", get_metrics)
