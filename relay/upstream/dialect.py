"""Realtime event dialects: beta <-> GA translation (pure, table-driven).

relay speaks two dialects of the OpenAI Realtime protocol:

* **beta** (``OpenAI-Beta: realtime=v1``): ``response.audio.delta``, flat
  ``session.update`` (``modalities``, ``voice``, ``input_audio_format``...),
  ``conversation.item.created``, assistant content parts ``text``/``audio``.
* **GA**: ``response.output_audio.delta``, nested ``session.update`` with
  ``type: "realtime"``, ``output_modalities``, ``audio.input/output``,
  ``conversation.item.added``/``.done`` (``.done`` once the item is final: at creation, or
  with ``response.output_item.done`` for an item streamed in a response), items' content
  parts ``output_text``/``output_audio`` (``response.content_part.*``'s ``part`` keeps
  ``text``/``audio``, as in the GA schema).

``translate(event, src, dst)`` returns a list of events (0, 1 or more) in the
target dialect; the input is never mutated. Client and server event names do
not overlap, so one function serves both directions. Internally the bridge
works in beta (the seeds' dialect) and translates at the edges.
"""

from __future__ import annotations

import copy
from typing import Any

BETA = "beta"
GA = "ga"
DIALECTS = (BETA, GA)

# --- event names ------------------------------------------------------------

#: beta event type -> GA event type (both directions use this table)
EVENT_BETA_TO_GA: dict[str, str] = {
    "response.audio.delta": "response.output_audio.delta",
    "response.audio.done": "response.output_audio.done",
    "response.audio_transcript.delta": "response.output_audio_transcript.delta",
    "response.audio_transcript.done": "response.output_audio_transcript.done",
    "response.text.delta": "response.output_text.delta",
    "response.text.done": "response.output_text.done",
    "conversation.item.created": "conversation.item.added",
}
EVENT_GA_TO_BETA: dict[str, str] = {v: k for k, v in EVENT_BETA_TO_GA.items()}
#: GA-only events with no beta counterpart: dropped when translating to beta
GA_ONLY_EVENTS = frozenset({"conversation.item.done"})

# --- audio formats ------------------------------------------------------------

AUDIO_FORMATS = ("pcm16", "g711_ulaw", "g711_alaw")
_FORMAT_BETA_TO_GA: dict[str, dict[str, Any]] = {
    "pcm16": {"type": "audio/pcm", "rate": 24000},
    "g711_ulaw": {"type": "audio/pcmu"},
    "g711_alaw": {"type": "audio/pcma"},
}
_FORMAT_GA_TO_BETA = {"audio/pcm": "pcm16", "audio/pcmu": "g711_ulaw", "audio/pcma": "g711_alaw"}


def format_to_ga(fmt: str) -> dict[str, Any]:
    """``"pcm16"`` -> ``{"type": "audio/pcm", "rate": 24000}`` etc.; unknown names pass as ``{"type": fmt}``."""
    return dict(_FORMAT_BETA_TO_GA.get(fmt, {"type": fmt}))


def format_to_beta(fmt: Any) -> Any:
    """GA format object (or string) -> beta name; unknown values are returned unchanged."""
    if isinstance(fmt, dict):
        kind = fmt.get("type")
        return _FORMAT_GA_TO_BETA.get(kind, fmt) if isinstance(kind, str) else fmt
    if isinstance(fmt, str):
        return _FORMAT_GA_TO_BETA.get(fmt, fmt)
    return fmt


# --- modalities ------------------------------------------------------------------
# beta asks for ["text"] or ["text", "audio"] (audio always comes with a transcript);
# GA for ["text"] or ["audio"] (audio implies its transcript; both at once is rejected).


def modalities_to_ga(value: Any) -> Any:
    if isinstance(value, list) and "audio" in value:
        return ["audio"]
    return value


def modalities_to_beta(value: Any) -> Any:
    if isinstance(value, list) and "audio" in value:
        return ["text", "audio"]
    return value


# --- content parts and items ---------------------------------------------------

_PART_BETA_TO_GA = {"text": "output_text", "audio": "output_audio"}
_PART_GA_TO_BETA = {v: k for k, v in _PART_BETA_TO_GA.items()}


def _part(part: Any, table: dict[str, str]) -> Any:
    if isinstance(part, dict) and part.get("type") in table:
        part = dict(part)
        part["type"] = table[part["type"]]
    return part


def _item(item: Any, table: dict[str, str]) -> Any:
    if isinstance(item, dict) and isinstance(item.get("content"), list):
        item = dict(item)
        item["content"] = [_part(p, table) for p in item["content"]]
    return item


# --- session objects ---------------------------------------------------------

