"""The built-in local assistant over a real WebSocket, in both dialects."""

from __future__ import annotations

import base64
import math

import pytest
from assistant_helpers import audio_of, dominant_hz, silence, tone, types

from relay._fast import ulaw_decode, ulaw_encode
from relay.assistant import start_local_assistant

ECHO_FLOW = [
    "input_audio_buffer.speech_started",
    "input_audio_buffer.speech_stopped",
    "input_audio_buffer.committed",
    "conversation.item.created",
    "conversation.item.input_audio_transcription.completed",
    "response.created",
    "response.output_item.added",
    "conversation.item.created",
    "response.content_part.added",
]


async def test_echo_speaks_the_utterance_back_beta(connect) -> None:
    conn = await connect("relay-echo")
    speech = tone(1000)
    await conn.append(silence(200) + speech + silence(800))
    events = await conn.until("response.done")
    order = [t for t in types(events) if t in ECHO_FLOW]
    assert order == ECHO_FLOW
    started = next(e for e in events if e["type"] == "input_audio_buffer.speech_started")
    stopped = next(e for e in events if e["type"] == "input_audio_buffer.speech_stopped")
    assert 150 <= started["audio_start_ms"] <= 260
    assert 1150 <= stopped["audio_end_ms"] <= 1260
    assert started["item_id"] == stopped["item_id"]
    transcript = next(e for e in events if e["type"] == "conversation.item.input_audio_transcription.completed")
    assert transcript["transcript"].startswith("[1.") and transcript["transcript"].endswith(" s of speech]")
    out = audio_of(events)
    assert speech in out  # bit-exact echo of the speech (plus its padding)
    assert 1000 <= len(out) // 48 <= 1300
    assert "response.output_audio.delta" not in types(events)
    tail = [t for t in types(events) if t.endswith(".done")]
    assert tail == ["response.audio.done", "response.audio_transcript.done", "response.content_part.done",
                    "response.output_item.done", "response.done"]
    done = events[-1]["response"]
    assert done["status"] == "completed"
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.audio_transcript.delta")
    assert deltas == next(e for e in events if e["type"] == "response.audio_transcript.done")["transcript"]
    # usage: deterministic from lengths (10 tokens/s in, 20 tokens/s out, 4 chars/token)
    in_ms = int(transcript["transcript"][1:4].replace(".", "")) * 100
    u = done["usage"]
    assert u["input_token_details"]["audio_tokens"] == math.ceil(in_ms / 100)
    assert u["output_token_details"]["audio_tokens"] == math.ceil((len(out) // 48) / 50)
    assert u["output_token_details"]["text_tokens"] == math.ceil(len(deltas) / 4)
    assert u["total_tokens"] == u["input_tokens"] + u["output_tokens"]


async def test_echo_in_ga_dialect(connect) -> None:
    conn = await connect("relay-echo", beta=False)
    await conn.send({"type": "session.update", "session": {"type": "realtime", "instructions": "x"}})
    updated = await conn.until("session.updated")
    assert updated[-1]["session"]["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert updated[-1]["session"]["type"] == "realtime"
    speech = tone(600, freq_hz=300)
    await conn.append(speech + silence(700))
    events = await conn.until("response.done")
    assert "conversation.item.added" in types(events) and "conversation.item.done" in types(events)
    assert "response.audio.delta" not in types(events)
    out = audio_of(events, "response.output_audio.delta")
    assert speech in out
    assert "response.output_audio_transcript.done" in types(events)
    assert events[-1]["response"]["output_modalities"] == ["audio"]


async def test_ga_rejects_beta_session_update(connect) -> None:
    conn = await connect(beta=False)
    await conn.send({"type": "session.update", "event_id": "c1", "session": {"input_audio_format": "pcm16"}})
    [err] = await conn.until("error")
    assert err["error"]["code"] == "unknown_parameter"
    assert err["error"]["param"] == "session.input_audio_format"
    assert err["error"]["event_id"] == "c1"
    await conn.send({"type": "session.update", "session": {"instructions": "x"}})
    [err] = await conn.until("error")
    assert err["error"]["code"] == "missing_required_parameter"
    await conn.send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text", "audio"]}})
    [err] = await conn.until("error")
    assert err["error"]["param"] == "session.output_modalities"


async def test_beta_rejects_ga_session_update(connect) -> None:
    conn = await connect(beta=True)
    await conn.send({"type": "session.update", "session": {"type": "realtime", "audio": {}}})
    [err] = await conn.until("error")
    assert err["error"]["code"] == "unknown_parameter"


async def test_g711_ulaw_echo(connect) -> None:
    conn = await connect()
    await conn.send({"type": "session.update", "session": {"input_audio_format": "g711_ulaw",
                                                           "output_audio_format": "g711_ulaw"}})
    await conn.until("session.updated")
    speech = ulaw_encode(tone(800, freq_hz=500, rate_hz=8000))
    await conn.append(ulaw_encode(silence(100, 8000)) + speech + ulaw_encode(silence(700, 8000)), chunk_bytes=160)
    events = await conn.until("response.done")
    out = audio_of(events)
    assert speech in out
    assert abs(dominant_hz(ulaw_decode(out), 8000) - 500) < 15


async def test_vad_disabled_manual_commit(connect) -> None:
    conn = await connect()
    await conn.send({"type": "session.update", "session": {"turn_detection": None}})
    await conn.until("session.updated")
    await conn.append(tone(50))
    await conn.send({"type": "input_audio_buffer.commit"})
    [err] = await conn.until("error")
    assert err["error"]["code"] == "input_audio_buffer_commit_empty"
    await conn.send({"type": "input_audio_buffer.clear"})
    await conn.until("input_audio_buffer.cleared")
    speech = tone(300)
    await conn.append(speech)
    await conn.send({"type": "input_audio_buffer.commit"})
    events = await conn.until("conversation.item.input_audio_transcription.completed")
    assert "input_audio_buffer.speech_started" not in types(events)
    assert events[-1]["transcript"] == "[0.3 s of speech]"
    await conn.send({"type": "response.create"})
    events = await conn.until("response.done")
    assert audio_of(events) == speech


async def test_text_item_gets_text_and_audio_reply(connect) -> None:
    conn = await connect()
    await conn.send({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello there"}]}})
    created = await conn.until("conversation.item.created")
    assert created[-1]["item"]["content"][0] == {"type": "input_text", "text": "hello there"}
    await conn.send({"type": "response.create"})
    events = await conn.until("response.done")
    done = next(e for e in events if e["type"] == "response.audio_transcript.done")
    assert done["transcript"] == "You said: hello there"
    assert len(audio_of(events)) > 48 * 200  # some real audio (espeak-ng)
    assert events[-1]["response"]["usage"]["input_token_details"]["text_tokens"] == math.ceil(len("hello there") / 4)


async def test_text_only_modality(connect) -> None:
    conn = await connect()
    await conn.send({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}})
    await conn.send({"type": "response.create", "response": {"modalities": ["text"]}})
    events = await conn.until("response.done")
    assert "response.audio.delta" not in types(events)
    assert next(e for e in events if e["type"] == "response.text.done")["text"] == "You said: hi"


async def test_tool_call_and_output(connect) -> None:
    conn = await connect()
    tools = [{"type": "function", "name": "get_weather", "description": "weather",
              "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}]
    await conn.send({"type": "session.update", "session": {"tools": tools}})
    await conn.until("session.updated")
    await conn.send({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user",
        "content": [{"type": "input_text", "text": 'call get_weather {"location": "San Francisco"}'}]}})
    await conn.send({"type": "response.create"})
    events = await conn.until("response.done")
    assert "response.function_call_arguments.delta" in types(events)
    args_done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    item_done = next(e for e in events if e["type"] == "response.output_item.done")["item"]
    assert item_done["type"] == "function_call" and item_done["name"] == "get_weather"
    assert item_done["arguments"] == '{"location": "San Francisco"}' == args_done["arguments"]
    assert item_done["call_id"] == args_done["call_id"] and item_done["id"]
    assert "".join(e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta") == \
        item_done["arguments"]
    assert events[-1]["response"]["output"][0]["type"] == "function_call"
    await conn.send({"type": "conversation.item.create", "item": {
        "type": "function_call_output", "call_id": item_done["call_id"], "output": '{"temperature": 72}'}})
    await conn.send({"type": "response.create"})
    events = await conn.until("response.done")
    transcript = next(e for e in events if e["type"] == "response.audio_transcript.done")["transcript"]
    assert transcript == 'The tool returned {"temperature": 72}'


async def test_call_of_unknown_tool_is_just_text(connect) -> None:
    conn = await connect()
    await conn.send({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "call nothing"}]}})
    await conn.send({"type": "response.create", "response": {"modalities": ["text"]}})
    events = await conn.until("response.done")
    assert "response.function_call_arguments.done" not in types(events)


async def test_truncate_validation(connect) -> None:
    conn = await connect()
    await conn.append(tone(500) + silence(700))
    events = await conn.until("response.done")
    item = next(e for e in events if e["type"] == "response.output_item.done")["item"]
    out_ms = len(audio_of(events)) // 48
    await conn.send({"type": "conversation.item.truncate", "event_id": "t1", "item_id": item["id"],
                     "content_index": 0, "audio_end_ms": out_ms + 1})
    [err] = await conn.until("error")
    assert err["error"]["code"] == "invalid_value" and err["error"]["event_id"] == "t1"
    assert "shorter than" in err["error"]["message"]
    await conn.send({"type": "conversation.item.truncate", "item_id": "nope", "content_index": 0, "audio_end_ms": 1})
    [err] = await conn.until("error")
    assert err["error"]["code"] == "item_not_found"
    await conn.send({"type": "conversation.item.truncate", "item_id": item["id"], "content_index": 0,
                     "audio_end_ms": 120})
    [ok] = await conn.until("conversation.item.truncated")
    assert ok["audio_end_ms"] == 120 and ok["item_id"] == item["id"]
    # the item is now 120 ms long
    await conn.send({"type": "conversation.item.truncate", "item_id": item["id"], "content_index": 0,
                     "audio_end_ms": 121})
    [err] = await conn.until("error")
    assert err["error"]["code"] == "invalid_value"


async def test_barge_in_cancels_the_streaming_response() -> None:
    import aiohttp
    from assistant_helpers import Conn

    runner, url = await start_local_assistant("127.0.0.1", 0, speedup=0.5)  # slower than real time
    try:
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(url + "?model=relay-echo", headers={"OpenAI-Beta": "realtime=v1"})
            conn = Conn(ws)
            await conn.until("session.created")
            await conn.append(tone(2000) + silence(600))
            await conn.until("response.audio.delta")
            await conn.append(tone(300, freq_hz=700))
            events = await conn.until("response.done")
            assert types(events).index("input_audio_buffer.speech_started") < len(events) - 1
            resp = events[-1]["response"]
            assert resp["status"] == "cancelled"
            assert resp["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
            await ws.close()
    finally:
        await runner.cleanup()


async def test_response_cancel_and_errors(connect) -> None:
    conn = await connect()
    await conn.send({"type": "response.cancel", "event_id": "x1"})
    [err] = await conn.until("error")
    assert err["error"]["code"] == "response_cancel_not_active"
    await conn.send({"type": "no.such.event", "event_id": "x2"})
    [err] = await conn.until("error")
    assert err["error"]["code"] == "invalid_value" and err["error"]["param"] == "type"
    await conn.ws.send_str("{broken")
    [err] = await conn.until("error")
    assert err["error"]["code"] == "invalid_json"
    await conn.send({"type": "input_audio_buffer.append", "audio": "!!!"})
    [err] = await conn.until("error")
    assert err["error"]["param"] == "audio"
    await conn.send({"type": "input_audio_buffer.clear"})
    await conn.until("input_audio_buffer.cleared")


async def test_loopback_streams_chunks_straight_back(connect) -> None:
    conn = await connect("relay-loopback")
    chunk = tone(20, freq_hz=1000)
    await conn.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(chunk).decode()})
    events = await conn.until("response.audio.delta")
    assert types(events) == ["response.created", "response.output_item.added", "response.content_part.added",
                             "response.audio.delta"]
    assert base64.b64decode(events[-1]["delta"]) == chunk
    await conn.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(chunk[::-1]).decode()})
    [delta] = await conn.until("response.audio.delta")
    assert base64.b64decode(delta["delta"]) == chunk[::-1]
    await conn.send({"type": "input_audio_buffer.commit"})
    events = await conn.until("response.done")
    assert events[-1]["response"]["usage"]["output_token_details"]["audio_tokens"] == 1


