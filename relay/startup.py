"""What ``relay serve`` and its supervisor share without importing the web layer."""

from __future__ import annotations

import asyncio
from typing import Any


class StartupError(RuntimeError):
    """``relay serve`` could not start; the message is the one line the operator sees."""


def event_loop_runner() -> Any:
    """uvloop's ``run`` (asyncio's where uvloop is missing)."""
    try:
        import uvloop

        return uvloop.run
    except ImportError:  # uvloop is a dependency; only odd platforms lack it
        return asyncio.run
