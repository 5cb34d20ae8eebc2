"""Device authentication: the whole matrix of seeds 000/001/002, in one function.

A domain module: no HTTP request, no aiohttp, no ``relay.web``. The web layer (``relay.web.authn``) gathers an
``AuthRequest`` (settings, database, throttle, counters, remote address, headers) and maps
``AuthError`` to the error shape of the API asking. One pipeline for the three kinds of caller:

* devices (the Realtime device API): ``await authenticate_device(req) -> Device``, the matrix below;
* app clients (the app API): ``authenticate_device(req, require_workspace_key=True)`` (web answers the
  same status with the upper-cased code in the app API's shape);
* server clients' API tokens (the WebSocket edge): ``await authenticate_token(req, presented)``.

Each failure is an ``AuthError(status, message, code, headers)``, counted for ``GET /metrics``
(``relay_auth_failures_total{code}``) and throttled by the same ``AuthThrottle``. Operators'
bearer tokens (admin API, ``/metrics``, media stats) are checked by ``bearer_matches`` and throttled
by the same ``AuthThrottle`` (an address budget of their own, no key: ``relay.web.authn``).

Device cases (``AuthError`` status and code):

====================================================  ======  =======================
case                                                   status  code
====================================================  ======  =======================
``X-Demo-Mode: true`` and demo mode off                403     ``demo_mode_disabled``
no ``X-Client-Id`` (demo calls too)                    400     ``missing_header``
``X-Client-Id`` longer than 128 chars (demo calls too) 400     ``invalid_client_id``
``X-Demo-Mode: true`` and demo mode on                 ok      (demo device, default assistant, demo_max_call_s)
unknown client, no/other workspace key                 404     ``client_not_found``
disabled client                                        404     ``client_not_found``
unknown client + key of a self-enrolling workspace     ok      (client created in that workspace)
  ... but the id is not a UUID                         400     ``invalid_client_id``
``X-Workspace-Key`` given but wrong / other workspace  401     ``invalid_workspace_key``
no secret (workspace not secretless, or enrolled)      401     ``missing_secret``
secret < 32 or > 512 characters (demo calls too)       400     ``invalid_secret``
first secret for the client (TOFU)                     ok      (enrolled)
secret differs from the enrolled one                   401     ``invalid_secret``
too many failed secrets (client id / address), from an  429     ``rate_limited`` + Retry-After
  address this client never authenticated from
``X-Assistant-Id`` unknown or in another workspace     404     ``assistant_not_found``
====================================================  ======  =======================

The app REST API (#6) runs the same checks with ``X-Workspace-Key`` required.
"""

from __future__ import annotations

import hmac
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from relay.default_assistant import resolve_default_assistant
from relay.errors import DomainError
from relay.models import Assistant, ClientRecord, Device, Workspace
from relay.ops.counters import OpsCounters
from relay.settings import Settings
from relay.store import assistants as assistants_repo
from relay.store import clients as clients_repo
from relay.store import device_auth
from relay.store import tokens as tokens_repo
from relay.store import workspaces as workspaces_repo
from relay.store.auth_failures import SharedThrottle
from relay.store.db import Database
from relay.store.errors import Conflict
from relay.throttle import FailureThrottle

log = logging.getLogger("relay.auth")


class AuthError(DomainError):
    """A refused caller: ``status`` and ``code`` as the Realtime device API documents them (lower-case),
    ``headers`` to answer with (``Retry-After``, ``WWW-Authenticate``). The web layer renders it."""

MAX_CLIENT_ID_CHARS = 128
TOUCH_EVERY_S = 60.0  # last_seen_at is refreshed at most this often (no write per request)
NOT_FOUND = "Client ID not found or not activated"
TOKEN_TOUCH_EVERY_S = 60.0  # an API token's last_used_at is refreshed at most this often
MAX_KNOWN_ADDRESSES = 100_000  # (key, address) pairs remembered by AuthThrottle (oldest forgotten)
KNOWN_STORE_EVERY_S = 3600.0  # a known pair's time in the store is refreshed at most this often per process


