"""The console page as served by relay, and its device identity, in a real browser."""

from __future__ import annotations

import re
import socket

import aiohttp

from relay.web.console import static_dir

from .cdp import Browser
from .conftest import Server

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")


async def test_page_and_assets_are_served_from_the_package(relay_server: Server) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(relay_server.url + "/") as resp:
            assert resp.status == 200
            assert resp.content_type == "text/html"
            html = await resp.text()
            csp = resp.headers["Content-Security-Policy"]
            assert "default-src 'self'" in csp and "script-src 'self'" in csp
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert 'src="static/console.js"' in html
        for name, kind in [
            ("console.js", "javascript"),
            ("device.js", "javascript"),
            ("identity.js", "javascript"),
            ("console.css", "text/css"),
            ("favicon.svg", "image/svg+xml"),
        ]:
            async with http.get(f"{relay_server.url}/static/{name}") as resp:
                assert resp.status == 200, name
                assert kind in resp.content_type, (name, resp.content_type)
        async with http.get(relay_server.url + "/static/missing.js") as resp:
            assert resp.status == 404
        async with http.get(relay_server.url + "/static/%2e%2e/settings.py") as resp:
            assert resp.status in (403, 404)


def test_page_loads_nothing_from_the_internet() -> None:
    """No absolute URL in any asset: the page works offline, from the installed package."""
    offenders = []
    for path in sorted(static_dir().iterdir()):
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"""(?:src|href|from|url\()\s*=?\s*["'(]?\s*(?:https?:)?//""", text):
            offenders.append(f"{path.name}: {text[max(0, match.start() - 20) : match.end() + 40]!r}")
        if path.suffix == ".svg":
            text = re.sub(r'xmlns="http://www\.w3\.org/2000/svg"', "", text)
        for match in re.finditer(r"https?://", text):
            offenders.append(f"{path.name}: {text[max(0, match.start() - 30) : match.end() + 30]!r}")
    assert offenders == []


async def test_identity_is_generated_once_and_kept_in_local_storage(relay_server: Server, browser: Browser) -> None:
    page = browser.page
    await page.navigate(relay_server.url + "/")
    await page.wait_for("window.__relayConsole && window.__relayConsole.state.ready")

    first = await page.evaluate(
        """({id: document.getElementById('client-id').value,
             secret: document.getElementById('client-secret').value,
             storedId: localStorage.getItem('relay.console.clientId'),
             storedSecret: localStorage.getItem('relay.console.clientSecret'),
             created: window.__relayConsole.state.identityCreated,
             secretType: document.getElementById('client-secret').type})"""
    )
    assert UUID4.match(first["id"]), first
    assert HEX64.match(first["secret"]), first  # 32 random bytes, hex
    assert (first["storedId"], first["storedSecret"]) == (first["id"], first["secret"])
    assert first["created"] is True
    assert first["secretType"] == "password"  # not shown on screen by default

    await page.navigate(relay_server.url + "/")
    await page.wait_for("window.__relayConsole && window.__relayConsole.state.ready")
    second = await page.evaluate(
        """({id: document.getElementById('client-id').value,
             secret: document.getElementById('client-secret').value,
             created: window.__relayConsole.state.identityCreated})"""
    )
    assert (second["id"], second["secret"]) == (first["id"], first["secret"])
    assert second["created"] is False

    # "New identity" makes and stores a different one.
    fresh = await page.evaluate(
        """document.getElementById('new-identity-btn').click();
           ({id: localStorage.getItem('relay.console.clientId'),
             secret: localStorage.getItem('relay.console.clientSecret')})"""
    )
    assert UUID4.match(fresh["id"]) and HEX64.match(fresh["secret"])
    assert fresh["id"] != first["id"] and fresh["secret"] != first["secret"]

    # A pasted identity and options are kept, and survive a reload.
    pasted_id = "d4f8e2a1-3b7c-4e9f-a5d6-1c2b3e4f5a6b"
    pasted_secret = "s" * 40
    await page.evaluate(
        f"""(() => {{
            const set = (id, v) => {{ const e = document.getElementById(id); e.value = v; }};
            set('client-id', {pasted_id!r});
            set('client-secret', {pasted_secret!r});
            set('assistant-id', 'asst_demo');
            document.getElementById('demo-mode').checked = true;
            document.getElementById('settings-form').dispatchEvent(new Event('change'));
        }})()"""
    )
    await page.navigate(relay_server.url + "/")
    await page.wait_for("window.__relayConsole && window.__relayConsole.state.ready")
    kept = await page.evaluate(
        """({id: document.getElementById('client-id').value,
             secret: document.getElementById('client-secret').value,
             assistant: document.getElementById('assistant-id').value,
             demo: document.getElementById('demo-mode').checked})"""
    )
    assert kept == {"id": pasted_id, "secret": pasted_secret, "assistant": "asst_demo", "demo": True}
    assert not [line for line in page.console if line.startswith("exception")], page.console


