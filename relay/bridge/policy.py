"""The device policy: what a device may put in each client event (an allowlist, sans-I/O).

Every client event a device sends is checked against the tables below after it has been
translated to the beta dialect (``relay.upstream.dialect``; GA-shaped events get there
first, so both shapes meet the same rules). Anything not listed is refused by default,
so a field the upstream adds tomorrow does not reach it from a device.

Two kinds of refusal:

* a **field** that is not listed, or that the assistant's ``device_update_allow`` does not
  grant, is removed; the rest of the event still goes upstream, and the device gets one
  ``error`` event naming every removed field (``refused``);
* a **value** that cannot be trimmed away (an item whose ``type``, ``role`` or content part
  type is not allowed, a field of the wrong JSON type) refuses the whole event.

What the assistant's policy decides (``device_update_allow``, the session fields a device
may change): the ``session.update`` fields (whole fields or ``field.sub`` entries), the
``response.create`` overrides gated by the session field of the same meaning
(``RESPONSE_GATED_FIELDS``), and ``system`` messages (``ROLE_NEEDS``: only when the device
may change ``instructions``). Roles and values are compared exactly: ``"System"`` is not
``"system"`` and is refused like any unknown role.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# --- value kinds used in the tables -------------------------------------------------
# "str": a string; "str?": a string or null; "int": an integer (not a bool); "any": any JSON
# value; "metadata": an object of string values; a tuple: one of these exact strings; the
# names "session", "item", "response", "input" and "content" refer to the rules below.

#: fields every client event may carry
COMMON_FIELDS: dict[str, Any] = {"type": "str", "event_id": "str"}

#: per client event type (beta names; GA uses the same ones), the fields a device may set
EVENT_FIELDS: dict[str, dict[str, Any]] = {
    "session.update": {"session": "session"},
    "input_audio_buffer.append": {"audio": "str"},
    "input_audio_buffer.commit": {},
    "input_audio_buffer.clear": {},
    "conversation.item.create": {"previous_item_id": "str?", "item": "item"},
    "conversation.item.delete": {"item_id": "str"},
    "conversation.item.retrieve": {"item_id": "str"},
    "conversation.item.truncate": {"item_id": "str", "content_index": "int", "audio_end_ms": "int"},
    "response.create": {"response": "response"},
    "response.cancel": {"response_id": "str"},
    "output_audio_buffer.clear": {},
}

#: fields an event cannot do without (refused whole when missing)
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {"session.update": ("session",), "conversation.item.create": ("item",)}

#: ``response.create`` fields any device may set
RESPONSE_FIELDS: dict[str, Any] = {"conversation": ("auto", "none"), "metadata": "metadata", "input": "input"}
#: ``response.create`` overrides a device may set only when the assistant lets it change this session field
RESPONSE_GATED_FIELDS: dict[str, str] = {
    "instructions": "instructions", "prompt": "instructions", "tools": "tools", "tool_choice": "tool_choice",
    "voice": "voice", "modalities": "modalities", "temperature": "temperature",
    "max_response_output_tokens": "max_response_output_tokens", "max_output_tokens": "max_response_output_tokens",
}

#: per item type, the fields a device may set on a conversation item (``conversation.item.create``
#: and each entry of ``response.create``'s ``input``)
ITEM_FIELDS: dict[str, dict[str, Any]] = {
    "message": {"id": "str", "type": "str", "object": "str", "status": "str", "role": "str", "content": "content"},
    "function_call_output": {"id": "str", "type": "str", "object": "str", "status": "str", "call_id": "str",
                             "output": "str"},
}
#: ``response.create`` ``input`` may also point at an existing item
ITEM_REFERENCE_FIELDS: dict[str, Any] = {"type": "str", "id": "str"}
#: per message role, the content part types a device may send (beta names; GA's output_* become these)
ROLE_PARTS: dict[str, frozenset[str]] = {
    "user": frozenset({"input_text", "input_audio", "input_image"}),
    "assistant": frozenset({"text", "audio"}),
    "system": frozenset({"input_text"}),
}
#: roles a device may use only when the assistant lets it change this session field
ROLE_NEEDS: dict[str, str] = {"system": "instructions"}
#: per content part type, its fields
PART_FIELDS: dict[str, dict[str, Any]] = {
    "input_text": {"type": "str", "text": "str"},
    "text": {"type": "str", "text": "str"},
    "input_audio": {"type": "str", "audio": "str", "transcript": "str?"},
    "audio": {"type": "str", "audio": "str", "transcript": "str?"},
    "input_image": {"type": "str", "image_url": "str", "detail": ("auto", "low", "high")},
}

#: session fields fixed by the call's negotiated media, never changed by a device
MEDIA_FIXED_FIELDS = frozenset({"input_audio_format", "output_audio_format"})
#: session keys a device may echo back that carry no setting (ignored, not refused)
SESSION_IGNORED_KEYS = frozenset({"type", "object", "id"})
MAX_ITEMS = 128  # content parts per item, items per response input

#: the error code for removed fields, per event type
REFUSED_FIELD_CODES = {"session.update": "session_field_not_allowed",
                       "response.create": "response_field_not_allowed"}
REFUSED_FIELD_CODE = "field_not_allowed"


class Refused(Exception):
    """The whole event is refused: ``code`` and ``param`` go into the device's error event."""

    def __init__(self, message: str, *, code: str, param: str) -> None:
        super().__init__(message)
        self.code = code
        self.param = param


