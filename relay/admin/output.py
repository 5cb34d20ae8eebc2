"""Admin output for people (the ``relay admin`` CLI and the admin HTTP API): every ``*_at``
time as ISO 8601 UTC (``2026-12-06T18:22:05Z``), counts as integers."""

from __future__ import annotations

import datetime as dt
from typing import Any

COUNT_KEYS = frozenset({"calls", "count", "requests", "characters", "tool_calls"})


def iso8601(epoch_s: float) -> str:
    """``2026-12-06T18:22:05Z`` (UTC, whole seconds)."""
    return dt.datetime.fromtimestamp(epoch_s, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def readable(value: Any) -> Any:
    """Every ``*_at`` epoch number as ISO 8601, integral counts as integers (recursively)."""
    if isinstance(value, list):
        return [readable(v) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for k, v in value.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k.endswith("_at"):
            out[k] = iso8601(v)
        elif isinstance(v, float) and v.is_integer() and (k in COUNT_KEYS or k.endswith("_tokens")):
            out[k] = int(v)
        else:
            out[k] = readable(v)
    return out
