"""The judge has teeth: events relay used to send (or could send) wrong are refused, OpenAI's own
reference examples pass."""

from __future__ import annotations

from .judge import violation

GA_DELTA = {"type": "response.output_audio.delta", "event_id": "e", "response_id": "r", "item_id": "i",
            "output_index": 0, "content_index": 0, "delta": "AAA="}


def test_reference_examples_pass() -> None:
    assert violation(GA_DELTA, "ga") is None
    assert violation({**GA_DELTA, "type": "response.audio.delta"}, "beta") is None
    part = {"type": "response.content_part.added", "event_id": "e", "response_id": "r", "item_id": "i",
            "output_index": 0, "content_index": 0, "part": {"type": "audio", "transcript": ""}}
    assert violation(part, "ga") is None
    assert violation(part, "beta") is None


def test_wrong_events_are_refused() -> None:
    assert violation({**GA_DELTA, "type": "response.audio.delta"}, "ga") == "not a ga server event type"
    assert violation(GA_DELTA, "beta") == "not a beta server event type"
    assert "delta" in violation({k: v for k, v in GA_DELTA.items() if k != "delta"}, "ga")
    assert "output_index" in violation({**GA_DELTA, "output_index": "0"}, "ga")  # strict: no coercion
    part = {"type": "response.content_part.added", "event_id": "e", "response_id": "r", "item_id": "i",
            "output_index": 0, "content_index": 0, "part": {"type": "output_audio", "transcript": ""}}
    assert "part.type" in violation(part, "ga")
    transcribed = {"type": "conversation.item.input_audio_transcription.completed", "event_id": "e",
                   "item_id": "i", "content_index": 0, "transcript": "hi"}
    assert "usage" in violation(transcribed, "ga")
    assert violation({**transcribed, "usage": {"type": "duration", "seconds": 1.5}}, "ga") is None
    done = {"type": "conversation.item.done", "event_id": "e", "previous_item_id": None, "item": {
        "id": "i", "type": "message", "role": "assistant", "status": "in_progress", "content": []}}
    assert "in_progress" in violation(done, "ga")


def test_the_beta_model_gap_is_bridged_narrowly() -> None:
    session = {"id": "s", "object": "realtime.session", "model": "relay-echo", "modalities": ["text", "audio"]}
    assert violation({"type": "session.created", "event_id": "e", "session": session}, "beta") is None
    assert violation({"type": "session.created", "event_id": "e", "session": {**session, "model": 7}}, "beta")
    assert violation({"type": "session.created", "event_id": "e", "session": {**session, "modalities": ["x"]}},
                     "beta")