class AuthThrottle:
    """The failed-secret throttle, shared by both edges (device secrets, app clients, API tokens).

    Budgets: ``auth_fail_limit`` failures per window per key (a client id, a token id) and
    ten times that per remote address. Over budget, attempts are refused (429) *before*
    the secret is checked, so guessing is capped -- except from an address where that key
    authenticated within ``auth_known_address_s``: there the secret is checked first and a
    right one passes, so an attacker elsewhere (or hammering other client ids through the
    same proxy or NAT) cannot lock the rightful device out. A wrong secret from a known
    address over budget is still a 429. A success never resets a key's failures (an
    attacker's budget does not refill because the device connected).

    With a database (``attempt(..., db)``) the counts and the known addresses live in the store
    (``relay.store.auth_failures.SharedThrottle``), so a brute force spread over workers and nodes
    is throttled exactly as one process would throttle it. This process still remembers the pairs
    that authenticated through it: a device calling again from its address costs no round trip.
    Without one (apps assembled without a store), the counts live in this process.
    """

    def __init__(self, settings: Settings) -> None:
        self.by_client = FailureThrottle(settings.auth_fail_limit, settings.auth_fail_window_s)
        self.by_address = FailureThrottle(settings.auth_fail_limit * 10, settings.auth_fail_window_s)
        self.known_address_s = settings.auth_known_address_s
        self._settings = settings
        self._shared: SharedThrottle | None = None
        self._known: OrderedDict[str, tuple[float, float]] = OrderedDict()  # "key address" -> (last success, stored)

    def shared(self, db: Any) -> SharedThrottle | None:
        """The store's throttle on ``db`` (None without a database)."""
        if db is None:
            return None
        if self._shared is None or self._shared.db is not db:
            s = self._settings
            self._shared = SharedThrottle(db, key_limit=s.auth_fail_limit, address_limit=s.auth_fail_limit * 10,
                                          window_s=float(s.auth_fail_window_s), known_s=s.auth_known_address_s)
        return self._shared

    def known(self, key: str, address: str, now: float) -> bool:
        seen = self._known.get(f"{key} {address}")
        return seen is not None and now - seen[0] < self.known_address_s

    def _over(self, key: str | None, address: str, now: float) -> tuple[str, str] | None:
        wait = self.by_address.retry_after_header("addr:" + address, now)
        if wait:
            return "auth_address", wait
        if key is not None:
            wait = self.by_client.retry_after_header(key, now)
            if wait:
                return "auth_client_id", wait
        return None

    async def attempt(self, key: str | None, address: str, now: float, db: Any = None) -> AuthAttempt:
        """Start checking a secret for ``key`` from ``address``; ``AuthAttempt.refused`` says whether to
        answer 429 without checking it. An attempt from an unknown address is charged as a failure up
        front (given back unless it fails), so parallel guesses -- on any worker or node, with ``db`` --
        cannot overrun the budget while their lookups are in flight. Settle it with ``failed`` /
        ``succeeded``; ``release`` gives back the rest."""
        shared = self.shared(db)
        if key is not None and self.known(key, address, now):
            return AuthAttempt(self, key, address, now, charged=False, refused=None, shared=shared)
        if shared is not None:
            verdict = await shared.attempt(key, address, now)
            if verdict.known:
                assert key is not None
                self.remember(key, address, now, stored=now)
                return AuthAttempt(self, key, address, now, charged=False, refused=None, shared=shared)
            refused = None
            if verdict.refused is not None:
                which, wait_s = verdict.refused
                refused = ("auth_address" if which == "address" else "auth_client_id", retry_after(wait_s))
            return AuthAttempt(self, key, address, now, charged=verdict.refused is None, refused=refused,
                               shared=shared, charge=verdict.charge)
        refused = self._over(key, address, now)
        if refused is None:
            self.by_address.failure("addr:" + address, now)
            if key is not None:
                self.by_client.failure(key, now)
        return AuthAttempt(self, key, address, now, charged=refused is None, refused=refused)

    def remember(self, key: str, address: str, now: float, stored: float | None = None) -> None:
        """``key`` authenticated from ``address`` (``stored``: when the store last heard of it)."""
        pair = f"{key} {address}"
        prev = self._known.get(pair)
        self._known[pair] = (now, stored if stored is not None else (prev[1] if prev else 0.0))
        self._known.move_to_end(pair)
        while len(self._known) > MAX_KNOWN_ADDRESSES:
            self._known.popitem(last=False)

    def stored_at(self, key: str, address: str) -> float:
        seen = self._known.get(f"{key} {address}")
        return seen[1] if seen else 0.0


def retry_after(wait_s: float) -> str:
    """A ``Retry-After`` value: whole seconds, at least 1."""
    return str(max(1, math.ceil(wait_s)))


