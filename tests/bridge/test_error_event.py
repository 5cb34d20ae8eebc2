"""One builder of ``error`` events (``relay.bridge.core.error_event``) for the core and both call edges."""

from __future__ import annotations

import ast
from pathlib import Path

from relay.bridge.core import error_event

RELAY = Path(__file__).resolve().parents[2] / "relay"


def test_shape_and_defaults() -> None:
    ev = error_event("Bad event", code="invalid_event")
    assert ev["type"] == "error" and ev["event_id"].startswith("relay_err_")
    assert ev["error"] == {"type": "invalid_request_error", "code": "invalid_event", "message": "Bad event",
                           "param": None, "event_id": None}
    assert error_event("x", code="c")["event_id"] != ev["event_id"]  # relay's own ids are not reused


def test_what_the_core_passes_is_kept() -> None:
    ev = error_event("m", code="c", etype="server_error", param="session.voice", client_event_id="evt_1",
                     event_id="event_7")
    assert ev["event_id"] == "event_7"
    assert ev["error"] == {"type": "server_error", "code": "c", "message": "m", "param": "session.voice",
                           "event_id": "evt_1"}


def test_relay_defines_it_once() -> None:
    defs = [f"{p.relative_to(RELAY)}:{node.lineno}" for p in RELAY.rglob("*.py")
            for node in ast.walk(ast.parse(p.read_text()))
            if isinstance(node, ast.FunctionDef) and node.name == "error_event"]
    assert defs == ["bridge/core.py:" + defs[0].split(":")[1]], defs