async def test_fail_model_closes(connect) -> None:
    conn = await connect("relay-fail")
    assert await conn.closed() == 1011


async def test_disconnect_control_text(connect) -> None:
    conn = await connect()
    await conn.send({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "disconnect"}]}})
    assert await conn.closed() == 1011


async def test_session_expiry(connect) -> None:
    conn = await connect(query="&expire_s=0.2")
    [err] = await conn.until("error")
    assert err["error"]["code"] == "session_expired"
    assert await conn.closed() == 1000


@pytest.mark.parametrize("beta", [True, False])
async def test_session_created_shape(connect, beta: bool) -> None:
    conn = await connect(beta=beta)
    created = conn.seen[0]["session"]
    if beta:
        assert created["input_audio_format"] == "pcm16" and created["modalities"] == ["text", "audio"]
    else:
        assert created["type"] == "realtime" and created["audio"]["output"]["voice"] == "alloy"


async def test_talk_mode_answers_with_speech(connect) -> None:
    conn = await connect("relay-talk")
    await conn.append(tone(800) + silence(700))
    events = await conn.until("response.done")
    transcript = next(e for e in events if e["type"] == "response.audio_transcript.done")["transcript"]
    assert transcript == "I heard 0.8 seconds of speech."
    out = audio_of(events)
    assert len(out) > 48 * 500 and tone(800) not in out