# beta flat key -> GA nested path
_SESSION_BETA_TO_GA_PATHS: dict[str, tuple[str, ...]] = {
    "input_audio_format": ("audio", "input", "format"),
    "input_audio_transcription": ("audio", "input", "transcription"),
    "input_audio_noise_reduction": ("audio", "input", "noise_reduction"),
    "turn_detection": ("audio", "input", "turn_detection"),
    "output_audio_format": ("audio", "output", "format"),
    "voice": ("audio", "output", "voice"),
    "speed": ("audio", "output", "speed"),
    "modalities": ("output_modalities",),
    "max_response_output_tokens": ("max_output_tokens",),
}
_SESSION_GA_TO_BETA_PATHS = {v: k for k, v in _SESSION_BETA_TO_GA_PATHS.items()}
#: keys kept as they are in both dialects
_SESSION_COMMON = ("instructions", "tools", "tool_choice", "model", "id", "object", "expires_at", "include",
                   "tracing", "prompt", "client_secret")
#: beta-only keys GA rejects; dropped when translating to GA
_SESSION_BETA_ONLY = ("temperature",)
#: GA-only keys; dropped when translating to beta
_SESSION_GA_ONLY = ("type", "truncation")
#: the beta keys a GA server rejects at the top level of ``session`` (used by the local assistant)
BETA_ONLY_SESSION_KEYS = frozenset(set(_SESSION_BETA_TO_GA_PATHS) - {"max_response_output_tokens"}
                                   | set(_SESSION_BETA_ONLY))


