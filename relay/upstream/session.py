"""The upstream ``session.update`` that injects an assistant's configuration (pure).

Built in beta (flat) form, then translated to the upstream's dialect. Devices
never see or carry any of this: model, voice, instructions and tools come from
the assistant record, not from the device.
"""

from __future__ import annotations

from typing import Any

from relay.upstream import dialect as dl


def assistant_tools(assistant: Any) -> list[dict[str, Any]]:
    """The Realtime ``tools`` list: the assistant's own tools plus, when enabled, seed 000's device tools."""
    tools = getattr(assistant, "all_tools", None)
    if tools is None:
        tools = getattr(assistant, "tools", None) or ()
    return [t.to_realtime() for t in tools]


def beta_session(assistant: Any, *, audio_format: str = "pcm16") -> dict[str, Any]:
    """The assistant's session configuration as a flat beta ``session`` object.

    ``audio_format`` is the call's wire format both ways: ``pcm16`` (24 kHz) normally,
    ``g711_ulaw``/``g711_alaw`` for a G.711 call relayed with no transcoding.
    """
    if audio_format not in dl.AUDIO_FORMATS:
        raise ValueError(f"unknown audio format {audio_format!r}")
    session: dict[str, Any] = {
        "modalities": ["text", "audio"],
        "voice": assistant.voice,
        "input_audio_format": audio_format,
        "output_audio_format": audio_format,
        "turn_detection": assistant.turn_detection,
        "tools": assistant_tools(assistant),
        "tool_choice": "auto",
    }
    if assistant.instructions:
        session["instructions"] = assistant.instructions
    if assistant.transcription:
        session["input_audio_transcription"] = assistant.transcription
    return session


def session_update(assistant: Any, *, dialect: str, audio_format: str = "pcm16",
                   event_id: str = "relay_session") -> dict[str, Any]:
    """``session.update`` in ``dialect`` (GA also names the model; beta carries it in the URL)."""
    event: dict[str, Any] = {"type": "session.update", "event_id": event_id,
                             "session": beta_session(assistant, audio_format=audio_format)}
    if dialect == dl.GA:
        event = dl.translate(event, dl.BETA, dl.GA)[0]
        event["session"]["model"] = assistant.model
    elif dialect != dl.BETA:
        raise ValueError(f"unknown dialect {dialect!r}")
    return event