@dataclass
class AuthAttempt:
    throttle: AuthThrottle
    key: str | None
    address: str
    now: float
    charged: bool  # failures already recorded (for the key and the address)
    refused: tuple[str, str] | None  # (reason, Retry-After) when over budget: answer 429 unchecked
    shared: SharedThrottle | None = None  # the store's throttle (None: this process's)
    charge: str = ""  # the store's tag of the up-front charge

    async def failed(self, *, key_counts: bool = True) -> tuple[str, str] | None:
        """A wrong secret (``key_counts``) or workspace key: counted; the 429 to answer (a known address
        over budget) or None (401)."""
        thr, shared = self.throttle, self.shared
        if self.charged:
            self.charged = False
            if not key_counts and self.key is not None:
                if shared is not None:
                    await shared.give_back(self.charge, key_only=self.key)
                else:
                    thr.by_client.undo(self.key, self.now)
            return None
        key = self.key if key_counts else None
        if shared is not None:
            over = await shared.failed(key, self.address, self.now)
            if over is None:
                return None
            return ("auth_address" if over[0] == "address" else "auth_client_id", retry_after(over[1]))
        over_local = thr._over(key, self.address, self.now)
        thr.by_address.failure("addr:" + self.address, self.now)
        if key is not None:
            thr.by_client.failure(key, self.now)
        return over_local

    async def succeeded(self) -> None:
        assert self.key is not None
        thr, shared = self.throttle, self.shared
        if shared is not None and (self.charged or self.now - thr.stored_at(self.key, self.address) >= KNOWN_STORE_EVERY_S):
            await shared.succeeded(self.key, self.address, self.now, self.charge if self.charged else "")
            self.charged = False
            thr.remember(self.key, self.address, self.now, stored=self.now)
            return
        await self.release()
        thr.remember(self.key, self.address, self.now)

    async def release(self) -> None:
        """Give back an up-front charge (the attempt ended neither wrong nor right: 400, 404, ...)."""
        if self.charged:
            self.charged = False
            if self.shared is not None:
                await self.shared.give_back(self.charge)
                return
            self.throttle.by_address.undo("addr:" + self.address, self.now)
            if self.key is not None:
                self.throttle.by_client.undo(self.key, self.now)


@dataclass
class AuthRequest:
    """What authentication needs of one request, gathered by the web layer (``relay.web.authn``)."""

    settings: Settings
    db: Database
    throttle: AuthThrottle
    address: str  # the caller's remote address (X-Forwarded-For only from trusted proxies)
    headers: Mapping[str, str] = field(default_factory=dict)
    counters: OpsCounters | None = None  # None: an app assembled without the metrics area
    now: float = field(default_factory=time.time)


def bearer_matches(authorization: str, expected: str) -> bool:
    """The one bearer check: ``Authorization: Bearer <expected>``, scheme case-insensitive (RFC 7235),
    surrounding blanks ignored, compared in constant time. An empty ``expected`` never matches."""
    scheme, _, given = authorization.strip().partition(" ")
    return bool(expected) and scheme.lower() == "bearer" \
        and hmac.compare_digest(given.strip().encode(), expected.encode())


def presented_bearer(authorization: str) -> str:
    """The credential of an ``Authorization: Bearer ...`` header ("" when absent or another scheme)."""
    scheme, _, given = authorization.strip().partition(" ")
    return given.strip() if scheme.lower() == "bearer" else ""


def rate_limited(counters: OpsCounters | None, reason: str, retry_after: str) -> AuthError:
    if counters is not None:
        counters.throttle(reason)
    return AuthError(429, "Too many failed attempts; retry later", "rate_limited", headers={"Retry-After": retry_after})


def _is_true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "1", "yes")


async def _resolve_assistant(db: Database, settings: Settings, client: ClientRecord, workspace: Workspace | None,
                             override: str | None) -> Assistant:
    if override:
        assistant = await assistants_repo.find(db, override) if len(override) <= 128 else None
        if assistant is None or assistant.workspace_id != client.workspace_id:
            raise AuthError(404, "Assistant not found in this client's workspace", "assistant_not_found")
        return assistant
    for aid in (client.assistant_id, workspace.default_assistant_id if workspace else None):
        if aid:
            assistant = await assistants_repo.find(db, aid)
            if assistant is not None:
                return assistant
    return resolve_default_assistant(settings)


