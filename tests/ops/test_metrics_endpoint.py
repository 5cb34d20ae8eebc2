"""GET /metrics: who may scrape it, what it exposes, and that it never carries a secret."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from relay.store import clients, workspaces
from relay.web import keys
from tests.ops.promtext import parse

ADMIN = "admin-" + secrets.token_hex(20)
SCRAPE = "scrape-" + secrets.token_hex(20)

REQUIRED = {
    "relay_build_info": "gauge", "relay_live_calls": "gauge", "relay_calls_started_total": "counter",
    "relay_calls_ended_total": "counter", "relay_call_setup_failures_total": "counter",
    "relay_uplink_latency_seconds": "histogram", "relay_downlink_latency_seconds": "histogram",
    "relay_media_clock_ticks_total": "counter", "relay_media_clock_late_ticks_total": "counter",
    "relay_media_clock_stalls_total": "counter", "relay_media_clock_skipped_ticks_total": "counter",
    "relay_downlink_frames_dropped_total": "counter", "relay_upstream_connect_failures_total": "counter",
    "relay_upstream_recycles_total": "counter", "relay_datachannel_events_in_total": "counter",
    "relay_datachannel_events_out_total": "counter", "relay_rtp_in_packets_total": "counter",
    "relay_rtp_out_packets_total": "counter", "relay_rtp_in_flood_dropped_total": "counter",
    "relay_auth_failures_total": "counter", "relay_throttled_requests_total": "counter",
    "relay_http_requests_total": "counter", "relay_tts_queue_depth": "gauge",
    "relay_tts_busy_rejections_total": "counter", "process_cpu_seconds_total": "counter",
    "process_resident_memory_bytes": "gauge",
}


async def scrape(client, token: str = SCRAPE):
    resp = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = await resp.text()
    return text, parse(text)


async def test_absent_without_any_token(make_app) -> None:
    app = await make_app()
    resp = await app.get("/metrics", headers={"Authorization": "Bearer anything"})
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", f"Basic {SCRAPE}", f"Bearer {ADMIN}", SCRAPE])
async def test_unauthorized_scrapes_are_refused(make_app, header) -> None:
    app = await make_app(admin_token=ADMIN, metrics_token=SCRAPE)
    resp = await app.get("/metrics", headers={"Authorization": header} if header else {})
    body = await resp.json()
    assert resp.status == 401 and body["error"]["code"] == "invalid_metrics_token", body
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert "relay_" not in await resp.text()


async def test_admin_token_scrapes_when_no_metrics_token(make_app) -> None:
    app = await make_app(admin_token=ADMIN)
    _text, fams = await scrape(app, ADMIN)
    assert fams["relay_live_calls"].value() == 0
    resp = await app.get("/metrics", headers={"Authorization": "Bearer " + SCRAPE})
    assert resp.status == 401


async def test_failed_scrapes_are_throttled(make_app) -> None:
    app = await make_app(admin_token=ADMIN, metrics_token=SCRAPE, auth_fail_limit=1)  # 10 per address
    for _ in range(10):
        assert (await app.get("/metrics", headers={"Authorization": "Bearer nope"})).status == 401
    resp = await app.get("/metrics", headers={"Authorization": f"Bearer {SCRAPE}"})
    assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
    fams = parse(_render(app))
    assert fams["relay_auth_failures_total"].value(code="invalid_metrics_token") == 10
    assert fams["relay_throttled_requests_total"].value(reason="admin_address") == 1


def _render(app) -> str:
    from relay.web.metrics import render

    return render(app.server.app).decode()


async def test_exposition_is_strict_and_complete(make_app) -> None:
    app = await make_app(admin_token=ADMIN, metrics_token=SCRAPE)
    _text, fams = await scrape(app)
    for name, kind in REQUIRED.items():
        assert name in fams, name
        assert fams[name].kind == kind, name
    build = fams["relay_build_info"].samples[0][1]
    assert build["version"] and build["fast"] in ("true", "false")
    from relay import _fast

    assert build["fast"] == ("true" if _fast.COMPILED else "false")
    assert fams["process_resident_memory_bytes"].value() > 10 * 2**20
    assert fams["process_cpu_seconds_total"].value() > 0


async def test_http_and_auth_counters_move(make_app) -> None:
    app = await make_app(admin_token=ADMIN, metrics_token=SCRAPE, auth_fail_limit=2)
    db = app.server.app[keys.DB]
    ws, ws_key = await workspaces.create(db, "ops", with_key=True)
    client = await clients.create(db, ws.id)
    good, bad = secrets.token_hex(24), secrets.token_hex(24)
    body = {"modalities": ["text", "audio"]}

    def hdrs(secret: str) -> dict[str, str]:
        return {"X-Client-Id": client.id, "X-Client-Secret": secret, "X-Workspace-Key": ws_key}

    assert (await app.post("/v1/realtime/sessions", json=body, headers=hdrs(good))).status == 200  # enrolled
    for _ in range(2):
        assert (await app.post("/v1/realtime/sessions", json=body, headers=hdrs(bad))).status == 401
    resp = await app.post("/v1/realtime/sessions", json=body, headers=hdrs(bad))
    assert resp.status == 429
    assert (await app.post("/v1/realtime/sessions", json=body, headers={})).status == 400
    assert (await app.get("/admin/v1/clients", headers={"Authorization": "Bearer nope"})).status == 401
    assert (await app.get(f"/admin/v1/clients/{client.id}/usage",
                          headers={"Authorization": f"Bearer {ADMIN}"})).status == 200
    assert (await app.get("/no/such/path")).status == 404

    text, fams = await scrape(app)
    auth = fams["relay_auth_failures_total"].by("code")
    assert auth["invalid_secret"] == 2 and auth["rate_limited"] == 1 and auth["missing_header"] == 1
    assert auth["invalid_admin_token"] == 1
    assert fams["relay_throttled_requests_total"].value(reason="auth_client_id") == 1
    http = fams["relay_http_requests_total"]
    route = "/v1/realtime/sessions"
    assert http.value(method="POST", route=route, status="200") == 1
    assert http.value(method="POST", route=route, status="401") == 2
    assert http.value(method="POST", route=route, status="429") == 1
    assert http.value(method="POST", route=route, status="400") == 1
    # route templates, never concrete ids
    assert http.value(method="GET", route="/admin/v1/clients/{id}/usage", status="200") == 1
    assert http.value(method="GET", route="unmatched", status="404") == 1
    for secret in (good, bad, ws_key, ADMIN, SCRAPE, client.id, "/no/such/path"):
        assert secret not in text


def test_deploy_examples_scrape_metrics() -> None:
    import re
    from pathlib import Path

    deploy = Path(__file__).resolve().parents[2] / "deploy"
    k8s = (deploy / "kubernetes.yaml").read_text()
    assert 'prometheus.io/scrape: "true"' in k8s and "prometheus.io/path: /metrics" in k8s
    port = re.search(r'prometheus.io/port: "(\d+)"', k8s).group(1)
    assert f"containerPort: {port}" in k8s and "RELAY_METRICS_TOKEN:" in k8s
    prom = (deploy / "prometheus.yml").read_text()
    assert "metrics_path: /metrics" in prom and prom.count("credentials_file:") == 2
    assert "type: Bearer" in prom


async def test_tts_queue_and_busy_rejections(make_app) -> None:
    from relay.web.app_api.common import SERVICES

    app = await make_app(metrics_token=SCRAPE, tts_workers=1, tts_queue_limit=1)
    db = app.server.app[keys.DB]
    ws, ws_key = await workspaces.create(db, "tts-ops", with_key=True)
    client = await clients.create(db, ws.id)
    hdrs = {"X-Client-Id": client.id, "X-Client-Secret": secrets.token_hex(24), "X-Workspace-Key": ws_key}
    pool = app.server.app[SERVICES].pool
    async with pool.admit(), pool.admit():  # both slots taken (one running, one waiting)
        _text, fams = await scrape(app)
        assert fams["relay_tts_requests_in_flight"].value() == 2
        assert fams["relay_tts_queue_depth"].value() == 1 and fams["relay_tts_slots"].value() == 2
        # admission comes before any engine work: the design request is refused at once
        resp = await app.post("/v1/app/voices/design", json={"design_prompt": "A calm voice"}, headers=hdrs)
        assert resp.status == 503 and (await resp.json())["detail"]["code"] == "TTS_BUSY"
    _text, fams = await scrape(app)
    assert fams["relay_tts_busy_rejections_total"].value() == 1
    assert fams["relay_throttled_requests_total"].value(reason="tts_busy") == 1
    assert fams["relay_tts_requests_in_flight"].value() == 0
    assert fams["relay_http_requests_total"].value(
        method="POST", route="/v1/app/voices/design", status="503") == 1


async def test_ice_port_drops_are_counted(make_app) -> None:
    """Datagrams from nowhere at the worker's one ICE port: dropped, and counted by reason."""
    import socket

    from aioice import stun

    from relay.web.realtime import MEDIA

    app = await make_app(admin_token=ADMIN, metrics_token=SCRAPE, ice_mux=True)
    mux = app.server.app[MEDIA].mux
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    request.attributes["USERNAME"] = "nope:dev1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(3):
            sock.sendto(b"\x80\x6f" + bytes(40), ("127.0.0.1", mux.port))
        sock.sendto(bytes(request), ("127.0.0.1", mux.port))
        async with asyncio.timeout(5):
            while mux.stats()["dropped_unknown_ufrag"] < 1:  # noqa: ASYNC110 -- polling state that has no event
                await asyncio.sleep(0.01)
    _text, fams = await scrape(app)
    assert fams["relay_ice_port_dropped_total"].value(reason="unknown_source") == 3
    assert fams["relay_ice_port_dropped_total"].value(reason="unknown_ufrag") == 1
    assert fams["relay_ice_port_routes"].value() == 0
