"""coturn REST-API credentials (``use-auth-secret``) and the ``iceServers`` list handed to devices.

    username   = "<expiry unix time>:<client id>"
    credential = base64(HMAC-SHA1(static_auth_secret, username))

Credentials cannot be revoked, so the TTL is kept modest (``turn_ttl_s``). Several
secrets support rotation: the first signs, coturn is configured with all of them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from relay.settings import Settings


def turn_credential(secret: str, username: str) -> str:
    digest = hmac.new(secret.encode("utf-8"), username.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def turn_username(client_id: str, *, now: float, ttl_s: int) -> str:
    # ':' separates the expiry from the user in coturn's scheme; keep the client id free of it.
    return f"{int(now) + int(ttl_s)}:{client_id.replace(':', '_')}"


def ice_servers(settings: Settings, client_id: str, *, now: float) -> list[dict[str, Any]]:
    """The ``iceServers`` for a session: STUN entries, then one TURN entry with every TURN URI.

    With no TURN configured (no URIs or no secret): the configured STUN servers, or ``[]``.
    """
    servers: list[dict[str, Any]] = [{"urls": list(settings.stun_urls)}] if settings.stun_urls else []
    if settings.turn_urls and settings.turn_secret:
        username = turn_username(client_id, now=now, ttl_s=settings.turn_ttl_s)
        servers.append({"urls": list(settings.turn_urls), "username": username,
                        "credential": turn_credential(settings.turn_secret[0], username)})
    return servers
