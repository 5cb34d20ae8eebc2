"""CallCore: the per-call state machine between one device and one upstream.

No sockets, no clock reads: every input carries ``now`` (seconds, float, any
monotonic origin). After each input the edge calls ``drain_actions()`` and
performs the returned actions in order (see ``relay.bridge.actions``).

Edge contract (media engineer):

* create: ``core = CallCore(assistant, audio_format="pcm16"|"g711_ulaw"|"g711_alaw", now=now, ...)``;
  ``device_dialect`` is the edge's first guess of the device's dialect (default beta)
* upstream connected: ``core.on_upstream_opened(now)`` -> SendUpstream(session.update ...); device
  events that arrived before (at most 64) are held by the core and sent right after it
* every upstream JSON event (already parsed): ``core.on_upstream_event(event, now)``
* every data-channel message (str or bytes): ``core.on_device_message(raw, now)``
* uplink audio: ``append_json(audio_bytes)`` in the call's audio format, sent upstream by the
  edge itself (no per-frame call into the core)
* media clock, every 20 ms: ``frame = core.pull_frame(now)`` -> 20 ms of downlink audio in
  ``core.audio_format`` (pcm16 24 kHz mono, or G.711 8 kHz) or ``None`` when idle
* timers: keep one timer at ``core.next_deadline()`` and call ``core.on_timer(now)``
* server tool results: ``core.on_tool_result(call_id, output_json, now)``
* ``core.on_upstream_closed(reason, now)`` / ``core.on_device_closed(now)``
* a WebSocket edge (no RTP) passes ``audio_over_events=True``: audio deltas are then forwarded
  to the client like any event and ``pull_frame`` stays idle
* stop when an ``EndCall`` action comes out (``core.ended`` is then True); every
  input after that is ignored.

Internally events are handled in the beta dialect; the upstream's events are
translated to beta on the way in and to the device's dialect on the way out.
"""

from __future__ import annotations

import binascii
import itertools
import logging
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

import orjson
import pybase64

from relay._fast import PlayoutBuffer
from relay.bridge import shapes
from relay.bridge.actions import (
    Action,
    EndCall,
    RecordUsage,
    RecycleUpstream,
    RunServerTool,
    SendDevice,
    SendUpstream,
)
from relay.bridge.policy import EVENT_FIELDS, DevicePolicy
from relay.bridge.trim import BacklogTrimmer
from relay.upstream import dialect as dl
from relay.upstream.session import beta_session, session_update

log = logging.getLogger("relay.bridge")

FRAME_MS = 20
#: bytes per millisecond and the silence byte of each wire format
AUDIO_FORMATS: dict[str, tuple[int, int]] = {
    "pcm16": (48, 0x00),  # 24 kHz * 2 bytes
    "g711_ulaw": (8, 0xFF),
    "g711_alaw": (8, 0xD5),
}
#: client events a device may send (anything else gets an error event); their fields: relay.bridge.policy
DEVICE_EVENTS = frozenset(EVENT_FIELDS)
#: never shown to devices (prompts and tool definitions are the operator's)
REDACTED_SESSION_FIELDS = ("instructions", "tools", "prompt", "tracing", "client_secret")
HISTORY_TEXT_MAX_CHARS = 4000
EARLY_EVENTS_MAX = 64  # device events held while the first upstream connects
SEEN_MAX = 256


def _str(value: Any) -> str | None:
    """``value`` if it is a string, else None (events come from outside: never trust a field's type)."""
    return value if isinstance(value, str) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def append_json(audio: bytes) -> bytes:
    """``input_audio_buffer.append`` for raw audio in the call's input format (same in both dialects),
    as UTF-8 JSON text: byte for byte what ``orjson.dumps`` writes for the event's dict, built directly
    (base64's alphabet needs no JSON escaping). The uplink's per-chunk event (every 40 ms per call),
    sent with ``UpstreamClient.send_json``."""
    return b'{"type":"input_audio_buffer.append","audio":"%b"}' % pybase64.b64encode(audio)


_error_ids = itertools.count(1)