async def test_device_tools_answer_exactly_as_the_seed(relay_server: Server, browser: Browser) -> None:
    """The four client-side tools change the device panel and produce seed 000's two messages."""
    page = browser.page
    await page.navigate(relay_server.url + "/")
    await page.wait_for("window.__relayConsole && window.__relayConsole.state.ready")
    result = await page.evaluate(
        """(async () => {
            const m = await import('/static/device.js');
            const d = new m.DeviceState(50);
            const out = {};
            out.up = m.runDeviceTool(d, 'adjust_device_volume', {action: 'increase'});
            out.down = m.runDeviceTool(d, 'adjust_device_volume', {action: 'decrease'});
            out.set = m.runDeviceTool(d, 'set_device_volume', {volume_level: 130});
            out.quiet = m.runDeviceTool(d, 'quiet_device', {});
            out.mutedAfterQuiet = d.muted;
            out.stop = m.runDeviceTool(d, 'stop_audio', {});
            out.server = m.runDeviceTool(d, 'get_weather', {location: 'x'});
            try { m.runDeviceTool(d, 'set_device_volume', {volume_level: 'loud'}); out.bad = 'no error'; }
            catch (e) { out.bad = e.name; }
            out.answer = m.toolAnswer('call_abc123', {volume_level: 30});
            out.call = m.functionCallOf({type: 'response.output_item.done',
                item: {type: 'function_call', name: 'stop_audio', call_id: 'c1', arguments: '{}'}});
            out.notCall = m.functionCallOf({type: 'response.output_item.done', item: {type: 'message'}});
            return out;
        })()"""
    )
    assert result["up"] == {"volume_level": 60}
    assert result["down"] == {"volume_level": 50}
    assert result["set"] == {"volume_level": 100}  # clamped to 0-100
    assert result["quiet"] == {"volume_level": 0, "muted": True} and result["mutedAfterQuiet"] is True
    assert result["stop"] == {"stopped": True}
    assert result["server"] is None  # a server-side tool: the device does not answer
    assert result["bad"] == "RangeError"
    assert result["answer"] == [
        {
            "type": "conversation.item.create",
            "item": {
                "type": "function_call_output",
                "call_id": "call_abc123",
                "output": '{"success":true,"volume_level":30}',
            },
        },
        {"type": "response.create"},
    ]
    assert result["call"]["name"] == "stop_audio" and result["notCall"] is None


async def test_an_unreachable_relay_is_reported_not_crashed(relay_server: Server, browser: Browser) -> None:
    """API base URL pointing at nothing: a clear message, the step marked failed, the page usable."""
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    page = browser.page
    await page.navigate(f"{relay_server.url}/?api=http://127.0.0.1:{closed_port}")
    await page.wait_for("window.__relayConsole && window.__relayConsole.state.ready")
    assert await page.evaluate("window.__relayConsole.connect()") is False
    state = await page.evaluate("JSON.parse(JSON.stringify(window.__relayConsole.state))")
    assert state["phase"] == "error"
    assert state["steps"]["session"]["status"] == "failed"
    assert "peer" not in state["steps"]
    banner = await page.evaluate("document.getElementById('banner').textContent")
    assert f"Cannot reach the relay at http://127.0.0.1:{closed_port}" in banner
    buttons = await page.evaluate(
        "[document.getElementById('connect-btn').disabled, document.getElementById('hangup-btn').disabled]"
    )
    assert buttons == [False, True]  # ready to try again
    assert not [line for line in page.console if line.startswith("exception")], page.console


