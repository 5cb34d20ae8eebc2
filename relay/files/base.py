"""The storage interface."""

from __future__ import annotations

import abc
import re
from dataclasses import dataclass

KEY_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}(/[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}){0,7}$")
CONTENT_TYPES = {".wav": "audio/wav", ".mp3": "audio/mpeg", ".json": "application/json"}


class StorageError(RuntimeError):
    """The backend failed to store, read or delete a file."""


@dataclass(frozen=True)
class StoredFile:
    key: str
    data: bytes
    content_type: str


def check_key(key: str) -> str:
    """Keys are relative, slash-separated, of safe characters; no ``..`` segments."""
    if not KEY_RE.match(key) or any(part in (".", "..") for part in key.split("/")):
        raise ValueError(f"invalid storage key {key!r}")
    return key


def content_type_for(key: str) -> str:
    dot = key.rfind(".")
    return CONTENT_TYPES.get(key[dot:].lower(), "application/octet-stream") if dot >= 0 else "application/octet-stream"


class Storage(abc.ABC):
    @abc.abstractmethod
    async def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` (atomically replacing any old file)."""

    @abc.abstractmethod
    async def get(self, key: str) -> StoredFile | None:
        """The file, or None when there is none."""

    @abc.abstractmethod
    async def delete(self, key: str) -> bool:
        """Remove the file; False when there was none."""

    @abc.abstractmethod
    def signed_url(self, key: str, base_url: str, ttl_s: int) -> tuple[str, int]:
        """A URL anyone can GET for ``ttl_s`` seconds; returns (url, expires_in seconds)."""

    @abc.abstractmethod
    async def cleanup(self, prefix: str, max_age_s: float) -> int:
        """Delete files under ``prefix`` older than ``max_age_s``; returns how many."""
