"""The official ``openai`` SDK as the judge of what relay sends to clients.

Every server event is validated against the SDK's own pydantic models, in pydantic's strict
mode (no coercion), through the ``RealtimeServerEvent`` union of the client's dialect:
``openai.types.realtime`` (GA) or ``openai.types.beta.realtime`` (beta). The union is
discriminated on ``type``, so an event under the other dialect's name fails too.

Known places where the SDK's models are narrower than what OpenAI's servers really send are
handled in ``_sdk_gaps`` with the evidence; they are the only exemptions. ``_protocol_rules``
adds what the schema cannot say (an item announced ``done`` must be final).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, get_args

from openai.types.beta.realtime import RealtimeServerEvent as BetaServerEvent
from openai.types.realtime import RealtimeServerEvent as GaServerEvent
from pydantic import TypeAdapter, ValidationError

UNIONS = {"beta": BetaServerEvent, "ga": GaServerEvent}


def _by_type(union: Any) -> dict[str, TypeAdapter[Any]]:
    """The union's members by their ``type`` literal (for errors that name the failing field)."""
    members = get_args(get_args(union)[0])
    return {get_args(m.model_fields["type"].annotation)[0]: TypeAdapter(m) for m in members}


MODELS: dict[str, dict[str, TypeAdapter[Any]]] = {d: _by_type(u) for d, u in UNIONS.items()}
ADAPTERS: dict[str, TypeAdapter[Any]] = {d: TypeAdapter(u) for d, u in UNIONS.items()}


#: a model the beta SDK's closed ``Literal`` accepts, put in for a name outside it (``_sdk_gaps``)
_BETA_LITERAL_MODEL = "gpt-realtime"


def _sdk_gaps(event: dict[str, Any], dialect: str) -> dict[str, Any]:
    """``event`` with the SDK's known gaps bridged, each one as narrowly as possible.

    Beta ``session.model``: the beta SDK types it as a closed ``Literal`` of 8 model names
    (``openai.types.beta.realtime.Session.model``), frozen when the beta protocol was deprecated.
    The server echoes the model the session runs, any string: the same SDK's GA types keep the
    field open (``openai.types.realtime.RealtimeSessionCreateRequest.model`` is
    ``str | Literal[...]``) and list 11 newer models (``gpt-realtime-mini``, ``gpt-audio-mini``, ...)
    the beta Literal lacks although OpenAI serves them under ``OpenAI-Beta: realtime=v1`` too.
    relay reports the model in use (e.g. its built-in assistant's ``relay-echo``): only a
    non-empty string is required here.
    """
    if dialect == "beta" and event.get("type") in ("session.created", "session.updated"):
        session = event.get("session")
        if isinstance(session, dict) and isinstance(session.get("model"), str) and session["model"]:
            return {**event, "session": {**session, "model": _BETA_LITERAL_MODEL}}
    return event


def _protocol_rules(event: dict[str, Any], dialect: str) -> str | None:
    """What the schema cannot say. GA ``conversation.item.done``: "returned when a conversation item
    is finalized" (OpenAI's GA reference), so never an item still ``in_progress``."""
    if event.get("type") == "conversation.item.done":
        item = event.get("item") or {}
        if item.get("status") == "in_progress":
            return "conversation.item.done for an item still in_progress"
    return None


def violation(event: dict[str, Any], dialect: str) -> str | None:
    """``None`` when ``event`` validates strictly as a server event of ``dialect``, else why not."""
    model = MODELS[dialect].get(event.get("type"))  # type: ignore[arg-type]
    if model is None:
        return f"not a {dialect} server event type"
    rule = _protocol_rules(event, dialect)
    if rule is not None:
        return rule
    event = _sdk_gaps(event, dialect)
    try:
        model.validate_python(event, strict=True)
        ADAPTERS[dialect].validate_python(event, strict=True)  # the SDK's own (discriminated) union
    except ValidationError as exc:
        return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:4])
    return None


@dataclass
class Verdict:
    """Every event one client received, and those the SDK refused."""

    dialect: str
    events: list[dict[str, Any]] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (event type, why)

    def add(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        why = violation(event, self.dialect)
        if why is not None:
            self.failures.append((str(event.get("type")), why))

    @property
    def kinds(self) -> Counter[str]:
        return Counter(t for t, _ in self.failures)

    def types(self) -> list[str]:
        return [str(e.get("type")) for e in self.events]

    def report(self) -> str:
        seen: dict[str, str] = {}
        for t, why in self.failures:
            seen.setdefault(t, why)
        return f"{len(self.failures)} {self.dialect} events of {len(seen)} kinds fail: " + \
            "; ".join(f"{t} x{self.kinds[t]} ({why})" for t, why in seen.items())