async def _counted(req: AuthRequest, check: Any) -> Any:
    try:
        return await check
    except AuthError as exc:  # counted for GET /metrics (relay_auth_failures_total{code}), then raised as is
        if req.counters is not None:
            req.counters.auth_failure(exc.code)
        raise


async def authenticate_device(req: AuthRequest, *, require_workspace_key: bool = False) -> Device:
    """The device (or, with ``require_workspace_key``, app client) behind ``req`` (every case: module doc)."""
    return await _counted(req, _authenticate(req, require_workspace_key))


async def authenticate_token(req: AuthRequest, presented: str) -> tuple[Device, str | None]:
    """The server client behind an API token (WebSocket edge), as a ``Device`` (client_id: the token id),
    and the token's configured client dialect (None: the handshake decides). 401 ``missing_token`` /
    ``invalid_token`` / ``token_revoked``, 429 ``rate_limited``."""
    return await _counted(req, _authenticate_token(req, presented))


async def _authenticate(req: AuthRequest, require_workspace_key: bool) -> Device:
    settings, headers, now = req.settings, req.headers, req.now

    demo = "X-Demo-Mode" in headers and _is_true(headers.get("X-Demo-Mode"))
    if demo and not settings.demo_mode:
        raise AuthError(403, "Demo mode is disabled on this server", "demo_mode_disabled")
    client_id = (headers.get("X-Client-Id") or "").strip()  # required of every request, demo calls included
    if not client_id:
        raise AuthError(400, "Missing X-Client-Id header", "missing_header")
    if len(client_id) > MAX_CLIENT_ID_CHARS:
        raise AuthError(400, f"X-Client-Id longer than {MAX_CLIENT_ID_CHARS} characters", "invalid_client_id")
    if demo:
        secret = headers.get("X-Client-Secret")  # not checked against anything, but shaped as always
        if secret is not None and not clients_repo.MIN_SECRET_CHARS <= len(secret) <= clients_repo.MAX_SECRET_CHARS:
            raise _bad_secret_shape()
        log.info("demo call authenticated", extra={"client_id": client_id})
        return Device(client_id=client_id, workspace_id=None, assistant=resolve_default_assistant(settings),
                      demo=True, max_call_s=min(settings.demo_max_call_s, settings.max_call_s))
    client_id = client_id.lower()

    attempt = await req.throttle.attempt("client:" + client_id, req.address, now, req.db)
    if attempt.refused:
        raise rate_limited(req.counters, *attempt.refused)
    try:
        return await _check_client(req, attempt, client_id, require_workspace_key)
    finally:
        await attempt.release()