@dataclass
class Verdict:
    """What ``DevicePolicy.check`` decided for one event."""

    event: dict[str, Any] | None  # the event to handle (allowed fields only), or None when refused
    refused: list[str] = field(default_factory=list)  # removed field paths ("response.prompt")
    code: str | None = None  # error code when refused or fields were removed
    message: str = ""
    param: str | None = None


class DevicePolicy:
    """One assistant's device policy (built once per call from ``device_update_allow``)."""

    def __init__(self, device_update_allow: Iterable[str], base_session: dict[str, Any] | None = None) -> None:
        allow = tuple(device_update_allow)
        self._base_session = base_session or {}
        #: session fields a device may set whole ("voice"), media formats excluded
        self.session_fields = frozenset(a for a in allow if "." not in a) - MEDIA_FIXED_FIELDS
        #: session fields a device may set parts of ("input_audio_transcription" -> {"language"})
        self.session_subfields: dict[str, frozenset[str]] = {}
        for a in allow:
            if "." in a:
                head, sub = a.split(".", 1)
                self.session_subfields[head] = self.session_subfields.get(head, frozenset()) | {sub}

    def may_set(self, session_field: str) -> bool:
        """True when the device may set this session field whole."""
        return session_field in self.session_fields

    # ---------------------------------------------------------------- session.update

    def filter_session(self, session: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """The part of a ``session.update``'s session the device may set (sub-fields merged over the
        assistant's value of that field) and the refused field paths."""
        kept: dict[str, Any] = {}
        refused: list[str] = []
        for key, value in session.items():
            if key in SESSION_IGNORED_KEYS:
                continue
            if self.may_set(key):
                kept[key] = value
            elif key in self.session_subfields and isinstance(value, dict):
                subs = {k: v for k, v in value.items() if k in self.session_subfields[key]}
                refused.extend(f"session.{key}.{k}" for k in value if k not in self.session_subfields[key])
                if subs:
                    prior = self._base_session.get(key)
                    kept[key] = {**(prior if isinstance(prior, dict) else {}), **subs}
            else:
                refused.append(f"session.{key}")
        return kept, refused

    # ---------------------------------------------------------------- every event

    def check(self, event: dict[str, Any]) -> Verdict:
        """Check one beta-shaped client event whose ``type`` is a string."""
        raw_type = event.get("type")
        etype = raw_type if isinstance(raw_type, str) else ""
        fields = EVENT_FIELDS.get(etype)
        if fields is None:
            return Verdict(None, code="invalid_event_type", param="type",
                           message=f"Unknown or unsupported event type '{str(raw_type)[:64]}'.")
        missing = [f for f in REQUIRED_FIELDS.get(etype, ()) if f not in event]
        if missing:
            return Verdict(None, code="invalid_value", param=missing[0],
                           message=f"{etype} needs '{missing[0]}'.")
        refused: list[str] = []
        try:
            out = self._object(event, {**COMMON_FIELDS, **fields}, "", refused)
        except Refused as exc:
            return Verdict(None, code=exc.code, message=str(exc), param=exc.param)
        if not refused:
            return Verdict(out)
        code = REFUSED_FIELD_CODES.get(etype, REFUSED_FIELD_CODE)
        if etype == "session.update":  # the device also learns what did go through
            shown = ", ".join(sorted(r.removeprefix("session.") for r in refused))[:512]
            applied = ", ".join(sorted(out.get("session") or {})) or "none"
            message = (f"These session fields are set by the assistant and cannot be changed by the device: "
                       f"{shown}. Applied: {applied[:512]}.")
        else:
            message = f"These fields cannot be set by the device and were ignored: {', '.join(sorted(refused))[:512]}."
        return Verdict(out, refused=refused, code=code, param=refused[0], message=message)

    def _object(self, obj: dict[str, Any], fields: dict[str, Any], path: str, refused: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in obj.items():
            where = f"{path}.{key}" if path else key
            kind = fields.get(key)
            if kind is None:
                refused.append(where)
                continue
            out[key] = self._value(value, kind, where, refused)
        return out

    def _value(self, value: Any, kind: Any, path: str, refused: list[str]) -> Any:
        if isinstance(kind, tuple):
            if value not in kind:
                raise Refused(f"'{path}' must be one of {', '.join(kind)}.", code="invalid_value", param=path)
            return value
        if kind == "any":
            return value
        if kind in ("str", "str?"):
            if isinstance(value, str) or (value is None and kind == "str?"):
                return value
            raise Refused(f"'{path}' must be a string.", code="invalid_value", param=path)
        if kind == "int":
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            raise Refused(f"'{path}' must be an integer.", code="invalid_value", param=path)
        if kind == "metadata":
            if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
                return value
            raise Refused(f"'{path}' must be an object of strings.", code="invalid_value", param=path)
        if kind == "content":
            return value  # checked by _item, which knows the role
        if kind == "input":
            if not isinstance(value, list) or len(value) > MAX_ITEMS:
                raise Refused(f"'{path}' must be a list of at most {MAX_ITEMS} items.", code="invalid_value",
                              param=path)
            return [self._input_item(v, f"{path}[{i}]", refused) for i, v in enumerate(value)]
        if not isinstance(value, dict):
            raise Refused(f"'{path}' must be an object.", code="invalid_value", param=path)
        if kind == "session":
            kept, removed = self.filter_session(value)
            refused.extend(removed)
            return kept
        if kind == "item":
            return self._item(value, path, refused)
        if kind == "response":
            return self._response(value, path, refused)
        raise AssertionError(f"unknown kind {kind!r}")  # pragma: no cover - the tables are fixed

    def _response(self, resp: dict[str, Any], path: str, refused: list[str]) -> dict[str, Any]:
        fields = dict(RESPONSE_FIELDS)
        fields.update({k: "any" for k, need in RESPONSE_GATED_FIELDS.items() if self.may_set(need)})
        return self._object(resp, fields, path, refused)

    def _input_item(self, item: Any, path: str, refused: list[str]) -> dict[str, Any]:
        if isinstance(item, dict) and item.get("type") == "item_reference":
            return self._object(item, ITEM_REFERENCE_FIELDS, path, refused)
        return self._item(item, path, refused)

    def _item(self, item: Any, path: str, refused: list[str]) -> dict[str, Any]:
        if not isinstance(item, dict):
            raise Refused(f"'{path}' must be an object.", code="invalid_value", param=path)
        itype = item.get("type", "message")
        fields = ITEM_FIELDS.get(itype) if isinstance(itype, str) else None
        if fields is None:
            raise Refused(f"Items of type '{str(itype)[:64]}' cannot be created by the device.",
                          code="item_not_allowed", param=f"{path}.type")
        out = self._object(item, fields, path, refused)
        if itype != "message":
            return out
        role = item.get("role")
        parts = ROLE_PARTS.get(role) if isinstance(role, str) else None
        need = ROLE_NEEDS.get(role) if isinstance(role, str) else None
        if parts is None or (need is not None and not self.may_set(need)):
            raise Refused(f"Messages with role '{str(role)[:64]}' are not allowed from the device.",
                          code="item_not_allowed", param=f"{path}.role")
        content = item.get("content", [])
        if not isinstance(content, list) or len(content) > MAX_ITEMS:
            raise Refused(f"'{path}.content' must be a list of at most {MAX_ITEMS} parts.", code="invalid_value",
                          param=f"{path}.content")
        if "content" in out:
            out["content"] = [self._part(p, parts, f"{path}.content[{i}]", refused) for i, p in enumerate(content)]
        return out

    def _part(self, part: Any, types: frozenset[str], path: str, refused: list[str]) -> dict[str, Any]:
        ptype = part.get("type") if isinstance(part, dict) else None
        if not isinstance(ptype, str) or ptype not in types:
            raise Refused(f"Content parts of type '{str(ptype)[:64]}' are not allowed here.", code="item_not_allowed",
                          param=f"{path}.type")
        return self._object(part, PART_FIELDS[ptype], path, refused)
