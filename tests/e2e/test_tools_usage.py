"""A stored assistant with a server-side tool (a webhook on 127.0.0.1, private webhooks allowed),
a TOFU-enrolled client, and the call's usage recorded in the store when it ends."""

from __future__ import annotations

import asyncio

from aiohttp import web

from relay.store import assistants, clients, usage, workspaces
from relay.web import keys


async def wait_until(predicate, timeout_s: float = 15.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 -- polling state that has no event
            await asyncio.sleep(0.02)


async def start_webhook(received: list[dict]):
    async def hook(request: web.Request) -> web.Response:
        body = await request.json()
        received.append(body)
        return web.json_response({"temperature_c": 21, "city": body["arguments"].get("city")})

    app = web.Application()
    app.router.add_post("/weather", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}/weather"


async def test_server_tool_round_trip_and_usage_recorded(relay_factory):
    relay = await relay_factory(demo_mode=False, tool_allow_private=True)
    db = relay.app[keys.DB]
    received: list[dict] = []
    runner, url = await start_webhook(received)
    try:
        ws, _ = await workspaces.create(db, "tools")
        assistant = await assistants.create(db, ws.id, "weather", tools=[{
            "name": "get_weather", "side": "server", "webhook_url": url,
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}])
        client = await clients.create(db, ws.id, assistant_id=assistant.id)
        events: list[dict] = []
        device = relay.device(demo=False)
        device.client_id = client.id
        await device.connect(on_event=events.append)
        call = relay.plane.registry.calls()[0]
        device.send_text('call get_weather {"city": "Lisbon"}')
        await wait_until(lambda: [e["type"] for e in events].count("response.done") >= 2)
        await device.hangup()
        await call.wait_closed()
    finally:
        await runner.cleanup()
    # relay ran the webhook itself; the device never saw a client-side call to answer
    assert received and received[0]["name"] == "get_weather" and received[0]["arguments"] == {"city": "Lisbon"}
    # the model got the result: the local assistant's next response quotes the tool's output
    transcripts = [e.get("transcript", "") for e in events if e["type"] == "response.audio_transcript.done"]
    assert any("The tool returned" in t and "21" in t and "Lisbon" in t for t in transcripts), transcripts
    rows = await usage.list_usage(db, client_id=client.id)
    assert len(rows) == 1
    row = rows[0]
    assert row.session_id == call.id and row.assistant_id == assistant.id and not row.demo
    assert row.ended_at >= row.started_at and row.output_tokens > 0 and row.input_tokens > 0


async def test_server_tool_on_a_private_address_is_refused_by_default(relay_factory):
    relay = await relay_factory(demo_mode=False, tool_allow_private=False)
    db = relay.app[keys.DB]
    received: list[dict] = []
    runner, url = await start_webhook(received)
    try:
        ws, _ = await workspaces.create(db, "tools")
        assistant = await assistants.create(db, ws.id, "weather", tools=[{
            "name": "get_weather", "side": "server", "webhook_url": url}])
        client = await clients.create(db, ws.id, assistant_id=assistant.id)
        events: list[dict] = []
        device = relay.device(demo=False)
        device.client_id = client.id
        await device.connect(on_event=events.append)
        device.send_text('call get_weather {"city": "Oslo"}')
        await wait_until(lambda: [e["type"] for e in events].count("response.done") >= 2)
        await device.hangup()
    finally:
        await runner.cleanup()
    assert received == []  # refused before any connection; the model got an error output instead
    transcripts = [e.get("transcript", "") for e in events if e["type"] == "response.audio_transcript.done"]
    assert any("refused" in t for t in transcripts), transcripts
    await relay.wait_idle()


async def test_stored_local_assistant_starts_the_built_in_one_on_demand(relay_factory, tmp_path):
    """The operator's default is a third-party upstream (unreachable here); a workspace's assistant is
    the built-in local one, started on its first call."""
    relay = await relay_factory(demo_mode=False, upstream_url="ws://127.0.0.1:9/v1/realtime",
                                upstream_provider="compatible")
    assert relay.plane.local_assistant_url == ""
    db = relay.app[keys.DB]
    ws, _ = await workspaces.create(db, "local")
    assistant = await assistants.create(db, ws.id, "echo", provider="local")
    client = await clients.create(db, ws.id, assistant_id=assistant.id)
    events: list[dict] = []
    device = relay.device(demo=False)
    device.client_id = client.id
    await device.connect(on_event=events.append)
    device.send_text("hello")
    await wait_until(lambda: any(e["type"] == "response.done" for e in events))
    await device.hangup()
    assert relay.plane.local_assistant_url.startswith("ws://127.0.0.1:")
    await relay.wait_idle()


async def test_usage_recorded_on_postgresql(relay_factory, pg_database_url):
    relay = await relay_factory(database_url=pg_database_url)
    db = relay.app[keys.DB]
    assert db.dialect == "postgresql"
    events: list[dict] = []
    device = relay.device()
    await device.connect(on_event=events.append)
    call = relay.plane.registry.calls()[0]
    device.send_text("hello")
    await wait_until(lambda: any(e["type"] == "response.done" for e in events))
    await device.hangup()
    await call.wait_closed()
    rows = await usage.list_usage(db, client_id=device.client_id)
    assert len(rows) == 1 and rows[0].demo and rows[0].session_id == call.id and rows[0].output_tokens > 0
    await relay.wait_idle()
