"""The console's call controls in headless Chromium against a real relay: a typed message
interrupts the assistant, the microphone picker, mute and push-to-talk (``track.enabled``),
the session panel, failed HTTP steps in the event log, and the event log's export."""

from __future__ import annotations

import asyncio
import json
import wave
from pathlib import Path

import pytest

from .cdp import Browser, fake_microphone_flags
from .conftest import Server

pytestmark = pytest.mark.slow

STATE = "window.__relayConsole.state"
READY = "window.__relayConsole && window.__relayConsole.state.ready"
LONG_TEXT = ("Please read this back slowly: the quick brown fox jumps over the lazy dog, while the river runs "
             "past the old mill, and the boats go down to the sea one after another until the evening comes "
             "and the lights of the harbour are lit one by one along the quay.")


def silent_wav(path: Path, seconds: float = 2.0) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(b"\0\0" * int(48000 * seconds))
    return path


async def state_of(browser: Browser) -> dict:
    return json.loads(await browser.page.evaluate(f"JSON.stringify({STATE})"))


async def live_call(browser: Browser, url: str) -> None:
    page = browser.page
    await page.navigate(url + "/?demo=1")
    await page.wait_for(READY)
    assert await page.evaluate("window.__relayConsole.connect()", timeout_s=60) is True, page.console
    await page.wait_for(f"{STATE}.phase === 'live' && {STATE}.dataChannelState === 'open'", timeout_s=30)


async def test_a_message_typed_while_the_assistant_speaks_interrupts_it(relay_server: Server, tmp_path: Path) -> None:
    browser = await Browser.launch(tmp_path / "profile", fake_microphone_flags(silent_wav(tmp_path / "quiet.wav")))
    try:
        page = browser.page
        await live_call(browser, relay_server.url)
        assert await page.evaluate(f"window.__relayConsole.sendText({json.dumps(LONG_TEXT)})") is True
        await page.wait_for(f"{STATE}.device.playing === true", timeout_s=30)  # output_audio_buffer.started
        assert await page.evaluate("window.__relayConsole.sendText('second message')") is True
        # the second message gets its own answer: before, it was refused ("active response in progress")
        await page.wait_for(f"{STATE}.transcript.some(e => e.role === 'assistant' && e.final "
                            f"&& e.text === 'You said: second message')", timeout_s=30)
        state = await state_of(browser)
        sent = state["sentTypes"]
        i = sent.index("conversation.item.create", 1)  # the second message
        assert sent[i - 1] in ("response.cancel", "output_audio_buffer.clear"), sent
        assert sent[i:i + 2] == ["conversation.item.create", "response.create"]
        assert state["interrupts"] == 1
        assert state["eventCounts"].get("output_audio_buffer.cleared", 0) >= 1  # relay flushed the playback
        notes = [e["text"] for e in state["transcript"] if e["role"] == "system"]
        assert not any("active response" in n for n in notes), notes
        if sent[i - 1] == "response.cancel":  # cancelled while generating: its transcript is cut off, marked so
            first = next(e for e in state["transcript"] if e["role"] == "assistant")
            assert first.get("interrupted") is True, state["transcript"]
        print("interrupted with", sent[i - 1])
    finally:
        await browser.close()


