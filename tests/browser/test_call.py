"""End to end in a real browser: the console page calls relay and its local assistant.

Headless Chromium (fake microphone playing espeak-ng speech) runs seed 001's flow from the
console page against a real relay server on 127.0.0.1; the built-in local assistant (echo
mode) is the upstream. Nothing is mocked between the page and the assistant.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json

import aiohttp
import pytest

from relay.settings import Settings
from relay.web.app import create_app
from relay.web.realtime import MEDIA

from .cdp import Browser
from .conftest import ARTIFACTS, Server, start_server

pytestmark = pytest.mark.slow

STATE = "window.__relayConsole.state"
READY = "window.__relayConsole && window.__relayConsole.state.ready"
ACKS = (
    f"{STATE}.transcript.filter(e => e.role === 'assistant' && e.final && e.text.includes('The tool returned')).length"
)


def step_done(name: str) -> str:
    return f"({STATE}.steps[{json.dumps(name)}] || {{}}).status === 'done'"


def live_calls(server: Server) -> int:
    return len(server.app[MEDIA].registry)


async def wait_until(predicate, *, timeout_s: float = 15.0, what: str = "") -> None:  # noqa: ANN001
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() >= deadline:
            raise TimeoutError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.1)


async def state_of(browser: Browser) -> dict:
    return json.loads(await browser.page.evaluate(f"JSON.stringify({STATE})"))


async def test_a_full_call_from_the_console_page(relay_server: Server, browser: Browser) -> None:
    page = browser.page
    await page.send("Emulation.setDeviceMetricsOverride", width=1440, height=1000, deviceScaleFactor=1, mobile=False)
    await page.navigate(relay_server.url + "/?demo=1")
    await page.wait_for(READY)

    # Connect: session, peer, microphone, offer, gathering, SDP exchange (the promise ends there).
    assert await page.evaluate("window.__relayConsole.connect()", timeout_s=60) is True, page.console
    state = await state_of(browser)
    assert state["sessionStatus"] == 200 and state["sessionId"], state
    assert state["sdpStatus"] in (200, 201), state
    assert state["dataChannelLabel"] == "messages"
    for step in ("session", "peer", "mic", "offer", "gather", "sdp"):
        assert state["steps"][step]["status"] == "done", (step, state["steps"])

    # ICE connects over loopback, the data channel opens, and the call is live on the server.
    await page.wait_for(step_done("ice"), timeout_s=20)
    await page.wait_for(step_done("channel"), timeout_s=20)
    await page.wait_for(f"{STATE}.phase === 'live'")
    assert live_calls(relay_server) == 1

    # The fake microphone speaks; the local assistant (echo mode) speaks it back: real energy
    # measured on the remote stream by a WebAudio analyser on the page.
    await page.wait_for(f"{STATE}.micPeak > 0.05", timeout_s=20)
    await page.wait_for(f"{STATE}.remoteEnergyFrames >= 10 && {STATE}.remotePeak > 0.05", timeout_s=45)
    assert (await state_of(browser))["steps"]["audio"]["status"] == "done"

    # Transcript events reach the page and are shown.
    await page.wait_for(
        f"{STATE}.transcript.some(e => e.role === 'assistant' && e.final && e.text.trim().length > 0)", timeout_s=30
    )
    shown = await page.evaluate("document.querySelectorAll('#transcript .bubble.assistant .text').length")
    assert shown >= 1

    # Connection quality from getStats().
    await page.wait_for(f"{STATE}.stats.packetsReceived > 0 && {STATE}.stats.candidateType === 'host'", timeout_s=10)
    stats = (await state_of(browser))["stats"]
    assert stats["rttMs"] >= 0 and stats["jitterMs"] >= 0 and stats["packetsLost"] >= 0

    # A client-side tool, triggered through the text box (the local assistant calls the tool a user
    # text names): the slider moves, the page answers as seed 000 does, and the answer reaches the
    # upstream assistant, which acknowledges it ("The tool returned ...") back on the page.
    await page.evaluate(
        """(() => {
            const input = document.getElementById('text-input');
            input.value = 'call set_device_volume {"volume_level": 30}';
            document.getElementById('text-form').requestSubmit();
        })()"""
    )
    await page.wait_for(f"{STATE}.toolCalls.length >= 1", timeout_s=20)
    state = await state_of(browser)
    tool = state["toolCalls"][0]
    assert tool["name"] == "set_device_volume" and tool["ok"] is True, tool
    assert json.loads(tool["arguments"]) == {"volume_level": 30}
    assert tool["result"] == {"volume_level": 30}
    assert await page.evaluate("document.getElementById('volume').value") == "30"
    assert await page.evaluate("document.getElementById('volume-value').textContent") == "30 %"
    assert await page.evaluate("document.getElementById('remote-audio').volume") == pytest.approx(0.3)
    assert state["sentTypes"][-2:] == ["conversation.item.create", "response.create"]
    ack = await page.wait_for(
        f"""{STATE}.transcript.find(e => e.role === 'assistant' && e.final && e.text.includes('The tool returned'))""",
        timeout_s=30,
    )
    returned = json.loads(ack["text"].split("The tool returned", 1)[1].strip())
    assert returned == {"success": True, "volume_level": 30}

    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(ARTIFACTS / "console-call.png")
    (ARTIFACTS / "console-call-steps.json").write_text(json.dumps((await state_of(browser))["steps"], indent=1))

    # The other three device tools, each answered and acknowledged upstream in turn.
    for text, expected in [
        ('call adjust_device_volume {"action": "increase"}', {"volume_level": 40}),
        ("call quiet_device", {"volume_level": 0, "muted": True}),
        ("call stop_audio", {"stopped": True}),
    ]:
        calls_before = len((await state_of(browser))["toolCalls"])
        acks_before = await page.evaluate(ACKS)
        assert await page.evaluate(f"window.__relayConsole.sendText({json.dumps(text)})") is True
        await page.wait_for(f"{STATE}.toolCalls.length > {calls_before}", timeout_s=20)
        record = (await state_of(browser))["toolCalls"][-1]
        assert record["ok"] is True and record["result"] == expected, (text, record)
        if "volume_level" in expected:
            assert await page.evaluate("document.getElementById('volume').value") == str(expected["volume_level"])
        try:
            await page.wait_for(f"{ACKS} > {acks_before}", timeout_s=30)
        except TimeoutError:
            pytest.fail(f"no acknowledgement of {text!r}; transcript: {(await state_of(browser))['transcript']}")
        last_ack = await page.evaluate(
            f"{STATE}.transcript.filter(e => e.final && e.text.includes('The tool returned')).at(-1).text"
        )
        assert json.loads(last_ack.split("The tool returned", 1)[1]) == {"success": True, **expected}
    device = (await state_of(browser))["device"]
    assert device["volumePercent"] == 0 and device["muted"] is True
    assert await page.evaluate("document.getElementById('remote-audio').muted") is True
    assert await page.evaluate("document.getElementById('mute-state').textContent") == "Muted"

    # The event log: both directions, and the filter narrows it to one type.
    counts = (await state_of(browser))["eventCounts"]
    assert counts["response.output_item.done"] >= 4 and counts["conversation.item.create"] >= 8
    visible = await page.evaluate(
        """(() => {
            const f = document.getElementById('event-filter');
            f.value = 'response.done';
            f.dispatchEvent(new Event('input'));
            return Array.from(document.querySelectorAll('#events li.ev'))
                .filter(li => !li.hidden).map(li => li.dataset.type);
        })()"""
    )
    assert len(visible) >= 5 and set(visible) == {"response.done"}, visible

    # Hang up: the page closes the peer connection and relay releases the call.
    assert await page.evaluate("window.__relayConsole.hangup()") is True
    assert (await state_of(browser))["phase"] == "ended"
    await wait_until(lambda: live_calls(relay_server) == 0, timeout_s=30, what="the server to release the call")
    metrics = relay_server.app[MEDIA].metrics
    assert metrics.calls_started == metrics.calls_ended == 1
    assert not [line for line in page.console if line.startswith("exception")], page.console


async def test_page_from_another_origin_calls_relay_with_cors(
    relay_server: Server, page_server: str, browser: Browser
) -> None:
    """The page served by a different origin talks to relay cross-origin (the seed's fetch)."""
    page = browser.page
    await page.navigate(f"{page_server}/?api={relay_server.url}&demo=1")
    await page.wait_for(READY)
    assert await page.evaluate("window.location.origin") == page_server != relay_server.url
    assert await page.evaluate("document.getElementById('api-base').value") == relay_server.url

    ok = await page.evaluate("window.__relayConsole.connect()", timeout_s=60)
    state = await state_of(browser)
    assert state["sessionStatus"] == 200 and state["sessionId"].startswith("session"), (state, page.console)
    assert ok is True and state["sdpStatus"] in (200, 201), (state, page.console)
    await page.wait_for(step_done("channel"), timeout_s=20)
    assert live_calls(relay_server) == 1
    # Leaving the page ends the call too.
    await page.navigate("about:blank")
    await wait_until(lambda: live_calls(relay_server) == 0, timeout_s=30, what="the server to release the call")


async def test_an_origin_relay_does_not_allow_is_refused_by_the_browser(
    relay_settings: Settings, page_server: str, browser: Browser
) -> None:
    """The same page, but relay allows only another origin: the browser's CORS check stops the call."""
    settings = dataclasses.replace(relay_settings, cors_origins=["http://app.example.invalid"])
    server = await start_server(create_app(settings), settings)
    try:
        page = browser.page
        await page.navigate(f"{page_server}/?api={server.url}&demo=1")
        await page.wait_for(READY)
        assert await page.evaluate("window.__relayConsole.connect()") is False
        state = await state_of(browser)
        assert state["phase"] == "error" and state["sessionStatus"] is None  # the page never saw a response
        assert state["steps"]["session"]["status"] == "failed"
        banner = await page.evaluate("document.getElementById('banner').textContent")
        assert f"Cannot reach the relay at {server.url}" in banner
        assert live_calls(server) == 0
    finally:
        await server.runner.cleanup()


async def test_a_refused_session_is_shown_with_the_relay_error(relay_server: Server, browser: Browser) -> None:
    """An unknown client without demo mode: relay's error (seed 000 shape) is shown, the step fails,
    nothing else starts."""
    page = browser.page
    await page.navigate(relay_server.url + "/")
    await page.wait_for(READY)
    identity = await page.evaluate(
        """(() => {
            document.getElementById('demo-mode').checked = false;
            return {id: document.getElementById('client-id').value,
                    secret: document.getElementById('client-secret').value};
        })()"""
    )
    assert await page.evaluate("window.__relayConsole.connect()") is False
    state = await state_of(browser)
    assert state["phase"] == "error"
    assert state["sessionStatus"] == 404
    assert state["steps"]["session"]["status"] == "failed"
    assert "peer" not in state["steps"]
    banner = await page.evaluate("document.getElementById('banner').textContent")
    assert "Session creation failed: HTTP 404" in banner
    async with aiohttp.ClientSession() as http:
        async with http.post(
            relay_server.url + "/v1/realtime/sessions",
            json={"modalities": ["text", "audio"]},
            headers={"X-Client-Id": identity["id"], "X-Client-Secret": identity["secret"]},
        ) as resp:
            assert resp.status == 404
            body = await resp.json()
    assert body["error"]["message"] in banner  # the relay's own words reach the user
    assert body["error"]["code"] == "client_not_found" and "relay admin clients create" in banner  # and what to do
    assert live_calls(relay_server) == 0
    assert not [line for line in page.console if line.startswith("exception")], page.console