async def _check_client(req: AuthRequest, attempt: AuthAttempt, client_id: str, require_workspace_key: bool) -> Device:
    settings, db, headers, address, now = req.settings, req.db, req.headers, req.address, req.now

    ws_key = headers.get("X-Workspace-Key")
    if require_workspace_key and not ws_key:
        raise AuthError(400, "Missing X-Workspace-Key header", "missing_header")
    key_workspace: Workspace | None = None
    if ws_key:
        key_workspace = await workspaces_repo.by_key(db, ws_key)
        if key_workspace is None:
            await attempt.failed(key_counts=False)
            raise AuthError(401, "Invalid X-Workspace-Key", "invalid_workspace_key")

    # one query: the client, its workspace and its assistant (relay/store/device_auth.py)
    ctx = await device_auth.find(db, client_id)
    client = ctx.client if ctx else None
    enrolled_now = False
    if client is None and key_workspace is not None and key_workspace.allow_self_enrol:
        if not clients_repo.is_uuid(client_id):
            raise AuthError(400, "X-Client-Id must be a UUID to self-enrol", "invalid_client_id")
        try:
            client = await clients_repo.create(db, key_workspace.id, client_id=client_id)
            log.info("client self-enrolled", extra={"client_id": client_id, "workspace_id": key_workspace.id})
        except Conflict:  # a concurrent request enrolled it first
            client = await clients_repo.find(db, client_id)
        enrolled_now = True
    if client is None or client.status != "active":
        raise AuthError(404, NOT_FOUND, "client_not_found")
    if key_workspace is not None and key_workspace.id != client.workspace_id:
        await attempt.failed(key_counts=False)
        raise AuthError(401, "X-Workspace-Key does not match this client's workspace", "invalid_workspace_key")

    if key_workspace is not None:
        workspace: Workspace | None = key_workspace
    elif ctx is not None:
        workspace = ctx.workspace
    else:
        workspace = await workspaces_repo.find(db, client.workspace_id)
    secret = headers.get("X-Client-Secret")
    if not secret:
        if not (workspace is not None and workspace.allow_secretless and not client.enrolled):
            raise AuthError(401, "Missing X-Client-Secret header", "missing_secret")
    else:
        if not clients_repo.MIN_SECRET_CHARS <= len(secret) <= clients_repo.MAX_SECRET_CHARS:
            raise _bad_secret_shape()
        if not client.enrolled and await clients_repo.enrol_secret(db, client.id, secret, now=now):
            enrolled_now = True
            log.info("client secret enrolled (TOFU)", extra={"client_id": client.id})
        else:
            if not client.enrolled:  # lost an enrolment race: check against the winner's secret
                client = await clients_repo.get(db, client.id)
            if not clients_repo.secret_matches(client, secret):
                over = await attempt.failed()
                log.warning("invalid client secret", extra={"client_id": client.id, "remote": address})
                if over:  # from an address it is known at: verified, and still over budget
                    raise rate_limited(req.counters, *over)
                raise AuthError(401, "Invalid client secret", "invalid_secret")
        await attempt.succeeded()

    if not enrolled_now and (client.last_seen_at is None or now - client.last_seen_at >= TOUCH_EVERY_S):
        await clients_repo.touch(db, client.id, now=now)

    override = headers.get("X-Assistant-Id")
    if ctx is not None and not override:  # resolved by the same query (client's, else workspace default)
        assistant = ctx.assistant or resolve_default_assistant(settings)
    else:
        assistant = await _resolve_assistant(db, settings, client, workspace, override)
    return Device(client_id=client.id, workspace_id=client.workspace_id, assistant=assistant, demo=False,
                  max_call_s=settings.max_call_s, enrolled_now=enrolled_now)


def _bad_secret_shape() -> AuthError:
    return AuthError(400, f"X-Client-Secret must be {clients_repo.MIN_SECRET_CHARS} to "
                          f"{clients_repo.MAX_SECRET_CHARS} characters", "invalid_secret")


def _unauthorized(message: str, code: str) -> AuthError:
    return AuthError(401, message, code, headers={"WWW-Authenticate": 'Bearer realm="relay"'})


async def _token_assistant(db: Database, settings: Settings, token: tokens_repo.ApiToken) -> Assistant:
    """The token's assistant, else its workspace's default assistant, else the default assistant."""
    workspace = await workspaces_repo.find(db, token.workspace_id)
    for aid in (token.assistant_id, workspace.default_assistant_id if workspace else None):
        if aid:
            assistant = await assistants_repo.find(db, aid)
            if assistant is not None and assistant.workspace_id == token.workspace_id:
                return assistant
    return resolve_default_assistant(settings)


async def _authenticate_token(req: AuthRequest, presented: str) -> tuple[Device, str | None]:
    db, address, now = req.db, req.address, req.now
    tid = tokens_repo.token_id(presented) if presented else None
    # the device edge's throttle: refused before verifying, unless known at this address
    attempt = await req.throttle.attempt(f"token:{tid}" if tid is not None else None, address, now, db)
    if attempt.refused:
        raise rate_limited(req.counters, *attempt.refused)
    try:
        if not presented:
            raise _unauthorized("Missing token: pass ?token= or Authorization: Bearer", "missing_token")
        status, token = await tokens_repo.verify(db, presented)
        if status == "revoked":
            raise _unauthorized("This token has been revoked", "token_revoked")
        if status != "ok" or token is None:
            over = await attempt.failed(key_counts=status == "mismatch")
            log.warning("invalid API token (%s)", status, extra={"client_id": tid or "-", "remote": address})
            if over:
                raise rate_limited(req.counters, *over)
            raise _unauthorized("Invalid token", "invalid_token")
        await attempt.succeeded()
    finally:
        await attempt.release()
    if token.last_used_at is None or now - token.last_used_at >= TOKEN_TOUCH_EVERY_S:
        await tokens_repo.touch(db, token.id, now=now)
    assistant = await _token_assistant(db, req.settings, token)
    device = Device(client_id=token.id, workspace_id=token.workspace_id, assistant=assistant, demo=False,
                    max_call_s=req.settings.max_call_s)
    return device, token.client_dialect
