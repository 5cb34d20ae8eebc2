"""What the call core asks its I/O edge to do: small immutable values.

The edge (``relay/web/realtime.py`` + ``relay/media/``) loops over
``CallCore.drain_actions()`` after every input it feeds and performs each
action in order. None of them block the core.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class SendUpstream:
    """Send ``event`` (already in the upstream's dialect) on the upstream WebSocket."""

    event: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SendDevice:
    """Send ``event`` (already in the device's dialect) on the device's data channel as JSON text."""

    event: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RunServerTool:
    """Run a server-side tool (``relay.call.tools.run_webhook_tool``) and feed the
    result back with ``CallCore.on_tool_result(call_id, output_json, now)``.
    ``arguments`` is the model's raw JSON argument string."""

    call_id: str
    name: str
    arguments: str
    webhook_url: str


@dataclass(frozen=True, slots=True)
class RecycleUpstream:
    """Open a fresh upstream WebSocket (same URL/headers). When it is connected call
    ``CallCore.on_upstream_opened(now)`` (the core replays configuration and the
    text history), then close the old socket and ignore anything it still sends.
    If connecting fails, call ``CallCore.on_upstream_closed(reason, now)``."""

    reason: str = "expiry"


@dataclass(frozen=True, slots=True)
class RecordUsage:
    """Usage of one finished response (from ``response.done``); ``totals`` is the
    running sum for the call. Persist/meter it; the last one is the call's total."""

    response_id: str
    usage: dict[str, Any]
    totals: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EndCall:
    """Tear the call down: close the peer and the upstream, free everything.
    ``reason``: device_closed | upstream_closed | max_call_length | ..."""

    reason: str


Action = SendUpstream | SendDevice | RunServerTool | RecycleUpstream | RecordUsage | EndCall