def error_event(message: str, *, code: str, etype: str = "invalid_request_error", param: str | None = None,
                client_event_id: str | None = None, event_id: str | None = None) -> dict[str, Any]:
    """The one builder of ``error`` events (the core's and both edges'), in the shape both dialects share:
    ``param`` and the client's ``event_id`` (``client_event_id``) when the error is about one, else null;
    ``event_id``: the call's next id, else one of relay's own (``relay_err_<n>``)."""
    return {"type": "error", "event_id": event_id or f"relay_err_{next(_error_ids)}",
            "error": {"type": etype, "code": code, "message": message, "param": param,
                      "event_id": client_event_id}}


class _BoundedSet:
    """A set that forgets its oldest entries beyond ``limit`` (ids seen during one call)."""

    def __init__(self, limit: int = SEEN_MAX) -> None:
        self._d: OrderedDict[str, None] = OrderedDict()
        self._limit = limit

    def add(self, key: str) -> None:
        self._d[key] = None
        self._d.move_to_end(key)
        while len(self._d) > self._limit:
            self._d.popitem(last=False)

    def discard(self, key: str) -> None:
        self._d.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._d

    def __len__(self) -> int:
        return len(self._d)


class CallCore:
    """One call's bridge state: dialects, playout accounting, barge-in, tools, deadlines."""

    def __init__(
        self,
        assistant: Any,
        *,
        now: float,
        audio_format: str = "pcm16",
        upstream_dialect: str | None = None,
        device_dialect: str = dl.BETA,
        max_call_s: float = 3600.0,
        recycle_after_s: float | None = 3300.0,
        device_event_max_bytes: int = 256 * 1024,
        history_max_items: int = 64,
        audio_over_events: bool = False,
        trim_above_ms: int = 20,
        log_id: str = "",
    ) -> None:
        if audio_format not in AUDIO_FORMATS:
            raise ValueError(f"unknown audio format {audio_format!r}")
        self.assistant = assistant
        self.audio_format = audio_format
        self.bytes_per_ms, silence = AUDIO_FORMATS[audio_format]
        self.frame_bytes = self.bytes_per_ms * FRAME_MS
        self.upstream_dialect: str = upstream_dialect or getattr(assistant, "dialect", None) or dl.BETA
        if self.upstream_dialect not in dl.DIALECTS:
            raise ValueError(f"unknown dialect {self.upstream_dialect!r}")
        if device_dialect not in dl.DIALECTS:
            raise ValueError(f"unknown dialect {device_dialect!r}")
        # the edge's first guess (WebSocket handshake, data-channel label); an event shaped
        # unambiguously in the other dialect switches it (on_device_message)
        self.device_dialect = device_dialect
        self.device_event_max_bytes = device_event_max_bytes
        # WebSocket clients (seed 003) get the audio deltas as events and play (and truncate) themselves
        self.audio_over_events = audio_over_events
        self.log_id = log_id
        self.ended = False
        self.end_reason: str | None = None
        self._actions: list[Action] = []
        self._seq = 0
        self._playout = PlayoutBuffer(self.bytes_per_ms, frame_ms=FRAME_MS, capacity_ms=120000, silence_byte=silence)
        # a real-time stream's standing delay is trimmed from its pauses (relay.bridge.trim); PCM16 only
        self._trim = BacklogTrimmer(above_ms=trim_above_ms, frame_ms=FRAME_MS) \
            if trim_above_ms > 0 and audio_format == "pcm16" and not audio_over_events else None

        # tools
        tools = getattr(assistant, "all_tools", None)
        tools = tuple(getattr(assistant, "tools", ())) if tools is None else tuple(tools)
        self._server_tools = {t.name: t.webhook_url for t in tools if t.side == "server"}
        self._client_tools = {t.name for t in tools if t.side != "server"}
        self._tool_calls_seen = _BoundedSet()
        self._pending_server_tools: set[str] = set()
        self._response_create_pending = False

        # the device policy (an allowlist per client event, from device_update_allow): relay.bridge.policy
        self._base_session = beta_session(assistant, audio_format=audio_format)
        self.policy = DevicePolicy(getattr(assistant, "device_update_allow", ()), self._base_session)
        self.refused_events = 0  # device events refused whole by the policy
        self.refused_fields = 0  # fields removed from device events by the policy
        self.upstream_events_invalid = 0  # upstream events dropped for a malformed field (relay.bridge.shapes)

        # responses and playout
        self._active_response: str | None = None
        self._playing_response: str | None = None
        self._item_response: dict[str, str | None] = {}
        self._audio_done_items = _BoundedSet()
        self._muted_items = _BoundedSet()
        self._muted_responses = _BoundedSet()
        self._truncate_event_ids = _BoundedSet(64)
        self.interruptions = 0
        self.truncates: list[tuple[str, int]] = []  # (item_id, audio_end_ms), for observability and tests

        # upstream session lifecycle
        self._early_upstream: deque[dict[str, Any]] = deque(maxlen=EARLY_EVENTS_MAX)
        self._history: deque[dict[str, Any]] = deque(maxlen=history_max_items)
        self._opened_count = 0
        self._replay_item_ids = _BoundedSet(history_max_items + 8)
        self._suppress_session_events = 0
        self._recycle_after_s = recycle_after_s
        self._recycle_at: float | None = None
        self._recycle_hard_at: float | None = None
        self._recycling = False
        self._end_at = now + max_call_s

        # usage
        self.usage_totals: dict[str, int] = {}
        self.responses_done = 0

        self._up_handlers: dict[str, Callable[[dict[str, Any], float], bool]] = {
            "response.audio.delta": self._up_audio_delta,
            "response.audio.done": self._up_audio_done,
            "response.created": self._up_response_created,
            "response.done": self._up_response_done,
            "response.output_item.done": self._up_output_item_done,
            "response.function_call_arguments.done": self._up_fc_args_done,
            "input_audio_buffer.speech_started": self._up_speech_started,
            "error": self._up_error,
            "session.created": self._up_session,
            "session.updated": self._up_session,
            "conversation.item.created": self._up_item_created,
            "conversation.item.input_audio_transcription.completed": self._up_user_transcript,
            "response.audio_transcript.done": self._up_assistant_transcript,
            "response.text.done": self._up_assistant_text,
        }
        self._dev_handlers: dict[str, Callable[[dict[str, Any], float], None]] = {
            "session.update": self._dev_session_update,
            "conversation.item.create": self._dev_item_create,
            "response.cancel": self._dev_response_cancel,
            "output_audio_buffer.clear": self._dev_output_clear,
        }

    # ------------------------------------------------------------------ plumbing

    def drain_actions(self) -> list[Action]:
        """Actions produced since the last call, in order."""
        out, self._actions = self._actions, []
        return out

    @property
    def has_actions(self) -> bool:
        """True when ``drain_actions()`` would return something (cheap check for the media clock)."""
        return bool(self._actions)

    def _next_id(self, prefix: str = "relay_evt") -> str:
        self._seq += 1
        return f"{prefix}_{self._seq}"

    def _to_upstream(self, beta_event: dict[str, Any]) -> None:
        for ev in dl.translate(beta_event, dl.BETA, self.upstream_dialect):
            if self._opened_count == 0:
                # not connected yet: keep a few (the device may talk while the upstream connects)
                if len(self._early_upstream) == self._early_upstream.maxlen:
                    log.warning("upstream not connected yet; dropping an early device event",
                                extra={"session_id": self.log_id})
                self._early_upstream.append(ev)
            else:
                self._actions.append(SendUpstream(ev))

    def _to_device(self, beta_event: dict[str, Any]) -> None:
        for ev in dl.translate(beta_event, dl.BETA, self.device_dialect):
            self._actions.append(SendDevice(ev))

    def _device_error(self, message: str, *, code: str, param: str | None = None,
                      client_event_id: str | None = None, etype: str = "invalid_request_error") -> None:
        self._actions.append(SendDevice(error_event(message, code=code, etype=etype, param=param,
                                                    client_event_id=client_event_id,
                                                    event_id=self._next_id())))

    def _end(self, reason: str) -> None:
        if self.ended:
            return
        self.ended = True
        self.end_reason = reason
        self._playout.clear()
        self._actions.append(EndCall(reason))
        log.info("call ends: %s", reason, extra={"session_id": self.log_id})

    # ------------------------------------------------------------------ upstream lifecycle

    def on_upstream_opened(self, now: float) -> None:
        """The (first or a recycled) upstream socket is connected: inject the configuration;
        after a recycle also replay the text history (the device sees none of it)."""
        if self.ended:
            return
        self._opened_count += 1
        recycled = self._opened_count > 1
        self._actions.append(SendUpstream(session_update(self.assistant, dialect=self.upstream_dialect,
                                                         audio_format=self.audio_format,
                                                         event_id=self._next_id("relay_session"))))
        if recycled:
            self._suppress_session_events = 2  # session.created + session.updated of the new session
            for item_event in self._history:
                ev = orjson.loads(orjson.dumps(item_event))
                ev["event_id"] = self._next_id()
                ev["item"]["id"] = self._next_id("relay_h")
                self._replay_item_ids.add(ev["item"]["id"])
                self._to_upstream(ev)
            self._active_response = None
        while self._early_upstream:
            self._actions.append(SendUpstream(self._early_upstream.popleft()))
        self._recycling = False
        if self._recycle_after_s:
            self._recycle_at = now + self._recycle_after_s
            self._recycle_hard_at = self._recycle_at + min(300.0, self._recycle_after_s * 0.05 + 30.0)

    def on_upstream_closed(self, reason: str, now: float, code: str = "upstream_closed") -> None:
        """The current upstream failed or closed: tell the device (``error`` event ``code``), end the call."""
        if self.ended:
            return
        log.warning("upstream closed: %s", reason, extra={"session_id": self.log_id})
        self._device_error(f"The assistant's upstream connection ended: {reason}", code=code,
                           etype="server_error")
        self._end(code)

    def on_device_closed(self, now: float) -> None:
        self._end("device_closed")

    def next_deadline(self) -> float | None:
        """The earliest time ``on_timer`` must be called (max call length, upstream recycle)."""
        if self.ended:
            return None
        if self._recycle_at is not None and not self._recycling:
            return min(self._end_at, self._recycle_at)
        return self._end_at

    def on_timer(self, now: float) -> None:
        if self.ended:
            return
        if now >= self._end_at:
            self._device_error("The call reached its maximum length.", code="max_call_length",
                               etype="server_error")
            self._end("max_call_length")
            return
        if self._recycle_at is not None and not self._recycling and now >= self._recycle_at:
            busy = self._active_response is not None or self._playing_response is not None \
                or bool(self._pending_server_tools)
            if busy and self._recycle_hard_at is not None and now < self._recycle_hard_at:
                self._recycle_at = now + 1.0  # wait for a quiet moment, a second at a time
                return
            self._recycling = True
            self._recycle_at = None
            self._actions.append(RecycleUpstream("expiry"))

    # ------------------------------------------------------------------ upstream events

    def on_upstream_event(self, event: dict[str, Any], now: float) -> None:
        """One parsed event from the upstream, in the upstream's dialect."""
        if self.ended or not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return
        for ev in dl.translate(event, self.upstream_dialect, dl.BETA):
            bad = shapes.problem(ev)
            if bad is not None:  # never acted on, never forwarded (relay.bridge.shapes)
                self.upstream_events_invalid += 1
                level = logging.WARNING if self.upstream_events_invalid == 1 else logging.DEBUG
                log.log(level, "upstream event %s has a malformed '%s'; dropped (%d so far)", ev["type"][:64], bad,
                        self.upstream_events_invalid, extra={"session_id": self.log_id})
                continue
            handler = self._up_handlers.get(ev.get("type", ""))
            forward = handler(ev, now) if handler is not None else True
            if forward:
                self._to_device(ev)

    def _up_audio_delta(self, ev: dict[str, Any], now: float) -> bool:
        if self.audio_over_events:
            return True
        item_id = _str(ev.get("item_id")) or "item"
        response_id = _str(ev.get("response_id"))
        if item_id in self._muted_items or (response_id is not None and response_id in self._muted_responses):
            return False
        try:
            data = pybase64.b64decode(_str(ev.get("delta")) or "", validate=True)
        except (binascii.Error, ValueError):
            log.warning("upstream audio delta is not base64; dropped", extra={"session_id": self.log_id})
            return False
        if item_id not in self._item_response:
            if len(self._item_response) > SEEN_MAX:
                self._item_response.pop(next(iter(self._item_response)))
            self._item_response[item_id] = response_id
        if data:
            self._playout.push(item_id, data)
            if self._trim is not None:
                self._trim.received(len(data) / self.bytes_per_ms)
        return False  # audio goes over RTP, never on the data channel

    def _up_audio_done(self, ev: dict[str, Any], now: float) -> bool:
        item_id = _str(ev.get("item_id")) or "item"
        self._audio_done_items.add(item_id)
        if item_id not in self._muted_items:
            self._playout.finish(item_id)
        return True

    def _up_response_created(self, ev: dict[str, Any], now: float) -> bool:
        self._active_response = _str(_dict(ev.get("response")).get("id")) or "response"
        return True

    def _up_response_done(self, ev: dict[str, Any], now: float) -> bool:
        resp = _dict(ev.get("response"))
        rid = _str(resp.get("id")) or ""
        if self._active_response == rid or not rid:
            self._active_response = None
        if rid:  # its audio is complete even without response.audio.done (cancelled, failed, incomplete)
            for item_id, owner in self._item_response.items():
                if owner == rid:
                    self._playout.finish(item_id)
        output = resp.get("output")
        for item in output if isinstance(output, list) else ():
            if isinstance(item, dict) and item.get("type") == "function_call":
                self._tool_call(item)
        usage = resp.get("usage")
        if isinstance(usage, dict):
            self._add_usage(usage)
            self.responses_done += 1
            self._actions.append(RecordUsage(rid, usage, dict(self.usage_totals)))
        if self._response_create_pending and not self._pending_server_tools and self._active_response is None:
            self._response_create_pending = False
            self._to_upstream({"type": "response.create", "event_id": self._next_id()})
        if isinstance(ev.get("response"), dict):
            ev["response"] = {k: v for k, v in ev["response"].items() if k not in ("instructions", "tools")}
        return True

    def _add_usage(self, usage: dict[str, Any], prefix: str = "") -> None:
        for key, value in usage.items():
            if isinstance(value, bool):
                continue
            if isinstance(value, int):
                name = prefix + key
                self.usage_totals[name] = self.usage_totals.get(name, 0) + value
            elif isinstance(value, dict) and not prefix:
                self._add_usage(value, prefix=f"{key}.")

    def _up_output_item_done(self, ev: dict[str, Any], now: float) -> bool:
        item = ev.get("item")
        if isinstance(item, dict) and item.get("type") == "function_call":
            self._tool_call(item)
        return True

    def _up_fc_args_done(self, ev: dict[str, Any], now: float) -> bool:
        if ev.get("name"):
            self._tool_call(ev)
        return True

    def _tool_call(self, item: dict[str, Any]) -> None:
        call_id = item.get("call_id")
        name = item.get("name")
        if not isinstance(call_id, str) or not isinstance(name, str) or call_id in self._tool_calls_seen:
            return
        self._tool_calls_seen.add(call_id)
        arguments = item.get("arguments")
        if not isinstance(arguments, str):
            arguments = orjson.dumps(arguments if arguments is not None else {}).decode()
        if name in self._server_tools:
            self._pending_server_tools.add(call_id)
            self._actions.append(RunServerTool(call_id, name, arguments, self._server_tools[name]))
        # client-side (and unknown) calls reach the device through the forwarded event itself (seed 000)

    def on_tool_result(self, call_id: str, output_json: str, now: float) -> None:
        """A server-side tool finished (``output_json`` is its result, or an error JSON)."""
        if self.ended or call_id not in self._pending_server_tools:
            return
        self._pending_server_tools.discard(call_id)
        self._to_upstream({"type": "conversation.item.create", "event_id": self._next_id(),
                           "item": {"type": "function_call_output", "call_id": call_id, "output": output_json}})
        if self._pending_server_tools:
            return
        if self._active_response is not None:
            self._response_create_pending = True  # after the current response is done
        else:
            self._to_upstream({"type": "response.create", "event_id": self._next_id()})

    def _up_speech_started(self, ev: dict[str, Any], now: float) -> bool:
        td = getattr(self.assistant, "turn_detection", None)
        if isinstance(td, dict) and td.get("interrupt_response") is False:
            return True  # the assistant is configured not to be interrupted by speech
        self._interrupt("barge_in")
        return True

    def _up_error(self, ev: dict[str, Any], now: float) -> bool:
        err = _dict(ev.get("error"))
        about = _str(err.get("event_id"))
        ours = about is not None and about in self._truncate_event_ids
        unattributed = about is None and "truncat" in str(err.get("message", "")).lower()
        if ours or unattributed:
            log.info("upstream refused a truncate (ignored): %s", err.get("message"), extra={"session_id": self.log_id})
            return False
        return True

    def _up_session(self, ev: dict[str, Any], now: float) -> bool:
        if self._suppress_session_events > 0:
            self._suppress_session_events -= 1
            return False
        session = ev.get("session")
        if isinstance(session, dict):
            ev["session"] = {k: v for k, v in session.items() if k not in REDACTED_SESSION_FIELDS}
        return True

    def _up_item_created(self, ev: dict[str, Any], now: float) -> bool:
        return _str(_dict(ev.get("item")).get("id")) not in self._replay_item_ids

    def _up_user_transcript(self, ev: dict[str, Any], now: float) -> bool:
        self._remember("user", ev.get("transcript"))
        return True

    def _up_assistant_transcript(self, ev: dict[str, Any], now: float) -> bool:
        self._remember("assistant", ev.get("transcript"))
        return True

    def _up_assistant_text(self, ev: dict[str, Any], now: float) -> bool:
        self._remember("assistant", ev.get("text"))
        return True

    def _remember(self, role: str, text: Any) -> None:
        if not isinstance(text, str) or not text.strip():
            return
        part = "input_text" if role == "user" else "text"
        self._history.append({"type": "conversation.item.create", "item": {
            "type": "message", "role": role, "content": [{"type": part, "text": text[:HISTORY_TEXT_MAX_CHARS]}]}})

    # ------------------------------------------------------------------ playout

    def pull_frame(self, now: float) -> bytes | None:
        """The next 20 ms of downlink audio (``frame_bytes`` long, in ``audio_format``) or ``None`` when idle.
        Emits ``output_audio_buffer.started`` on a response's first frame and ``.stopped`` when its
        audio has fully played out."""
        if self.ended:
            return None
        item_id = self._playout.current_item
        frame = self._playout.pop_frame()
        trim = self._trim
        if trim is not None:
            if frame is None:
                trim.idle()
            else:
                if trim.budget_ms and self._playout.current_item == item_id and trim.may_skip(frame):
                    skipped, frame = frame, self._playout.pop_frame()
                    if frame is None:  # the next frame has not arrived yet: play this one after all
                        frame = skipped
                        trim.unskip()
                trim.observe(self._playout.buffered_ms)
        if frame is None:
            if self._playing_response is not None and self._playout.buffered_ms == 0 \
                    and (item_id is None or item_id in self._audio_done_items):
                self._to_device({"type": "output_audio_buffer.stopped", "event_id": self._next_id(),
                                 "response_id": self._playing_response})
                self._playing_response = None
            return None
        response_id = (self._item_response.get(item_id) if item_id is not None else None) or "response"
        if response_id != self._playing_response:
            if self._playing_response is not None:
                self._to_device({"type": "output_audio_buffer.stopped", "event_id": self._next_id(),
                                 "response_id": self._playing_response})
            self._playing_response = response_id
            self._to_device({"type": "output_audio_buffer.started", "event_id": self._next_id(),
                             "response_id": self._playing_response})
        return frame

    def _interrupt(self, why: str, *, always_ack: bool = False) -> None:
        """Stop playback now: flush, tell the device (``output_audio_buffer.cleared``) and truncate
        the item being played at ``min(played_ms, received_ms)`` (skipped when nothing was played)."""
        current = self._playout.current_item
        received_ms = self._playout.received_ms(current) if current is not None else 0
        buffered = self._playout.buffered_ms
        item_id, played_ms = self._playout.clear()
        if item_id is None:
            item_id = current
        if self._active_response is not None:
            self._muted_responses.add(self._active_response)
        if item_id is not None:
            self._muted_items.add(item_id)
            response_id = self._item_response.get(item_id)
            if response_id is not None:
                self._muted_responses.add(response_id)
        was_playing = self._playing_response
        if was_playing is not None or buffered > 0 or always_ack:
            self.interruptions += 1
            self._to_device({"type": "output_audio_buffer.cleared", "event_id": self._next_id(),
                             "response_id": was_playing or (self._item_response.get(item_id) if item_id else None)})
        self._playing_response = None
        if item_id is not None and played_ms > 0:
            audio_end_ms = int(min(played_ms, received_ms))
            if audio_end_ms > 0:
                event_id = self._next_id("relay_truncate")
                self._truncate_event_ids.add(event_id)
                self.truncates.append((item_id, audio_end_ms))
                del self.truncates[:-32]
                self._to_upstream({"type": "conversation.item.truncate", "event_id": event_id,
                                   "item_id": item_id, "content_index": 0, "audio_end_ms": audio_end_ms})
        log.debug("interrupt (%s): item %s played %s ms", why, item_id, played_ms, extra={"session_id": self.log_id})

    # ------------------------------------------------------------------ device events

    def on_device_message(self, raw: str | bytes, now: float) -> None:
        """One data-channel message from the device. Bad input gets an ``error`` event; the call goes on."""
        if self.ended:
            return
        size = len(raw.encode() if isinstance(raw, str) else raw)
        if size > self.device_event_max_bytes:
            self._device_error(f"Message of {size} bytes exceeds the limit of {self.device_event_max_bytes} bytes.",
                               code="message_too_large")
            return
        try:
            event = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self._device_error("The message is not valid JSON.", code="invalid_json")
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            self._device_error("An event must be a JSON object with a string 'type'.", code="invalid_event")
            return
        client_event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
        etype = event["type"]
        if etype not in DEVICE_EVENTS:
            self._device_error(f"Unknown or unsupported event type '{etype[:64]}'.", code="invalid_event_type",
                               param="type", client_event_id=client_event_id)
            return
        shape = dl.detect(event)
        if shape is not None:
            self.device_dialect = shape
        beta = dl.translate_one(event, self.device_dialect, dl.BETA)
        if beta is None:
            return
        verdict = self.policy.check(beta)
        if verdict.code is not None:
            self._device_error(verdict.message, code=verdict.code, param=verdict.param,
                               client_event_id=client_event_id)
        if verdict.event is None:
            self.refused_events += 1
            return
        self.refused_fields += len(verdict.refused)
        beta = verdict.event
        handler = self._dev_handlers.get(etype)
        if handler is not None:
            handler(beta, now)
        else:
            self._to_upstream(beta)

    def _dev_session_update(self, ev: dict[str, Any], now: float) -> None:
        # the policy has kept only what the device may set (relay.bridge.policy.DevicePolicy.filter_session)
        kept = ev.get("session")
        cid = _str(ev.get("event_id"))
        if not isinstance(kept, dict):
            self._device_error("session.update needs a 'session' object.", code="invalid_value", param="session",
                               client_event_id=cid)
            return
        if "tools" in kept and isinstance(kept["tools"], list):
            self._client_tools |= {t.get("name") for t in kept["tools"] if isinstance(t, dict)
                                   and isinstance(t.get("name"), str) and t.get("name") not in self._server_tools}
            kept["tools"] = kept["tools"] + [t for t in self._base_session["tools"]
                                             if t["name"] in self._server_tools]
        # forwarded even when nothing is left, so the device still gets its session.updated
        out = {"type": "session.update", "session": kept}
        if cid:
            out["event_id"] = cid
        self._to_upstream(out)

    def _dev_item_create(self, ev: dict[str, Any], now: float) -> None:
        # the policy has checked the item's type, role, content part types and fields
        item = ev.get("item")
        if not isinstance(item, dict):
            self._device_error("conversation.item.create needs an 'item' object.", code="invalid_value",
                               param="item", client_event_id=_str(ev.get("event_id")))
            return
        content = item.get("content")
        if item.get("type", "message") == "message" and item.get("role") == "user" and isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and part.get("type") == "input_text":
                    self._remember("user", part.get("text"))
        self._to_upstream(ev)

    def _dev_response_cancel(self, ev: dict[str, Any], now: float) -> None:
        self._interrupt("device_cancel")
        self._to_upstream(ev)

    def _dev_output_clear(self, ev: dict[str, Any], now: float) -> None:
        active = self._active_response
        self._interrupt("device_clear", always_ack=True)
        if active is not None:
            self._to_upstream({"type": "response.cancel", "event_id": self._next_id()})

    # ------------------------------------------------------------------ introspection

    @property
    def buffered_ms(self) -> int:
        return int(self._playout.buffered_ms)

    @property
    def trimmed_frames(self) -> int:
        """Quiet frames skipped to take a real-time stream's standing delay back (``relay.bridge.trim``)."""
        return self._trim.skipped_frames if self._trim is not None else 0

    @property
    def active_response(self) -> str | None:
        return self._active_response

    @property
    def playing_response(self) -> str | None:
        return self._playing_response
