"""beta <-> GA translation: names, session shapes, items, round trips, detection."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.upstream import dialect as d

NAME_PAIRS = [
    ("response.audio.delta", "response.output_audio.delta"),
    ("response.audio.done", "response.output_audio.done"),
    ("response.audio_transcript.delta", "response.output_audio_transcript.delta"),
    ("response.audio_transcript.done", "response.output_audio_transcript.done"),
    ("response.text.delta", "response.output_text.delta"),
    ("response.text.done", "response.output_text.done"),
]


@pytest.mark.parametrize(("beta", "ga"), NAME_PAIRS)
def test_event_names_both_ways(beta: str, ga: str) -> None:
    ev = {"type": beta, "event_id": "e1", "response_id": "r1", "item_id": "i1", "delta": "x"}
    [out] = d.translate(ev, d.BETA, d.GA)
    assert out["type"] == ga
    assert {k: v for k, v in out.items() if k != "type"} == {k: v for k, v in ev.items() if k != "type"}
    [back] = d.translate(out, d.GA, d.BETA)
    assert back == ev


@pytest.mark.parametrize(
    "etype",
    ["session.created", "input_audio_buffer.speech_started", "response.created", "error",
     "response.function_call_arguments.done", "input_audio_buffer.append", "response.cancel"],
)
def test_shared_names_unchanged(etype: str) -> None:
    ev = {"type": etype, "event_id": "e"}
    assert d.translate(ev, d.BETA, d.GA)[0]["type"] == etype
    assert d.translate(ev, d.GA, d.BETA)[0]["type"] == etype


def test_same_dialect_is_identity() -> None:
    ev = {"type": "response.audio.delta", "delta": "AA=="}
    assert d.translate(ev, d.BETA, d.BETA) == [ev]
    assert d.translate(ev, d.GA, d.GA) == [ev]


def test_unknown_dialect_raises() -> None:
    with pytest.raises(ValueError, match="unknown dialect"):
        d.translate({"type": "x"}, "beta", "v2")


BETA_SESSION = {
    "modalities": ["text", "audio"],
    "voice": "alloy",
    "instructions": "Be brief.",
    "input_audio_format": "pcm16",
    "output_audio_format": "g711_ulaw",
    "input_audio_transcription": {"model": "whisper-1", "language": "de"},
    "turn_detection": {"type": "server_vad", "threshold": 0.5, "silence_duration_ms": 500},
    "tools": [{"type": "function", "name": "f", "description": "d", "parameters": {"type": "object"}}],
    "tool_choice": "auto",
    "temperature": 0.8,
}

GA_SESSION = {
    "type": "realtime",
    "output_modalities": ["audio"],
    "instructions": "Be brief.",
    "audio": {
        "input": {
            "format": {"type": "audio/pcm", "rate": 24000},
            "transcription": {"model": "whisper-1", "language": "de"},
            "turn_detection": {"type": "server_vad", "threshold": 0.5, "silence_duration_ms": 500},
        },
        "output": {"format": {"type": "audio/pcmu"}, "voice": "alloy"},
    },
    "tools": [{"type": "function", "name": "f", "description": "d", "parameters": {"type": "object"}}],
    "tool_choice": "auto",
}


def test_session_update_beta_to_ga() -> None:
    src = {"type": "session.update", "event_id": "c1", "session": copy.deepcopy(BETA_SESSION)}
    [out] = d.translate(src, d.BETA, d.GA)
    assert out == {"type": "session.update", "event_id": "c1", "session": GA_SESSION}
    assert src["session"] == BETA_SESSION  # input not mutated


def test_session_update_ga_to_beta() -> None:
    [out] = d.translate({"type": "session.update", "session": GA_SESSION}, d.GA, d.BETA)
    expected = dict(BETA_SESSION)
    del expected["temperature"]  # GA has no temperature
    assert out["session"] == expected


@pytest.mark.parametrize(
    ("beta", "ga"),
    [("pcm16", {"type": "audio/pcm", "rate": 24000}), ("g711_ulaw", {"type": "audio/pcmu"}),
     ("g711_alaw", {"type": "audio/pcma"})],
)
def test_audio_formats(beta: str, ga: dict) -> None:
    assert d.format_to_ga(beta) == ga
    assert d.format_to_beta(ga) == beta
    assert d.format_to_beta(ga["type"]) == beta


def test_session_created_server_event_both_ways() -> None:
    beta = {"type": "session.created", "session": {"id": "sess_1", "object": "realtime.session",
                                                   "model": "m", "voice": "echo", "input_audio_format": "g711_alaw"}}
    [ga] = d.translate(beta, d.BETA, d.GA)
    assert ga["session"]["audio"]["output"]["voice"] == "echo"
    assert ga["session"]["audio"]["input"]["format"] == {"type": "audio/pcma"}
    assert ga["session"]["type"] == "realtime"
    assert d.translate(ga, d.GA, d.BETA) == [beta]


def test_item_created_becomes_added_and_done() -> None:
    ev = {"type": "conversation.item.created", "event_id": "e5", "previous_item_id": None,
          "item": {"id": "it", "type": "message", "role": "assistant",
                   "content": [{"type": "audio", "transcript": "hi"}, {"type": "text", "text": "t"}]}}
    added, done = d.translate(ev, d.BETA, d.GA)
    assert added["type"] == "conversation.item.added"
    assert done["type"] == "conversation.item.done"
    assert done["event_id"] != added["event_id"]
    assert [p["type"] for p in added["item"]["content"]] == ["output_audio", "output_text"]
    assert d.translate(done, d.GA, d.BETA) == []
    assert d.translate(added, d.GA, d.BETA) == [ev]


def test_user_input_parts_unchanged() -> None:
    ev = {"type": "conversation.item.create",
          "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}}
    assert d.translate(ev, d.BETA, d.GA) == [ev]
    assert d.translate(ev, d.GA, d.BETA) == [ev]


def test_content_part_events_keep_text_and_audio_parts() -> None:
    # the GA schema (openai.types.realtime.ResponseContentPartAddedEvent.part.type) is "text" | "audio"
    ev = {"type": "response.content_part.added", "part": {"type": "audio", "transcript": ""}}
    [ga] = d.translate(ev, d.BETA, d.GA)
    assert ga["part"]["type"] == "audio"
    assert d.translate(ga, d.GA, d.BETA) == [ev]
    # an upstream that names them output_* anyway still reaches beta devices as text/audio
    ga_named = {"type": "response.content_part.done", "part": {"type": "output_text", "text": "t"}}
    assert d.translate(ga_named, d.GA, d.BETA)[0]["part"]["type"] == "text"


def test_item_in_progress_is_done_with_its_output_item() -> None:
    item = {"id": "it", "type": "message", "role": "assistant", "status": "in_progress", "content": []}
    created = {"type": "conversation.item.created", "event_id": "e1", "previous_item_id": "p", "item": item}
    assert [e["type"] for e in d.translate(created, d.BETA, d.GA)] == ["conversation.item.added"]
    final = {**item, "status": "completed", "content": [{"type": "audio", "transcript": "hi"}]}
    out = d.translate({"type": "response.output_item.done", "event_id": "e2", "response_id": "r",
                       "output_index": 0, "item": final}, d.BETA, d.GA)
    assert [e["type"] for e in out] == ["response.output_item.done", "conversation.item.done"]
    assert out[1]["item"]["status"] == "completed"
    assert out[1]["item"]["content"] == [{"type": "output_audio", "transcript": "hi"}]
    assert d.translate(out[1], d.GA, d.BETA) == []


def test_response_create_params() -> None:
    beta = {"type": "response.create", "response": {"modalities": ["text"], "voice": "alloy",
                                                    "output_audio_format": "pcm16", "instructions": "x"}}
    [ga] = d.translate(beta, d.BETA, d.GA)
    assert ga["response"] == {"output_modalities": ["text"], "instructions": "x",
                              "audio": {"output": {"voice": "alloy", "format": {"type": "audio/pcm", "rate": 24000}}}}
    assert d.translate(ga, d.GA, d.BETA) == [beta]


def test_response_done_output_items() -> None:
    ga = {"type": "response.done", "response": {
        "id": "r", "status": "completed", "output_modalities": ["audio"],
        "output": [{"id": "i", "type": "message", "content": [{"type": "output_audio", "transcript": "t"}]}],
        "usage": {"total_tokens": 3}}}
    [beta] = d.translate(ga, d.GA, d.BETA)
    assert beta["response"]["modalities"] == ["text", "audio"]
    assert beta["response"]["output"][0]["content"][0]["type"] == "audio"
    assert beta["response"]["usage"] == {"total_tokens": 3}
    assert d.translate(beta, d.BETA, d.GA) == [ga]


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"type": "session.update", "session": {"type": "realtime"}}, d.GA),
        ({"type": "session.update", "session": {"audio": {}}}, d.GA),
        ({"type": "session.update", "session": {"input_audio_format": "pcm16"}}, d.BETA),
        ({"type": "session.update", "session": {"modalities": ["text"]}}, d.BETA),
        ({"type": "session.update", "session": {"instructions": "x"}}, None),
        ({"type": "response.create", "response": {"output_modalities": ["text"]}}, d.GA),
        ({"type": "response.create", "response": {"modalities": ["text"]}}, d.BETA),
        ({"type": "response.create"}, None),
        ({"type": "response.output_audio.delta"}, d.GA),
        ({"type": "response.audio.delta"}, d.BETA),
        ({"type": "conversation.item.create", "item": {"content": [{"type": "output_text"}]}}, d.GA),
        ({"type": "conversation.item.create", "item": {"content": [{"type": "input_text"}]}}, None),
    ],
)
def test_detect(event: dict, expected: str | None) -> None:
    assert d.detect(event) == expected


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)
_beta_session = st.fixed_dictionaries(
    {},
    optional={
        "modalities": st.sampled_from([["text"], ["text", "audio"]]),
        "voice": st.text(max_size=8),
        "instructions": st.text(max_size=20),
        "input_audio_format": st.sampled_from(d.AUDIO_FORMATS),
        "output_audio_format": st.sampled_from(d.AUDIO_FORMATS),
        "input_audio_transcription": _json,
        "turn_detection": _json,
        "tools": st.lists(_json, max_size=2),
        "tool_choice": st.text(max_size=5),
        "max_response_output_tokens": st.integers(1, 4096),
    },
)


@given(_beta_session)
def test_session_round_trip_beta_ga_beta(session: dict) -> None:
    ev = {"type": "session.update", "session": session}
    [ga] = d.translate(ev, d.BETA, d.GA)
    assert d.detect(ga) == d.GA
    assert d.translate(ga, d.GA, d.BETA) == [ev]


@given(_beta_session)
def test_session_round_trip_ga_beta_ga(session: dict) -> None:
    [ga] = d.translate({"type": "session.update", "session": session}, d.BETA, d.GA)
    [beta] = d.translate(ga, d.GA, d.BETA)
    assert d.translate(beta, d.BETA, d.GA) == [ga]


@given(st.sampled_from(NAME_PAIRS), st.dictionaries(st.sampled_from(["delta", "item_id", "x"]), _json, max_size=3))
def test_name_round_trip_property(pair: tuple[str, str], extra: dict) -> None:
    ev = {**extra, "type": pair[0]}
    assert d.translate(d.translate(ev, d.BETA, d.GA)[0], d.GA, d.BETA) == [ev]


@pytest.mark.parametrize(("beta", "ga"), [(["text"], ["text"]), (["text", "audio"], ["audio"]),
                                          (["audio", "text"], ["audio"])])
def test_modalities(beta: list, ga: list) -> None:
    [out] = d.translate({"type": "session.update", "session": {"modalities": beta}}, d.BETA, d.GA)
    assert out["session"]["output_modalities"] == ga
    [back] = d.translate(out, d.GA, d.BETA)
    assert set(back["session"]["modalities"]) == set(beta)
