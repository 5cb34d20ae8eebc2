"""One local-assistant Realtime session: the protocol behaviour behind one WebSocket.

Internally everything is beta-shaped; ``send`` translates to GA for GA sessions
and ``receive`` validates and translates GA client events to beta. Modes (the
``model`` query parameter):

* ``relay-echo`` (default): server VAD on appended audio; each utterance is
  committed, "transcribed" (``"[1.8 s of speech]"``) and spoken back.
* ``relay-talk``: like echo, but answers each utterance with a spoken sentence
  (espeak-ng) about it instead of echoing it.
* ``relay-loopback``: every appended chunk comes straight back as an audio
  delta inside one open response (no VAD): for latency measurement.
* ``relay-short``: like echo (same VAD), but odd-numbered utterances get a short response:
  after an idle pause (``SHORT_PAUSE_S``) one chime (``audio.chime``) in a single audio delta,
  transcript ``[chime]``; even-numbered ones are echoed. Short responses after pauses mixed with
  speech both ways: the bench's ``short`` workload.
* ``relay-fail``: closes the socket right after ``session.created``.

Text items get a text+audio reply (espeak-ng, or a tone); ``call <tool> {json}``
makes a function call when the tool is in the session; the user text
``disconnect`` closes the socket (1011), for tests.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import itertools
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from relay.assistant import audio as au
from relay.assistant.vad import EnergyVAD
from relay.upstream import dialect as dl

log = logging.getLogger("relay.assistant")

MODELS = ("relay-echo", "relay-talk", "relay-loopback", "relay-short", "relay-fail")
CHUNK_MS = 100
SHORT_PAUSE_S = 0.2  # relay-short: the "thinking" pause before a chime
CHIME_TRANSCRIPT = "[chime]"
MAX_BUFFER_MS = 60_000
CALL_RE = re.compile(r"^\s*call\s+([A-Za-z0-9_.-]+)\s*(\{.*\})?\s*$", re.S | re.I)
CLIENT_EVENTS = frozenset({
    "session.update", "input_audio_buffer.append", "input_audio_buffer.commit", "input_audio_buffer.clear",
    "conversation.item.create", "conversation.item.truncate", "conversation.item.delete",
    "conversation.item.retrieve", "response.create", "response.cancel", "output_audio_buffer.clear",
})
_ids = itertools.count(1)


def new_id(prefix: str) -> str:
    return f"{prefix}_{next(_ids):06d}{int(time.time() * 1000) % 100000:05d}"


def text_tokens(text: str) -> int:
    return math.ceil(len(text) / 4) if text else 0


def audio_in_tokens(ms: int) -> int:
    return math.ceil(ms / 100)  # ~10 tokens per second of input audio


def audio_out_tokens(ms: int) -> int:
    return math.ceil(ms / 50)  # ~20 tokens per second of output audio


def usage(in_text: str = "", in_audio_ms: int = 0, out_text: str = "", out_audio_ms: int = 0) -> dict[str, Any]:
    """Deterministic ``usage`` from lengths: text 4 chars/token, audio 10 tokens/s in and 20 tokens/s out."""
    it, ia = text_tokens(in_text), audio_in_tokens(in_audio_ms)
    ot, oa = text_tokens(out_text), audio_out_tokens(out_audio_ms)
    return {"total_tokens": it + ia + ot + oa, "input_tokens": it + ia, "output_tokens": ot + oa,
            "input_token_details": {"cached_tokens": 0, "text_tokens": it, "audio_tokens": ia},
            "output_token_details": {"text_tokens": ot, "audio_tokens": oa}}


def _is_modalities(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(m in ("text", "audio") for m in v)


def _opt_dict(v: Any) -> bool:
    return v is None or isinstance(v, dict)


_SESSION_CHECKS: dict[str, Callable[[Any], bool]] = {
    "modalities": _is_modalities,
    "instructions": lambda v: isinstance(v, str),
    "voice": lambda v: isinstance(v, str),
    "input_audio_transcription": _opt_dict,
    "turn_detection": _opt_dict,
    "input_audio_noise_reduction": _opt_dict,
    "tool_choice": lambda v: isinstance(v, (str, dict)),
    "temperature": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}


@dataclass
class _Item:
    id: str
    role: str
    type: str = "message"
    text: str = ""
    audio_ms: int = 0
    call_id: str = ""
    name: str = ""
    arguments: str = ""
    output: str = ""
    content_type: str = "text"  # input_text | input_audio | text | audio


@dataclass
class _Response:
    id: str
    modalities: list[str]
    item: _Item | None = None
    status: str = "in_progress"
    out_items: list[dict[str, Any]] = field(default_factory=list)


Send = Callable[[dict[str, Any]], Awaitable[None]]
Close = Callable[[int, str], Awaitable[None]]


class LocalSession:
    """Protocol state of one connection. ``send``/``close`` are the socket edge."""

    def __init__(self, *, model: str, dialect: str, send: Send, close: Close, speedup: float = 4.0) -> None:
        self.model = model if model in MODELS else "relay-echo"
        self.dialect = dialect
        self._send_raw = send
        self._close = close
        self.speedup = max(0.1, speedup)
        self.id = new_id("sess")
        self.session: dict[str, Any] = {
            "id": self.id, "object": "realtime.session", "model": self.model,
            "modalities": ["text", "audio"], "instructions": "", "voice": "alloy",
            "input_audio_format": "pcm16", "output_audio_format": "pcm16",
            "input_audio_transcription": None,
            "turn_detection": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                               "silence_duration_ms": 500, "create_response": True, "interrupt_response": True},
            "tools": [], "tool_choice": "auto", "temperature": 0.8, "max_response_output_tokens": "inf",
        }
        self.items: dict[str, _Item] = {}
        self.order: list[str] = []
        self._buffer = bytearray()  # committed-on-demand input audio (input format)
        self._buffer_start_ms = 0
        self._vad: EnergyVAD | None = None
        self._vad_item: str | None = None
        self._response: _Response | None = None
        self._stream_task: asyncio.Task[None] | None = None
        self._loop_response: _Response | None = None
        self._loop_audio_ms = 0
        self._pending_input: _Item | None = None  # last input the next response answers
        self._pending_audio = b""  # its audio when it is a committed utterance (input format)
        self._turns = 0  # relay-short: utterances answered so far
        self.closed = False

    # ------------------------------------------------------------------ edge

    async def send(self, event: dict[str, Any]) -> None:
        if self.closed:
            return
        event.setdefault("event_id", new_id("event"))
        for ev in dl.translate(event, dl.BETA, self.dialect):
            await self._send_raw(ev)

    async def error(self, message: str, *, code: str, param: str | None = None, event_id: str | None = None,
                    etype: str = "invalid_request_error") -> None:
        await self.send({"type": "error", "error": {"type": etype, "code": code, "message": message,
                                                    "param": param, "event_id": event_id}})

    async def start(self) -> None:
        await self.send({"type": "session.created", "session": dict(self.session)})
        if self.model == "relay-fail":
            await self.shutdown(1011, "relay-fail: closing on purpose")

    async def shutdown(self, code: int = 1000, reason: str = "") -> None:
        if self.closed:
            return
        await self._stop_stream()
        self.closed = True
        await self._close(code, reason)

    async def _stop_stream(self) -> None:
        task, self._stream_task = self._stream_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # ------------------------------------------------------------------ input

    async def receive(self, raw: str | bytes) -> None:
        try:
            event = orjson.loads(raw)
        except orjson.JSONDecodeError:
            await self.error("The server could not parse the message as JSON.", code="invalid_json")
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            await self.error("Missing required parameter: 'type'.", code="missing_required_parameter", param="type")
            return
        cid = event.get("event_id") if isinstance(event.get("event_id"), str) else None
        etype = event["type"]
        if etype not in CLIENT_EVENTS:
            await self.error(f"Invalid value: '{etype[:80]}'. Supported values are: "
                             f"{', '.join(sorted(CLIENT_EVENTS))}.", code="invalid_value", param="type", event_id=cid)
            return
        if etype == "session.update" and not await self._check_session_shape(event, cid):
            return
        if self.dialect == dl.GA:
            event = dl.translate_one(event, dl.GA, dl.BETA) or event
        handler = getattr(self, "_on_" + etype.replace(".", "_"))
        await handler(event, cid)

    async def _check_session_shape(self, event: dict[str, Any], cid: str | None) -> bool:
        session = event.get("session")
        if not isinstance(session, dict):
            await self.error("Missing required parameter: 'session'.", code="missing_required_parameter",
                             param="session", event_id=cid)
            return False
        if self.dialect == dl.GA:
            for key in session:
                if key in dl.BETA_ONLY_SESSION_KEYS:
                    await self.error(f"Unknown parameter: 'session.{key}'.", code="unknown_parameter",
                                     param=f"session.{key}", event_id=cid)
                    return False
            mods = session.get("output_modalities")
            if isinstance(mods, list) and "text" in mods and "audio" in mods:
                await self.error("Invalid 'session.output_modalities': use ['audio'] (with its transcript) or "
                                 "['text'], not both.", code="invalid_value", param="session.output_modalities",
                                 event_id=cid)
                return False
            if session.get("type") != "realtime":
                await self.error("Missing required parameter: 'session.type'.", code="missing_required_parameter",
                                 param="session.type", event_id=cid)
                return False
        else:
            for key in ("type", "audio", "output_modalities"):
                if key in session:
                    await self.error(f"Unknown parameter: 'session.{key}'.", code="unknown_parameter",
                                     param=f"session.{key}", event_id=cid)
                    return False
        return True

    async def _on_session_update(self, event: dict[str, Any], cid: str | None) -> None:
        session = event["session"]
        for key, check in _SESSION_CHECKS.items():
            if key in session and not check(session[key]):
                await self.error(f"Invalid type for 'session.{key}'.", code="invalid_type", param=f"session.{key}",
                                 event_id=cid)
                return
        for key in ("input_audio_format", "output_audio_format"):
            if key in session and session[key] not in au.RATE_HZ:
                await self.error(f"Invalid value: '{session[key]}'. Supported values are: 'pcm16', 'g711_ulaw', "
                                 "and 'g711_alaw'.", code="invalid_value", param=f"session.{key}", event_id=cid)
                return
        if "tools" in session and not (isinstance(session["tools"], list)
                                       and all(isinstance(t, dict) and isinstance(t.get("name"), str)
                                               for t in session["tools"])):
            await self.error("Invalid 'session.tools': expected an array of function tools with names.",
                             code="invalid_value", param="session.tools", event_id=cid)
            return
        if "input_audio_format" in session and session["input_audio_format"] != self.session["input_audio_format"]:
            self._buffer.clear()
            self._vad = None
        allowed = set(self.session) - {"id", "object", "model"}
        for key, value in session.items():
            if key in allowed or key in ("input_audio_noise_reduction", "speed", "tracing", "include"):
                self.session[key] = value
        if "turn_detection" in session:
            self._vad = None
        await self.send({"type": "session.updated", "session": dict(self.session)})

    @property
    def in_fmt(self) -> str:
        return self.session["input_audio_format"]

    @property
    def out_fmt(self) -> str:
        return self.session["output_audio_format"]

    def _vad_for_session(self) -> EnergyVAD | None:
        td = self.session.get("turn_detection")
        if not isinstance(td, dict) or self.model not in ("relay-echo", "relay-talk", "relay-short"):
            return None
        if self._vad is None:
            self._vad = EnergyVAD.from_turn_detection(au.RATE_HZ[self.in_fmt], td)
        return self._vad

    async def _on_input_audio_buffer_append(self, event: dict[str, Any], cid: str | None) -> None:
        try:
            audio = event.get("audio")
            if not isinstance(audio, str):
                raise ValueError("audio must be a string")
            data = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            await self.error("Invalid 'audio': expected base64-encoded audio.", code="invalid_value", param="audio",
                             event_id=cid)
            return
        if self.model == "relay-loopback":
            await self._loopback(data)
            return
        bpm = au.BYTES_PER_MS[self.in_fmt]
        self._buffer += data
        if len(self._buffer) > MAX_BUFFER_MS * bpm:
            drop = len(self._buffer) - MAX_BUFFER_MS * bpm
            drop -= drop % 2
            del self._buffer[:drop]
            self._buffer_start_ms += drop // bpm
        vad = self._vad_for_session()
        if vad is None:
            return
        for kind, ms in vad.feed(au.to_pcm16(data, self.in_fmt)):
            if kind == "speech_started":
                self._vad_item = new_id("item")
                await self.send({"type": "input_audio_buffer.speech_started", "audio_start_ms": ms,
                                 "item_id": self._vad_item})
                td = self.session.get("turn_detection") or {}
                if self._response is not None and td.get("interrupt_response", True):
                    await self._cancel_response("turn_detected")
            else:
                item_id = self._vad_item or new_id("item")
                await self.send({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": ms, "item_id": item_id})
                utterance = vad.utterance
                if self.in_fmt != "pcm16":
                    utterance = self._pcm8k_to_fmt(utterance)  # the VAD works on decoded pcm16
                self._buffer.clear()
                await self._commit(utterance, item_id)
                td = self.session.get("turn_detection") or {}
                if td.get("create_response", True):
                    await self._start_response(None)

    def _pcm8k_to_fmt(self, pcm16_8k: bytes) -> bytes:
        from relay._fast import alaw_encode, ulaw_encode

        return ulaw_encode(pcm16_8k) if self.in_fmt == "g711_ulaw" else alaw_encode(pcm16_8k)

    async def _commit(self, audio_in: bytes, item_id: str | None = None, cid: str | None = None) -> None:
        item_id = item_id or new_id("item")
        ms = au.duration_ms(audio_in, self.in_fmt)
        item = _Item(id=item_id, role="user", audio_ms=ms, content_type="input_audio")
        item.text = f"[{ms / 1000:.1f} s of speech]"
        prev = self.order[-1] if self.order else None
        self._add_item(item)
        await self.send({"type": "input_audio_buffer.committed", "previous_item_id": prev, "item_id": item_id})
        await self.send({"type": "conversation.item.created", "previous_item_id": prev,
                         "item": self._item_json(item, transcript=None)})
        await self.send({"type": "conversation.item.input_audio_transcription.completed", "item_id": item_id,
                         "content_index": 0, "transcript": item.text,
                         "usage": {"type": "duration", "seconds": ms / 1000}})  # as whisper-1 reports it
        self._pending_input = item
        self._pending_audio = audio_in

    def _add_item(self, item: _Item) -> None:
        self.items[item.id] = item
        self.order.append(item.id)
        while len(self.order) > 500:
            self.items.pop(self.order.pop(0), None)

    async def _on_input_audio_buffer_commit(self, event: dict[str, Any], cid: str | None) -> None:
        if self.model == "relay-loopback":
            await self._finish_loopback()
            return
        bpm = au.BYTES_PER_MS[self.in_fmt]
        if len(self._buffer) < 100 * bpm:
            await self.error(f"Error committing input audio buffer: buffer too small. Expected at least 100ms of "
                             f"audio, but buffer only has {len(self._buffer) // bpm:.2f}ms of audio.",
                             code="input_audio_buffer_commit_empty", event_id=cid)
            return
        data = bytes(self._buffer)
        self._buffer.clear()
        if self._vad is not None:
            self._vad.reset()
        await self._commit(data, cid=cid)

    async def _on_input_audio_buffer_clear(self, event: dict[str, Any], cid: str | None) -> None:
        self._buffer.clear()
        if self._vad is not None:
            self._vad.reset()
        if self.model == "relay-loopback":
            await self._finish_loopback()
        await self.send({"type": "input_audio_buffer.cleared"})

    async def _on_conversation_item_create(self, event: dict[str, Any], cid: str | None) -> None:
        item = event.get("item")
        if not isinstance(item, dict):
            await self.error("Missing required parameter: 'item'.", code="missing_required_parameter",
                             param="item", event_id=cid)
            return
        itype = item.get("type", "message")
        given_id = item.get("id")
        new = _Item(id=given_id if isinstance(given_id, str) else new_id("item"),
                    role=item.get("role", "user") if itype == "message" else "", type=itype)
        if new.id in self.items:
            await self.error(f"Item with id '{new.id}' already exists.", code="item_already_exists",
                             param="item.id", event_id=cid)
            return
        if itype == "function_call_output":
            if not isinstance(item.get("call_id"), str) or not isinstance(item.get("output"), str):
                await self.error("A function_call_output needs 'call_id' and 'output' strings.",
                                 code="invalid_value", param="item", event_id=cid)
                return
            new.call_id, new.output = item["call_id"], item["output"]
        elif itype == "message":
            parts = item.get("content")
            if new.role not in ("user", "assistant", "system") or not isinstance(parts, list):
                await self.error("A message item needs a valid 'role' and a 'content' array.",
                                 code="invalid_value", param="item", event_id=cid)
                return
            texts = [p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str)]
            new.text = " ".join(texts)
            new.content_type = "input_text" if new.role != "assistant" else "text"
        elif itype == "function_call":
            new.call_id, new.name = str(item.get("call_id", "")), str(item.get("name", ""))
            new.arguments = str(item.get("arguments", ""))
        else:
            await self.error(f"Invalid value: '{itype}'.", code="invalid_value", param="item.type", event_id=cid)
            return
        prev = self.order[-1] if self.order else None
        self._add_item(new)
        await self.send({"type": "conversation.item.created", "previous_item_id": prev,
                         "item": self._item_json(new)})
        if new.role == "user" or new.type == "function_call_output":
            self._pending_input = new
            if new.role == "user" and new.text.strip().lower() == "disconnect":
                await self.shutdown(1011, "disconnect requested")

    async def _on_conversation_item_delete(self, event: dict[str, Any], cid: str | None) -> None:
        item_id = event.get("item_id")
        if not isinstance(item_id, str) or item_id not in self.items:
            await self.error(f"Item with item_id '{item_id}' not found.", code="item_not_found",
                             param="item_id", event_id=cid)
            return
        del self.items[item_id]
        self.order.remove(item_id)
        await self.send({"type": "conversation.item.deleted", "item_id": item_id})

    async def _on_conversation_item_retrieve(self, event: dict[str, Any], cid: str | None) -> None:
        item_id = event.get("item_id")
        item = self.items.get(item_id) if isinstance(item_id, str) else None
        if item is None:
            await self.error(f"Item with item_id '{event.get('item_id')}' not found.", code="item_not_found",
                             param="item_id", event_id=cid)
            return
        await self.send({"type": "conversation.item.retrieved", "item": self._item_json(item)})

    async def _on_conversation_item_truncate(self, event: dict[str, Any], cid: str | None) -> None:
        item_id = event.get("item_id")
        end_ms = event.get("audio_end_ms")
        item = self.items.get(item_id) if isinstance(item_id, str) else None
        if item is None:
            await self.error(f"Item with item_id '{item_id}' not found.", code="item_not_found",
                             param="item_id", event_id=cid)
            return
        if item.role != "assistant" or item.content_type != "audio":
            await self.error("Only assistant messages with audio can be truncated.", code="invalid_value",
                             param="item_id", event_id=cid)
            return
        if not isinstance(end_ms, int) or isinstance(end_ms, bool) or end_ms < 0:
            await self.error("Invalid 'audio_end_ms': expected a non-negative integer.", code="invalid_value",
                             param="audio_end_ms", event_id=cid)
            return
        if end_ms > item.audio_ms:
            await self.error(f"Audio content of {item.audio_ms}ms is already shorter than {end_ms}ms",
                             code="invalid_value", param="audio_end_ms", event_id=cid)
            return
        item.audio_ms = end_ms
        await self.send({"type": "conversation.item.truncated", "item_id": item_id, "content_index": 0,
                         "audio_end_ms": end_ms})

    async def _on_response_create(self, event: dict[str, Any], cid: str | None) -> None:
        if self._response is not None:
            await self.error(f"Conversation already has an active response in progress: {self._response.id}. "
                             "Wait until the response is finished before creating a new one.",
                             code="conversation_already_has_active_response", event_id=cid)
            return
        params: dict[str, Any] = event["response"] if isinstance(event.get("response"), dict) else {}
        modalities = params.get("modalities")
        if modalities is not None and not _is_modalities(modalities):
            await self.error("Invalid 'response.modalities': expected a subset of ['text', 'audio'].",
                             code="invalid_value", param="response.modalities", event_id=cid)
            return
        await self._start_response(params)

    async def _on_response_cancel(self, event: dict[str, Any], cid: str | None) -> None:
        if self._response is None:
            await self.error("Cancellation failed: no active response found", code="response_cancel_not_active",
                             event_id=cid)
            return
        await self._cancel_response("client_cancelled")

    async def _on_output_audio_buffer_clear(self, event: dict[str, Any], cid: str | None) -> None:
        await self.send({"type": "output_audio_buffer.cleared", "response_id": self._response.id
                         if self._response else None})

    # ------------------------------------------------------------------ responses

    def _item_json(self, item: _Item, *, transcript: str | None = "") -> dict[str, Any]:
        out: dict[str, Any] = {"id": item.id, "object": "realtime.item", "type": item.type,
                               "status": "completed"}
        if item.type == "message":
            out["role"] = item.role
            if item.content_type == "input_audio":
                out["content"] = [{"type": "input_audio", "transcript": transcript}]
            elif item.content_type == "audio":
                out["content"] = [{"type": "audio", "transcript": item.text}]
            else:
                out["content"] = [{"type": item.content_type, "text": item.text}]
        elif item.type == "function_call":
            out.update(call_id=item.call_id, name=item.name, arguments=item.arguments)
        else:
            out.update(call_id=item.call_id, output=item.output)
        return out

    async def _start_response(self, params: dict[str, Any] | None) -> None:
        if self._response is not None:
            await self._cancel_response("turn_detected")
        params = params or {}
        modalities = params.get("modalities") or self.session.get("modalities") or ["text", "audio"]
        resp = _Response(id=new_id("resp"), modalities=list(modalities))
        self._response = resp
        await self.send({"type": "response.created", "response": self._response_json(resp)})
        source, audio_in = self._pending_input, self._pending_audio
        self._pending_input, self._pending_audio = None, b""
        self._stream_task = asyncio.create_task(self._run_response(resp, source, audio_in),
                                                name=f"assistant {resp.id}")

    def _response_json(self, resp: _Response, usage_: dict[str, Any] | None = None,
                       status_details: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"id": resp.id, "object": "realtime.response", "status": resp.status,
                "status_details": status_details, "output": resp.out_items, "modalities": resp.modalities,
                "voice": self.session.get("voice"), "output_audio_format": self.out_fmt, "usage": usage_}

    def _tool_names(self) -> set[str]:
        return {t["name"] for t in self.session.get("tools") or [] if isinstance(t, dict)
                and isinstance(t.get("name"), str)}

    async def _run_response(self, resp: _Response, source: _Item | None, audio_in: bytes) -> None:
        """Stream one response; runs as the session's one response task (cancelled on barge-in/cancel/close)."""
        try:
            await self._respond(resp, source, audio_in)
        except ConnectionError:
            self.closed = True
        except Exception:
            log.exception("local assistant response %s failed", resp.id)
            await self.error("The local assistant failed to produce a response.", code="server_error",
                             etype="server_error")
        finally:
            if self._stream_task is asyncio.current_task():
                self._stream_task = None

    async def _respond(self, resp: _Response, source: _Item | None, audio_in: bytes) -> None:
        if source is not None and source.role == "user" and source.content_type == "input_text":
            m = CALL_RE.match(source.text)
            if m and m.group(1) in self._tool_names():
                await self._function_call(resp, m.group(1), m.group(2) or "{}", source)
                return
            reply = f"You said: {source.text}"
            await self._speak(resp, reply, await au.speak(reply) if "audio" in resp.modalities else b"",
                              source)
        elif source is not None and source.type == "function_call_output":
            reply = f"The tool returned {source.output[:200]}"
            await self._speak(resp, reply, await au.speak(reply) if "audio" in resp.modalities else b"",
                              source)
        elif source is not None and source.content_type == "input_audio" and self.model == "relay-talk":
            reply = f"I heard {source.audio_ms / 1000:.1f} seconds of speech."
            await self._speak(resp, reply, await au.speak(reply) if "audio" in resp.modalities else b"", source)
        elif source is not None and source.content_type == "input_audio" and self.model == "relay-short" \
                and self._next_turn_is_short():
            await asyncio.sleep(SHORT_PAUSE_S)
            await self._speak(resp, CHIME_TRANSCRIPT, au.chime() if "audio" in resp.modalities else b"", source,
                              single_delta=True)
        elif source is not None and source.content_type == "input_audio":
            reply = f"Echo of {source.text}"
            await self._speak(resp, reply, audio_in if "audio" in resp.modalities else b"", source,
                              audio_fmt=self.in_fmt)
        else:
            reply = "Hello from relay's local assistant."
            await self._speak(resp, reply, await au.speak(reply) if "audio" in resp.modalities else b"", None)

    def _next_turn_is_short(self) -> bool:
        """relay-short: utterances 1, 3, 5, ... get a chime, the others their echo."""
        self._turns += 1
        return self._turns % 2 == 1

    async def _function_call(self, resp: _Response, name: str, args: str, source: _Item) -> None:
        try:
            orjson.loads(args)
        except orjson.JSONDecodeError:
            args = "{}"
        item = _Item(id=new_id("item"), role="", type="function_call", call_id=new_id("call"), name=name,
                     arguments=args)
        self._add_item(item)
        base = {"response_id": resp.id, "output_index": 0}
        await self.send({"type": "response.output_item.added", **base,
                         "item": {**self._item_json(item), "status": "in_progress", "arguments": ""}})
        await self.send({"type": "conversation.item.created", "previous_item_id": source.id,
                         "item": {**self._item_json(item), "status": "in_progress", "arguments": ""}})
        for i in range(0, len(args), 16):
            await self.send({"type": "response.function_call_arguments.delta", **base, "item_id": item.id,
                             "call_id": item.call_id, "delta": args[i:i + 16]})
        await self.send({"type": "response.function_call_arguments.done", **base, "item_id": item.id,
                         "call_id": item.call_id, "name": name, "arguments": args})
        await self.send({"type": "response.output_item.done", **base, "item": self._item_json(item)})
        resp.out_items.append(self._item_json(item))
        await self._done(resp, usage(in_text=source.text + self.session.get("instructions", ""), out_text=name + args))

    async def _speak(self, resp: _Response, text: str, audio: bytes, source: _Item | None, *,
                     audio_fmt: str = "pcm16", single_delta: bool = False) -> None:
        """Stream ``text`` (transcript) with ``audio`` (in ``audio_fmt``; converted to the output format),
        in ``CHUNK_MS`` deltas, or all of it in one delta (``single_delta``)."""
        audio_on = "audio" in resp.modalities and bool(audio)
        item = _Item(id=new_id("item"), role="assistant", text="", content_type="audio" if audio_on else "text")
        resp.item = item
        self._add_item(item)
        base = {"response_id": resp.id, "item_id": item.id, "output_index": 0, "content_index": 0}
        prev = source.id if source else (self.order[-2] if len(self.order) > 1 else None)
        await self.send({"type": "response.output_item.added", "response_id": resp.id, "output_index": 0,
                         "item": {**self._item_json(item), "status": "in_progress", "content": []}})
        await self.send({"type": "conversation.item.created", "previous_item_id": prev,
                         "item": {**self._item_json(item), "status": "in_progress", "content": []}})
        part = {"type": "audio", "transcript": ""} if audio_on else {"type": "text", "text": ""}
        await self.send({"type": "response.content_part.added", **base, "part": part})
        words = text.split(" ")
        if audio_on:
            data = au.convert(audio, audio_fmt, self.out_fmt)
            bpm = au.BYTES_PER_MS[self.out_fmt]
            chunk = max(bpm, len(data)) if single_delta else CHUNK_MS * bpm
            n_chunks = max(1, math.ceil(len(data) / chunk))
            said = 0
            for k in range(n_chunks):
                piece = data[k * chunk:(k + 1) * chunk]
                await self.send({"type": "response.audio.delta", **base,
                                 "delta": base64.b64encode(piece).decode()})
                item.audio_ms += len(piece) // bpm
                upto = math.ceil((k + 1) * len(words) / n_chunks)
                if upto > said:
                    delta = (" " if said else "") + " ".join(words[said:upto])
                    item.text += delta
                    said = upto
                    await self.send({"type": "response.audio_transcript.delta", **base, "delta": delta})
                await asyncio.sleep(CHUNK_MS / 1000 / self.speedup)
            await self.send({"type": "response.audio.done", **base})
            await self.send({"type": "response.audio_transcript.done", **base, "transcript": item.text})
            part = {"type": "audio", "transcript": item.text}
        else:
            for i, word in enumerate(words):
                delta = (" " if i else "") + word
                item.text += delta
                await self.send({"type": "response.text.delta", **base, "delta": delta})
            await self.send({"type": "response.text.done", **base, "text": item.text})
            part = {"type": "text", "text": item.text}
        await self.send({"type": "response.content_part.done", **base, "part": part})
        await self.send({"type": "response.output_item.done", "response_id": resp.id, "output_index": 0,
                         "item": self._item_json(item)})
        resp.out_items.append(self._item_json(item))
        in_text = (source.text if source and source.content_type != "input_audio" else "") + \
            self.session.get("instructions", "")
        in_audio = source.audio_ms if source and source.content_type == "input_audio" else 0
        await self._done(resp, usage(in_text=in_text, in_audio_ms=in_audio, out_text=item.text,
                                     out_audio_ms=item.audio_ms))

    async def _done(self, resp: _Response, usage_: dict[str, Any], status: str = "completed",
                    details: dict[str, Any] | None = None) -> None:
        resp.status = status
        if self._response is resp:
            self._response = None
        await self.send({"type": "response.done", "response": self._response_json(resp, usage_, details)})

    async def _cancel_response(self, reason: str) -> None:
        resp = self._response
        if resp is None:
            return
        await self._stop_stream()
        if self._response is not resp:  # finished while we waited
            return
        item = resp.item
        if item is not None:
            resp.out_items.append({**self._item_json(item), "status": "incomplete"})
        out_ms = item.audio_ms if item else 0
        await self._done(resp, usage(out_text=item.text if item else "", out_audio_ms=out_ms), status="cancelled",
                         details={"type": "cancelled", "reason": reason})

    # ------------------------------------------------------------------ loopback mode

    async def _loopback(self, data: bytes) -> None:
        if self._loop_response is None:
            resp = _Response(id=new_id("resp"), modalities=["audio"])
            item = _Item(id=new_id("item"), role="assistant", content_type="audio")
            resp.item = item
            self._add_item(item)
            self._loop_response = resp
            self._response = resp
            await self.send({"type": "response.created", "response": self._response_json(resp)})
            await self.send({"type": "response.output_item.added", "response_id": resp.id, "output_index": 0,
                             "item": {**self._item_json(item), "status": "in_progress", "content": []}})
            await self.send({"type": "response.content_part.added", "response_id": resp.id, "item_id": item.id,
                             "output_index": 0, "content_index": 0, "part": {"type": "audio", "transcript": ""}})
        resp = self._loop_response
        assert resp.item is not None
        out = au.convert(data, self.in_fmt, self.out_fmt) if self.in_fmt != self.out_fmt else data
        resp.item.audio_ms += au.duration_ms(out, self.out_fmt)
        self._loop_audio_ms += au.duration_ms(data, self.in_fmt)
        await self.send({"type": "response.audio.delta", "response_id": resp.id, "item_id": resp.item.id,
                         "output_index": 0, "content_index": 0, "delta": base64.b64encode(out).decode()})

    async def _finish_loopback(self) -> None:
        resp, self._loop_response = self._loop_response, None
        if resp is None or resp.item is None:
            return
        base = {"response_id": resp.id, "item_id": resp.item.id, "output_index": 0, "content_index": 0}
        await self.send({"type": "response.audio.done", **base})
        await self.send({"type": "response.audio_transcript.done", **base, "transcript": ""})
        await self.send({"type": "response.content_part.done", **base, "part": {"type": "audio", "transcript": ""}})
        await self.send({"type": "response.output_item.done", "response_id": resp.id, "output_index": 0,
                         "item": self._item_json(resp.item)})
        resp.out_items.append(self._item_json(resp.item))
        await self._done(resp, usage(in_audio_ms=self._loop_audio_ms, out_audio_ms=resp.item.audio_ms))
        self._loop_audio_ms = 0