async def test_microphone_picker_mute_and_push_to_talk(relay_server: Server, tmp_path: Path, speech_wav: Path) -> None:
    browser = await Browser.launch(tmp_path / "profile", fake_microphone_flags(speech_wav, loop=True))
    try:
        page = browser.page
        await live_call(browser, relay_server.url)
        track = "(window.__relayConsole.state.mic.trackEnabled)"
        await page.wait_for(f"{STATE}.micPeak > 0.05", timeout_s=20)
        assert await page.evaluate(track) is True
        # mute: the track is disabled (it sends silence); the page's own meter on that stream falls to zero
        await page.evaluate("document.getElementById('mute-btn').click()")
        assert await page.evaluate(track) is False
        assert await page.evaluate("document.getElementById('mute-btn').getAttribute('aria-pressed')") == "true"
        assert await page.evaluate("document.getElementById('mic-state').textContent") == "Mic muted"
        await asyncio.sleep(0.5)
        await page.wait_for(f"{STATE}.micLevel === 0", timeout_s=5)
        await page.evaluate("document.getElementById('mute-btn').click()")
        assert await page.evaluate(track) is True
        await page.wait_for(f"{STATE}.micLevel > 0.01", timeout_s=10)
        # push-to-talk: off until the button (or the space bar) is held
        await page.evaluate("document.getElementById('ptt-mode').click()")
        assert await page.evaluate(track) is False
        assert await page.evaluate("document.getElementById('ptt-btn').disabled") is False
        await page.evaluate("document.getElementById('ptt-btn').dispatchEvent(new PointerEvent('pointerdown'))")
        assert await page.evaluate(track) is True
        await page.evaluate("document.getElementById('ptt-btn').dispatchEvent(new PointerEvent('pointerup'))")
        assert await page.evaluate(track) is False
        await page.evaluate("document.dispatchEvent(new KeyboardEvent('keydown', {code: 'Space'}))")
        assert await page.evaluate(track) is True
        await page.evaluate("document.dispatchEvent(new KeyboardEvent('keyup', {code: 'Space'}))")
        assert await page.evaluate(track) is False
        await page.evaluate("document.getElementById('ptt-mode').click()")
        assert await page.evaluate(track) is True
        # the picker lists Chromium's fake microphones; choosing one replaces the track on the same sender
        options = await page.evaluate("[...document.getElementById('mic-select').options].map(o => o.value)")
        assert options[0] == "" and len(options) >= 2, options
        chosen = options[-1]
        initial_label = (await state_of(browser))["mic"]["label"]
        before = await page.evaluate(f"{STATE}.steps.sdp.status")
        assert await page.evaluate(f"window.__relayConsole.selectMicrophone({json.dumps(chosen)})") is True
        state = await state_of(browser)
        label = next(d["label"] for d in state["mic"]["devices"] if d["deviceId"] == chosen)
        assert state["mic"]["deviceId"] == chosen and state["mic"]["trackEnabled"] is True
        assert state["mic"]["label"] == label  # the sender now carries the chosen device's track
        assert label != initial_label, (label, initial_label)
        assert state["phase"] == "live" and before == "done"  # no new call, no renegotiation
        assert state["sessionStatus"] == 200 and state["calls"] == 1
    finally:
        await browser.close()


async def test_session_panel_failed_http_steps_and_export(relay_server: Server, browser: Browser,
                                                          tmp_path: Path) -> None:
    page = browser.page
    await live_call(browser, relay_server.url)
    await page.wait_for(f"{STATE}.session.voice && {STATE}.session.turnDetection", timeout_s=20)
    panel = await page.evaluate("document.getElementById('session-panel').innerText")
    assert "Default (built-in local assistant)" in panel and "relay-echo" in panel and "alloy" in panel
    assert "server_vad" in panel
    for tool in ("adjust_device_volume", "set_device_volume", "quiet_device", "stop_audio"):
        assert f"{tool} (client)" in panel
    instructions = relay_server.settings.upstream_instructions
    assert instructions and instructions not in await page.evaluate("document.body.innerText")
    assert instructions not in await page.evaluate(f"JSON.stringify({STATE})")
    await page.evaluate("window.__relayConsole.hangup()")

    # A failed step: an unknown client without demo mode. The refusal is in the event log.
    await page.evaluate("""(() => {
        document.getElementById('demo-mode').checked = false;
        document.getElementById('workspace-key').value = '';
        document.getElementById('client-id').value = '0b3c5a1e-8f5d-4c1e-9a7b-2f6d8e4c1a90';
    })()""")
    assert await page.evaluate("window.__relayConsole.connect()", timeout_s=60) is False
    state = await state_of(browser)
    assert state["httpFailures"] == [{"step": "session", "status": 404, "code": "client_not_found",
                                      "message": "Client ID not found or not activated"}]
    row = await page.evaluate("document.querySelector('#events li.ev.err').innerText")
    assert "http.error" in row

    # Export: a real download of the event log as JSON (Chromium writes the file).
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    await page.send("Page.setDownloadBehavior", behavior="allow", downloadPath=str(downloads))
    await page.evaluate("document.getElementById('export-events').click()")
    for _ in range(100):
        files = [p for p in downloads.iterdir() if p.suffix == ".json"]
        if files:
            break
        await asyncio.sleep(0.1)
    assert files, list(downloads.iterdir())
    doc = json.loads(files[0].read_text())
    types = [e["event"].get("type") for e in doc["events"]]
    assert "session.created" in types and types.index("session.created") < types.index("http.error")
    assert any(e["direction"] == "in" and e["event"]["type"] == "session.updated" for e in doc["events"])
    failure = next(e for e in doc["events"] if e["direction"] == "err")
    assert failure["event"]["status"] == 404 and failure["event"]["error"]["code"] == "client_not_found"
    assert failure["event"]["path"] == "/v1/realtime/sessions"
