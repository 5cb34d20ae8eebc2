"""The HTTP side of ``relay.auth``: a request in, ``relay.auth``'s pipeline run, ``AuthError`` out as
the error shape of the API asking (the Realtime device API's ``ApiError``, the app API's ``AppApiError``).

* ``authenticate(request)``: devices (``POST /v1/realtime/sessions``, ``POST /v1/realtime``);
* ``authenticate_app(request)``: app clients (X-Workspace-Key required; codes upper-cased);
* ``authenticate_token(request)``: the WebSocket edge's API tokens (``?token=`` or ``Authorization: Bearer``);
* ``require_operator_bearer(request, expected, ...)``: operators' bearer tokens (admin API, ``/metrics``,
  the media stats), throttled per address by the same ``AuthThrottle`` (fleet-wide with a database).
"""

from __future__ import annotations

import logging
import time
from typing import cast

from aiohttp import web

from relay import auth
from relay.models import Device
from relay.ops.counters import counters_of
from relay.store.db import Database
from relay.web import keys
from relay.web.errors import ApiError, AppApiError
from relay.web.middleware import remote_address

log = logging.getLogger("relay.auth")

#: the failed-secret throttle, shared by every caller kind (set by ``create_app``); with a database its counts
#: live in the store, fleet-wide (``relay.store.auth_failures.SharedThrottle``)
THROTTLE = web.AppKey("auth_throttle", auth.AuthThrottle)


def throttle_of(app: web.Application) -> auth.AuthThrottle:
    thr = app.get(THROTTLE)
    if thr is None:  # an app built without create_app (tests of single areas)
        thr = auth.AuthThrottle(app[keys.SETTINGS])
        app[THROTTLE] = thr
    return thr


def auth_request(request: web.Request) -> auth.AuthRequest:
    app = request.app
    db = cast(Database, app.get(keys.DB))  # absent in single-area test apps (their demo calls need none)
    return auth.AuthRequest(settings=app[keys.SETTINGS], db=db, throttle=throttle_of(app),
                            address=remote_address(request), headers=request.headers, counters=counters_of(app))


def api_error(exc: auth.AuthError) -> ApiError:
    """``AuthError`` in the Realtime device API's shape."""
    return ApiError(exc.status, exc.message, exc.code, headers=exc.headers)


async def authenticate(request: web.Request, *, require_workspace_key: bool = False) -> Device:
    """The device behind ``request`` (``relay.auth`` lists every case); ``ApiError`` when refused."""
    try:
        return await auth.authenticate_device(auth_request(request), require_workspace_key=require_workspace_key)
    except auth.AuthError as exc:
        raise api_error(exc) from None


async def authenticate_app(request: web.Request) -> Device:
    """``authenticate`` for the app REST API: X-Workspace-Key required, errors as ``AppApiError``.

    Codes are the upper-cased device-API codes (``MISSING_HEADER``, ``CLIENT_NOT_FOUND``,
    ``INVALID_SECRET``, ``RATE_LIMITED``, ...); status codes and Retry-After are kept.
    """
    try:
        return await auth.authenticate_device(auth_request(request), require_workspace_key=True)
    except auth.AuthError as exc:
        raise AppApiError(exc.status, exc.message, exc.code.upper(), headers=exc.headers) from None


async def authenticate_token(request: web.Request) -> tuple[Device, str | None]:
    """The server client behind the WebSocket handshake's API token (the ``Authorization: Bearer`` header
    wins over ``?token=``) and the token's client dialect; ``ApiError`` when refused."""
    presented = auth.presented_bearer(request.headers.get("Authorization", "")) \
        or request.query.get("token", "").strip()
    try:
        return await auth.authenticate_token(auth_request(request), presented)
    except auth.AuthError as exc:
        raise api_error(exc) from None


async def require_operator_bearer(request: web.Request, expected: str, *, code: str, message: str,
                                  realm: str) -> None:
    """An operator's ``Authorization: Bearer <expected>`` (``relay.auth.bearer_matches``): 404 when
    ``expected`` is empty (the API is off), 429 over the per-address failure budget (shared by every
    operator token), else 401 ``code`` with ``WWW-Authenticate``. Failures are counted for ``/metrics``.

    The budget is the failed-secret throttle's address budget (``AuthThrottle``: ten times
    ``auth_fail_limit`` per ``auth_fail_window_s``), under its own key per address (``admin:<address>``:
    devices failing behind the operator's NAT do not spend it), so with a database it is fleet-wide
    like every other secret's: each attempt is charged up front and given back when the token is right.
    When the store cannot be reached the attempt is throttled in this process instead, so operators
    keep ``/metrics`` and the admin API through a database outage (logged). A sibling worker's request over
    the node's private socket (its part of a node-wide ``/metrics``) is checked without the throttle: the
    worker the operator reached throttled the attempt already."""
    if not expected:
        raise ApiError(404, "Not found", "not_found")
    counters = counters_of(request.app)
    if _from_sibling(request):  # a sibling worker asking for this one's part of a request it already let in
        if not auth.bearer_matches(request.headers.get("Authorization", ""), expected):
            raise ApiError(401, message, code, headers={"WWW-Authenticate": f'Bearer realm="{realm}"'})
        return
    attempt = await _operator_attempt(request)
    try:
        if attempt.refused is not None:
            if counters is not None:
                counters.throttle("admin_address")
            raise ApiError(429, "Too many failed attempts; retry later", "rate_limited",
                           headers={"Retry-After": attempt.refused[1]})
        if not auth.bearer_matches(request.headers.get("Authorization", ""), expected):
            await attempt.failed()  # charged up front: the failure stays counted
            if counters is not None:
                counters.auth_failure(code)
            raise ApiError(401, message, code, headers={"WWW-Authenticate": f'Bearer realm="{realm}"'})
    finally:
        try:
            await attempt.release()  # a right token: the charge is given back
        except Exception:  # the store went away under the attempt: the charge expires with the window
            log.warning("could not give back an operator token attempt's charge to the store", exc_info=True)


def _from_sibling(request: web.Request) -> bool:
    """The request came over this worker's private Unix socket (``relay.node.handoff``): only a sibling worker
    of this node can send one, and it throttled the caller already (no store round trips per worker)."""
    if request.app.get(keys.WORKER) is None:
        return False
    from relay.node.handoff import arrived_from_sibling

    return arrived_from_sibling(request)


async def _operator_attempt(request: web.Request) -> auth.AuthAttempt:
    """The throttle's attempt for an operator token from this request's address (module docstring)."""
    thr = throttle_of(request.app)
    address, now = "admin:" + remote_address(request), time.time()
    db = request.app.get(keys.DB)
    if db is not None:
        try:
            return await thr.attempt(None, address, now, db)
        except Exception:  # any store failure: this process's budget still holds
            log.warning("the store is unreachable: operator tokens are throttled in this process", exc_info=True)
    return await thr.attempt(None, address, now)