async def test_client_leaving_mid_response_leaves_no_task() -> None:
    import asyncio

    import aiohttp
    from assistant_helpers import Conn

    runner, url = await start_local_assistant("127.0.0.1", 0, speedup=0.25)
    try:
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(url, headers={"OpenAI-Beta": "realtime=v1"})
            conn = Conn(ws)
            await conn.until("session.created")
            await conn.append(tone(1500) + silence(600))
            await conn.until("response.audio.delta")
            [task] = [t for t in asyncio.all_tasks() if t.get_name().startswith("assistant resp_")]
            await ws.close()
        await asyncio.wait([task], timeout=5)
        assert task.done()
        assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("assistant resp_")]
    finally:
        await runner.cleanup()


async def test_short_mode_answers_with_one_chime_delta_then_echoes(connect) -> None:
    from relay.assistant.audio import CHIME_BODY_HZ, CHIME_ONSET_HZ, chime

    conn = await connect("relay-short")
    await conn.append(tone(600) + silence(700))
    first = await conn.until("response.done")
    deltas = [e for e in first if e["type"] == "response.audio.delta"]
    assert len(deltas) == 1  # a short response: a single audio delta
    out = audio_of(first)
    assert out == chime() and len(out) // 48 == 120
    assert abs(dominant_hz(out[: 48 * 20], 24000) - CHIME_ONSET_HZ) < 60  # its first 20 ms: the onset tone
    assert abs(dominant_hz(out[48 * 20:], 24000) - CHIME_BODY_HZ) < 60
    assert next(e for e in first if e["type"] == "response.audio_transcript.done")["transcript"] == "[chime]"
    assert first[-1]["response"]["status"] == "completed"
    speech = tone(700, freq_hz=300.0)
    await conn.append(speech + silence(700))
    second = await conn.until("response.done")
    assert speech in audio_of(second)  # the next utterance is echoed: speech both ways
    assert len([e for e in second if e["type"] == "response.audio.delta"]) > 1
