"""Typed keys for what the aiohttp application carries (one place, no string keys)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from relay.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
# The store's Database (relay.store.db.Database); typed loosely here to keep this module import-light.
DB = web.AppKey("db", Any)
# Per-area services are registered by the area's setup() under its own AppKey, defined in that area.
# This worker's slot in the node (relay.node.state.WorkerSlot) under ``relay serve --workers N`` (N > 1);
# absent with one worker. The one place the media plane learns its worker index (relay.web.realtime.setup).
WORKER = web.AppKey("worker", Any)
# The area modules the app was built from (relay.web.app.AREAS; read by relay.web.openapi).
AREAS = web.AppKey("areas", list)  # list[ModuleType]