def _set_path(target: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        nxt = target.get(key)
        if not isinstance(nxt, dict):
            nxt = {}
            target[key] = nxt
        target = nxt
    target[path[-1]] = value


def _get_path(source: dict[str, Any], path: tuple[str, ...]) -> tuple[bool, Any]:
    for key in path:
        if not isinstance(source, dict) or key not in source:
            return False, None
        source = source[key]
    return True, source


def session_to_ga(session: dict[str, Any]) -> dict[str, Any]:
    """Flat beta session object -> nested GA session object (``type: "realtime"`` added)."""
    out: dict[str, Any] = {"type": "realtime"}
    for key, value in session.items():
        if key in _SESSION_BETA_TO_GA_PATHS:
            if key.endswith("_audio_format"):
                value = format_to_ga(value) if isinstance(value, str) else value
            elif key == "modalities":
                value = modalities_to_ga(value)
            _set_path(out, _SESSION_BETA_TO_GA_PATHS[key], copy.deepcopy(value))
        elif key in _SESSION_BETA_ONLY:
            continue
        else:
            out[key] = copy.deepcopy(value)
    return out


def session_to_beta(session: dict[str, Any]) -> dict[str, Any]:
    """Nested GA session object -> flat beta session object."""
    out: dict[str, Any] = {}
    for key, value in session.items():
        if key in ("audio", "output_modalities", "max_output_tokens") or key in _SESSION_GA_ONLY:
            continue
        out[key] = copy.deepcopy(value)
    for path, beta_key in _SESSION_GA_TO_BETA_PATHS.items():
        found, value = _get_path(session, path)
        if found:
            if beta_key.endswith("_audio_format"):
                value = format_to_beta(value)
            elif beta_key == "modalities":
                value = modalities_to_beta(value)
            out[beta_key] = copy.deepcopy(value)
    return out


# --- response objects (response.create params and response.* server objects) ---

_RESPONSE_BETA_TO_GA_PATHS: dict[str, tuple[str, ...]] = {
    "modalities": ("output_modalities",),
    "voice": ("audio", "output", "voice"),
    "output_audio_format": ("audio", "output", "format"),
    "max_response_output_tokens": ("max_output_tokens",),
    "max_output_tokens": ("max_output_tokens",),
}
_RESPONSE_GA_TO_BETA_PATHS: dict[tuple[str, ...], str] = {
    ("output_modalities",): "modalities",
    ("audio", "output", "voice"): "voice",
    ("audio", "output", "format"): "output_audio_format",
    ("max_output_tokens",): "max_response_output_tokens",
}


def response_to_ga(resp: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in resp.items():
        if key in _RESPONSE_BETA_TO_GA_PATHS:
            if key == "output_audio_format" and isinstance(value, str):
                value = format_to_ga(value)
            elif key == "modalities":
                value = modalities_to_ga(value)
            _set_path(out, _RESPONSE_BETA_TO_GA_PATHS[key], copy.deepcopy(value))
        elif key == "temperature":
            continue
        elif key == "output" and isinstance(value, list):
            out[key] = [_item(i, _PART_BETA_TO_GA) for i in value]
        elif key == "input" and isinstance(value, list):
            out[key] = [_item(i, _PART_BETA_TO_GA) for i in value]
        else:
            out[key] = copy.deepcopy(value)
    return out


def response_to_beta(resp: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in resp.items():
        if key in ("output_modalities", "audio"):
            continue
        if key in ("output", "input") and isinstance(value, list):
            out[key] = [_item(i, _PART_GA_TO_BETA) for i in value]
        else:
            out[key] = copy.deepcopy(value)
    for path, beta_key in _RESPONSE_GA_TO_BETA_PATHS.items():
        found, value = _get_path(resp, path)
        if found:
            if beta_key == "output_audio_format":
                value = format_to_beta(value)
            elif beta_key == "modalities":
                value = modalities_to_beta(value)
            out[beta_key] = copy.deepcopy(value)
    return out


# --- whole events --------------------------------------------------------------


def _event_to_ga(event: dict[str, Any]) -> list[dict[str, Any]]:
    etype = event.get("type")
    out = dict(event)
    if etype in EVENT_BETA_TO_GA:
        out["type"] = EVENT_BETA_TO_GA[etype]
    if isinstance(out.get("session"), dict):
        out["session"] = session_to_ga(out["session"])
    if isinstance(out.get("response"), dict):
        out["response"] = response_to_ga(out["response"])
    if isinstance(out.get("item"), dict):
        out["item"] = _item(out["item"], _PART_BETA_TO_GA)
    # ``part`` of response.content_part.added/done keeps "text"/"audio" in GA too (the GA
    # schema's part types; only items' content parts are named output_text/output_audio)
    if etype == "conversation.item.created":
        # GA announces an item twice: added (possibly still empty) and done (final). An item still
        # in progress (an assistant message or function call being streamed) is done with its
        # response.output_item.done; anything else is final when it is created.
        if _dict_get(out.get("item"), "status") == "in_progress":
            return [out]
        return [out, _item_done(out)]
    if etype == "response.output_item.done" and isinstance(out.get("item"), dict):
        return [out, _item_done(out)]
    return [out]


def _dict_get(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, dict) else None


def _item_done(event: dict[str, Any]) -> dict[str, Any]:
    """GA ``conversation.item.done`` for the (final) item of ``event``."""
    done: dict[str, Any] = {"type": "conversation.item.done", "item": event["item"]}
    if "event_id" in event:
        done["event_id"] = f"{event['event_id']}_done"
    if "previous_item_id" in event:
        done["previous_item_id"] = event["previous_item_id"]
    return done


def _event_to_beta(event: dict[str, Any]) -> list[dict[str, Any]]:
    etype = event.get("type")
    if etype in GA_ONLY_EVENTS:
        return []
    out = dict(event)
    if etype in EVENT_GA_TO_BETA:
        out["type"] = EVENT_GA_TO_BETA[etype]
    if isinstance(out.get("session"), dict):
        out["session"] = session_to_beta(out["session"])
    if isinstance(out.get("response"), dict):
        out["response"] = response_to_beta(out["response"])
    if isinstance(out.get("item"), dict):
        out["item"] = _item(out["item"], _PART_GA_TO_BETA)
    if isinstance(out.get("part"), dict):
        out["part"] = _part(out["part"], _PART_GA_TO_BETA)
    return [out]


def translate(event: dict[str, Any], src: str, dst: str) -> list[dict[str, Any]]:
    """``event`` in dialect ``src`` -> zero or more events in dialect ``dst`` (events without a
    string ``type`` pass unchanged)."""
    if src not in DIALECTS or dst not in DIALECTS:
        raise ValueError(f"unknown dialect: {src!r} -> {dst!r}")
    if src == dst or not isinstance(event.get("type"), str):
        return [event]
    return _event_to_ga(event) if dst == GA else _event_to_beta(event)


def translate_one(event: dict[str, Any], src: str, dst: str) -> dict[str, Any] | None:
    """Like ``translate`` but keeps only the first resulting event (for client events, always 1:1)."""
    out = translate(event, src, dst)
    return out[0] if out else None


# --- detection --------------------------------------------------------------------

_GA_EVENT_TYPES = frozenset(EVENT_GA_TO_BETA) | GA_ONLY_EVENTS
_BETA_EVENT_TYPES = frozenset(EVENT_BETA_TO_GA)
_GA_SESSION_MARKERS = ("type", "audio", "output_modalities")
_GA_RESPONSE_MARKERS = ("output_modalities", "audio")


def detect(event: dict[str, Any]) -> str | None:
    """The dialect an event is unambiguously shaped in, or ``None`` when it fits both."""
    etype = event.get("type") if isinstance(event.get("type"), str) else None
    if etype in _GA_EVENT_TYPES:
        return GA
    if etype in _BETA_EVENT_TYPES:
        return BETA
    session = event.get("session")
    if isinstance(session, dict):
        if any(k in session for k in _GA_SESSION_MARKERS):
            return GA
        if any(k in session for k in BETA_ONLY_SESSION_KEYS):
            return BETA
    response = event.get("response")
    if isinstance(response, dict):
        if any(k in response for k in _GA_RESPONSE_MARKERS):
            return GA
        if any(k in response for k in ("modalities", "voice", "output_audio_format")):
            return BETA
    item = event.get("item")
    if isinstance(item, dict) and isinstance(item.get("content"), list):
        types = {p["type"] for p in item["content"] if isinstance(p, dict) and isinstance(p.get("type"), str)}
        if types & set(_PART_GA_TO_BETA):
            return GA
        if types & set(_PART_BETA_TO_GA):
            return BETA
    return None
