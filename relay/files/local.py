"""``LocalStorage``: files under a directory, served by relay itself through signed URLs."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from relay.files.base import Storage, StorageError, StoredFile, check_key, content_type_for
from relay.files.signing import UrlSigner

FILES_ROUTE = "/v1/app/files/"


class LocalStorage(Storage):
    def __init__(self, root: Path, signer: UrlSigner) -> None:
        self.root = root
        self.signer = signer

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def local_path(self, key: str) -> Path:
        """Where ``key`` lives on disk (for serving it with sendfile and Range support)."""
        return self._path(key)

    def _put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    async def put(self, key: str, data: bytes) -> None:
        try:
            await asyncio.to_thread(self._put, key, data)
        except OSError as exc:
            raise StorageError(f"cannot store {key}: {exc.strerror}") from None

    def _get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            return None

    async def get(self, key: str) -> StoredFile | None:
        try:
            data = await asyncio.to_thread(self._get, key)
        except OSError as exc:
            raise StorageError(f"cannot read {key}: {exc.strerror}") from None
        return None if data is None else StoredFile(key, data, content_type_for(key))

    async def delete(self, key: str) -> bool:
        path = self._path(key)
        try:
            await asyncio.to_thread(path.unlink)
            return True
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StorageError(f"cannot delete {key}: {exc.strerror}") from None

    def signed_url(self, key: str, base_url: str, ttl_s: int) -> tuple[str, int]:
        return signed_file_url(self.signer, key, base_url, ttl_s)

    def _cleanup(self, prefix: str, max_age_s: float) -> int:
        base = self._path(prefix)
        if not base.is_dir():
            return 0
        cutoff = time.time() - max_age_s
        removed = 0
        for path in base.rglob("*"):
            try:
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed

    async def cleanup(self, prefix: str, max_age_s: float) -> int:
        try:
            return await asyncio.to_thread(self._cleanup, prefix, max_age_s)
        except OSError as exc:
            raise StorageError(f"cleanup of {prefix} failed: {exc.strerror}") from None


def signed_file_url(signer: UrlSigner, key: str, base_url: str, ttl_s: int) -> tuple[str, int]:
    """``(url, ttl_s)``: the expiring signed link to ``key`` under ``FILES_ROUTE`` (every storage kind)."""
    check_key(key)
    expires, sig = signer.sign(key, ttl_s)
    return f"{base_url.rstrip('/')}{FILES_ROUTE}{quote(key)}?expires={expires}&sig={sig}", ttl_s
