"""HMAC-SHA256 signatures for expiring file URLs, and the signing key's lifecycle.

URL: ``<base>/v1/app/files/<key>?expires=<unix s>&sig=<base64url(HMAC(key_bytes, "<key>\\n<expires>"))>``.
Verification uses ``hmac.compare_digest``. The key is ``settings.url_signing_key``
when set (every node of a cluster must share it); otherwise 32 random bytes
generated once and persisted in ``<data_dir>/url_signing.key`` (mode 0600).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

KEY_FILE = "url_signing.key"


def load_signing_key(configured: str, data_dir: Path) -> bytes:
    if configured:
        return configured.encode("utf-8")
    path = data_dir / KEY_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # written whole to a private temporary file, then linked in place (atomic, fails if it exists):
        # several worker processes starting at once never read a half-written key
        key = secrets.token_hex(32)
        tmp = data_dir / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(key + "\n")
            try:
                os.link(tmp, path)
                return key.encode("ascii")
            except FileExistsError:
                pass  # another process won: use its key
        finally:
            tmp.unlink(missing_ok=True)
    text = path.read_text(encoding="ascii").strip()
    if len(text) < 32:
        raise ValueError(f"{path} is too short to be a signing key")
    return text.encode("ascii")


class UrlSigner:
    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("url signing key must be at least 16 bytes")
        self._key = key

    def _mac(self, path_key: str, expires: int) -> str:
        mac = hmac.new(self._key, f"{path_key}\n{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")

    def sign(self, path_key: str, ttl_s: int, *, now: float | None = None) -> tuple[int, str]:
        expires = int((time.time() if now is None else now) + ttl_s)
        return expires, self._mac(path_key, expires)

    def verify(self, path_key: str, expires: str, sig: str, *, now: float | None = None) -> str | None:
        """None when valid, else the reason ("expired", "bad signature")."""
        if not expires.isdigit() or len(expires) > 12 or len(sig) > 100:
            return "bad signature"
        if not hmac.compare_digest(self._mac(path_key, int(expires)).encode(), sig.encode("ascii", "replace")):
            return "bad signature"
        if int(expires) <= (time.time() if now is None else now):
            return "expired"
        return None
