"""Counters of the HTTP edge and of authentication, per worker, under ``app[OPS]``.

Incremented where things already happen (the access-log middleware, ``relay.auth``,
the admin token check, the TTS admission): each is one dict lookup and an add,
nothing allocated per media frame. Label values are bounded: routes are the
router's templates (``/admin/v1/clients/{id}``, never a concrete id), codes and
reasons come from the code; any dict is capped at ``MAX_KEYS`` entries, after
which new keys are counted under ``other``.
"""

from __future__ import annotations

from aiohttp import web

MAX_KEYS = 512
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def bump(counts: dict, key: object, n: int = 1, max_keys: int = MAX_KEYS) -> None:  # type: ignore[type-arg]
    """``counts[key] += n``, with at most ``max_keys`` distinct keys (the rest go to ``"other"``)."""
    if key not in counts and len(counts) >= max_keys:
        key = "other" if not isinstance(key, tuple) else ("other",) * len(key)
    counts[key] = counts.get(key, 0) + n


class OpsCounters:
    def __init__(self) -> None:
        self.http_requests: dict[tuple[str, str, str], int] = {}  # (method, route, status)
        self.auth_failures: dict[str, int] = {}  # error code -> count
        self.throttled: dict[str, int] = {}  # reason -> count
        self.http_shed: dict[str, int] = {}  # reason -> connections closed by relay.web.server's limits

    def http_request(self, request: web.Request, status: int) -> None:
        route = request.match_info.route.resource
        template = route.canonical if route is not None else "unmatched"
        method = request.method if request.method in _METHODS else "OTHER"
        bump(self.http_requests, (method, template, str(status)))

    def auth_failure(self, code: str) -> None:
        bump(self.auth_failures, code)

    def throttle(self, reason: str) -> None:
        bump(self.throttled, reason)

    def http_connection_shed(self, reason: str) -> None:
        bump(self.http_shed, reason)


OPS = web.AppKey("ops_counters", OpsCounters)


def counters_of(app: web.Application) -> OpsCounters | None:
    """The app's counters (None for an app assembled without the metrics area, e.g. single-area tests)."""
    return app.get(OPS)