async def test_events_in_both_dialects_reach_the_transcript_and_device(relay_server: Server, browser: Browser) -> None:
    """Beta and GA event names are shown; a cut-off response is closed; odd messages do no harm."""
    page = browser.page
    await page.navigate(relay_server.url + "/")
    await page.wait_for("window.__relayConsole && window.__relayConsole.state.ready")
    state = await page.evaluate(
        """(() => {
            const c = window.__relayConsole;
            const events = [
              {type: 'conversation.item.input_audio_transcription.completed', item_id: 'u1', transcript: 'Hello, how are you?'},
              {type: 'response.audio_transcript.delta', response_id: 'r1', item_id: 'a1', delta: "I'm doing well, "},
              {type: 'response.audio_transcript.done', response_id: 'r1', item_id: 'a1', transcript: "I'm doing well, thank you"},
              {type: 'response.output_audio_transcript.delta', response_id: 'r2', item_id: 'a2', delta: 'GA '},
              {type: 'response.output_audio_transcript.delta', response_id: 'r2', item_id: 'a2', delta: 'audio'},
              {type: 'response.output_audio_transcript.done', response_id: 'r2', item_id: 'a2', transcript: 'GA audio'},
              {type: 'response.output_text.delta', response_id: 'r3', item_id: 'a3', delta: 'GA text'},
              {type: 'response.output_text.done', response_id: 'r3', item_id: 'a3', text: 'GA text'},
              {type: 'response.audio_transcript.delta', response_id: 'r4', item_id: 'a4', delta: 'Cut o'},
              {type: 'response.done', response: {id: 'r4', status: 'cancelled'}},
              {type: 'error', error: {message: 'Unknown event type', type: 'invalid_request_error'}},
              {type: 'response.output_item.done', item: {type: 'function_call', name: 'quiet_device', call_id: 'c1', arguments: '{}'}},
              {type: 'response.output_item.done', item: {type: 'function_call', name: 'get_weather', call_id: 'c2', arguments: '{}'}},
              {type: 'response.output_item.done', item: {type: 'function_call', name: 'set_device_volume', call_id: 'c3', arguments: 'not json'}},
              null, 42, {},
            ];
            for (const e of events) c.receive(e);
            return JSON.parse(JSON.stringify(c.state));
        })()"""
    )
    lines = [(e["role"], e["text"], e["final"]) for e in state["transcript"]]
    assert lines[:5] == [
        ("user", "Hello, how are you?", True),
        ("assistant", "I'm doing well, thank you", True),
        ("assistant", "GA audio", True),
        ("assistant", "GA text", True),
        ("assistant", "Cut o…", True),
    ]
    assert state["transcript"][4]["interrupted"] is True
    assert lines[5] == ("system", "Error from relay: Unknown event type", True)
    # quiet_device ran; the server-side tool was left alone; bad arguments answered with success false
    assert [(t["name"], t["ok"]) for t in state["toolCalls"]] == [("quiet_device", True), ("set_device_volume", False)]
    assert state["device"]["muted"] is True and state["device"]["volumePercent"] == 0
    assert await page.evaluate("document.getElementById('mute-state').textContent") == "Muted"
    bubbles = await page.evaluate("Array.from(document.querySelectorAll('#transcript .bubble')).map(b => b.className)")
    assert bubbles[:6] == [
        "bubble user",
        "bubble assistant",
        "bubble assistant",
        "bubble assistant",
        "bubble assistant",
        "bubble system",
    ]
    assert not [line for line in page.console if line.startswith("exception")], page.console


async def test_workspace_key_from_the_link_fragment_and_a_wrong_key(relay_server: Server, browser: Browser) -> None:
    """`#workspace_key=` is taken out of the address into localStorage and the masked field (also when
    pasted into an open tab); a wrong key is refused with the relay's message and what to do; the
    key survives New identity."""
    page = browser.page
    await page.navigate(f"{relay_server.url}/?demo=0#workspace_key=rwk_not-this-one&keep=1")
    await page.wait_for("window.__relayConsole && window.__relayConsole.state.ready")
    seen = await page.evaluate(
        """({search: location.search, hash: location.hash,
             stored: localStorage.getItem('relay.console.workspaceKey'),
             field: document.getElementById('workspace-key').value,
             type: document.getElementById('workspace-key').type})"""
    )
    assert seen == {"search": "?demo=0", "hash": "#keep=1", "stored": "rwk_not-this-one",
                    "field": "rwk_not-this-one", "type": "password"}

    assert await page.evaluate("window.__relayConsole.connect()") is False
    state = await page.evaluate("JSON.parse(JSON.stringify(window.__relayConsole.state))")
    assert state["sessionStatus"] == 401 and state["steps"]["session"]["status"] == "failed"
    banner = await page.evaluate("document.getElementById('banner').textContent")
    assert "Invalid X-Workspace-Key" in banner and "open the link relay serve printed again" in banner

    # the link pasted into the open tab (only the fragment changes: no reload)
    await page.evaluate("location.hash = 'workspace_key=rwk_second'")
    await page.wait_for("location.hash === '' && document.getElementById('workspace-key').value === 'rwk_second'")
    await page.evaluate("document.getElementById('new-identity-btn').click()")
    after = await page.evaluate(
        """({stored: localStorage.getItem('relay.console.workspaceKey'),
             field: document.getElementById('workspace-key').value})"""
    )
    assert after == {"stored": "rwk_second", "field": "rwk_second"}
    # cleared by the user: no longer stored, no longer sent
    await page.evaluate(
        """(() => { const f = document.getElementById('workspace-key'); f.value = '';
                    f.dispatchEvent(new Event('change', {bubbles: true})); })()"""
    )
    assert await page.evaluate("localStorage.getItem('relay.console.workspaceKey')") is None
    assert not [line for line in page.console if line.startswith("exception")], page.console
