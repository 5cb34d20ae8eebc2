"""Light structural checks of the upstream's events before relay acts on them or forwards them.

Only the fields relay and devices rely on are checked, by JSON type (beta names: the core
checks after translating the upstream's dialect to beta). An event that fails is dropped
and counted by the core; an unknown event type passes (the upstream may add events), but
its common fields (``event_id``, ``item_id``, ``response_id``, indexes) are still checked.
"""

from __future__ import annotations

from typing import Any

STR = (str,)
INT = (int,)
OBJ = (dict,)
LIST = (list,)

#: fields any server event may carry: checked when present
COMMON_FIELDS: dict[str, tuple[type, ...]] = {
    "event_id": STR, "item_id": STR, "response_id": STR, "previous_item_id": STR + (type(None),),
    "output_index": INT, "content_index": INT, "call_id": STR,
}

#: per server event type: field -> (allowed JSON types, required)
EVENT_SHAPES: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "error": {"error": (OBJ, True)},
    "session.created": {"session": (OBJ, True)},
    "session.updated": {"session": (OBJ, True)},
    "conversation.created": {"conversation": (OBJ, False)},
    "conversation.item.created": {"item": (OBJ, True)},
    "conversation.item.retrieved": {"item": (OBJ, True)},
    "conversation.item.input_audio_transcription.completed": {"transcript": (STR, True)},
    "conversation.item.input_audio_transcription.delta": {"delta": (STR, True)},
    "response.created": {"response": (OBJ, True)},
    "response.done": {"response": (OBJ, True)},
    "response.output_item.added": {"item": (OBJ, True)},
    "response.output_item.done": {"item": (OBJ, True)},
    "response.content_part.added": {"part": (OBJ, True)},
    "response.content_part.done": {"part": (OBJ, True)},
    "response.audio.delta": {"delta": (STR, True)},
    "response.audio_transcript.delta": {"delta": (STR, True)},
    "response.audio_transcript.done": {"transcript": (STR, True)},
    "response.text.delta": {"delta": (STR, True)},
    "response.text.done": {"text": (STR, True)},
    "response.function_call_arguments.delta": {"delta": (STR, True)},
    "response.function_call_arguments.done": {"name": (STR, False)},  # arguments: any JSON (serialised if not text)
    "rate_limits.updated": {"rate_limits": (LIST, True)},
}

#: fields inside ``response`` (response.created / response.done) that relay reads
RESPONSE_FIELDS: dict[str, tuple[type, ...]] = {
    "id": STR, "status": STR, "output": LIST, "usage": OBJ + (type(None),), "status_details": OBJ + (type(None),),
}
#: fields inside ``item`` that relay reads
ITEM_FIELDS: dict[str, tuple[type, ...]] = {"id": STR, "type": STR, "role": STR, "content": LIST, "call_id": STR,
                                            "name": STR}
_NESTED = {"response": RESPONSE_FIELDS, "item": ITEM_FIELDS}


def _type_ok(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in types:
        return False  # a bool is an int in Python, never in JSON
    return isinstance(value, types)


def problem(event: dict[str, Any]) -> str | None:
    """``None`` when the (beta-shaped) upstream event has the shape relay relies on, else the offending field."""
    for key, types in COMMON_FIELDS.items():
        if key in event and not _type_ok(event[key], types):
            return key
    shape = EVENT_SHAPES.get(event.get("type", ""))
    if shape is None:
        return None
    for key, (types, required) in shape.items():
        if key not in event:
            if required:
                return key
            continue
        value = event[key]
        if not _type_ok(value, types):
            return key
        nested = _NESTED.get(key)
        if nested is not None:
            for sub, sub_types in nested.items():
                if sub in value and not _type_ok(value[sub], sub_types):
                    return f"{key}.{sub}"
    return None
