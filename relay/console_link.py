"""The console link that ``relay serve`` prints (like Jupyter's token URL).

On start, with ``console_link`` on, the built-in ``default`` workspace gets a workspace key and
self-enrolment the first time (the store keeps only the key's SHA-256); the plain key is
written once to ``<data_dir>/workspace-key`` (mode 0600) so later starts can print the same
link. The link carries the key in the URL *fragment* (``/#workspace_key=...``), which browsers
never send to servers, so it stays out of access logs; the console page moves it into its
localStorage and sends it as ``X-Workspace-Key``, and its generated client self-enrols (TOFU).

The key is printed to stdout only, never logged. When the key file is gone (or no longer
matches the stored hash) nothing is changed: the operator rotates the key with
``relay admin workspaces rotate-key default``, which rewrites the file.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from relay.store import workspaces as workspaces_repo
from relay.store.db import Executor

log = logging.getLogger("relay.console")

WORKSPACE_ID = "default"
KEY_FILE = "workspace-key"
MAX_KEY_FILE_BYTES = 1024
ROTATE_HINT = f"relay admin workspaces rotate-key {WORKSPACE_ID}"


@dataclass(frozen=True)
class LinkKey:
    """What ``prepare`` found: the plain key for the link (or None) and a note for the operator."""

    key: str | None
    created: bool = False
    self_enrol: bool = False
    note: str = ""  # never contains the key


def key_path(data_dir: Path) -> Path:
    return Path(data_dir) / KEY_FILE


def write_key_file(path: Path, key: str) -> None:
    """Write ``key`` to ``path`` atomically, readable by the owner only (0600)."""
    tmp = _write_tmp(path, key)
    os.replace(tmp, path)


def _write_tmp(path: Path, key: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, (key + "\n").encode("ascii"))
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    return tmp


def read_key_file(path: Path) -> str | None:
    """The key stored in ``path``, or None when it is missing or not a workspace key."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:  # a symlink (O_NOFOLLOW) or unreadable: not used
        log.warning("%s cannot be used: %s", path, exc.strerror)
        return None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            return None
        if mode & 0o077:
            log.warning("%s was readable by others: made it 0600", path)
            os.fchmod(fd, 0o600)
        raw = os.read(fd, MAX_KEY_FILE_BYTES + 1)
    finally:
        os.close(fd)
    text = raw.decode("ascii", "replace").strip()
    if len(raw) > MAX_KEY_FILE_BYTES or not text.startswith(workspaces_repo.KEY_PREFIX) or not text.isprintable():
        return None
    return text


async def prepare(db: Executor, data_dir: Path) -> LinkKey:
    """Give the ``default`` workspace a key on first run; return the key for the console link."""
    path = key_path(data_dir)
    ws = await workspaces_repo.find(db, WORKSPACE_ID)
    if ws is None:
        return LinkKey(None, note=f"the {WORKSPACE_ID!r} workspace does not exist: no console link. Create a "
                                  "workspace with `relay admin workspaces create NAME --self-enrol --with-key` and "
                                  "paste its key into the console's Workspace key field.")
    if not ws.has_key:
        key = workspaces_repo.new_key()
        tmp = _write_tmp(path, key)
        try:
            won = await db.execute(
                "UPDATE workspaces SET key_hash = ?, allow_self_enrol = 1 WHERE id = ? AND key_hash IS NULL",
                workspaces_repo.key_digest(key), WORKSPACE_ID,
            )
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if won:
            os.replace(tmp, path)
            log.info("default workspace: key issued, self-enrolment on; key written to %s (0600)", path)
            return LinkKey(key, created=True, self_enrol=True)
        tmp.unlink(missing_ok=True)  # another process issued one first: use its file
        ws = await workspaces_repo.get(db, WORKSPACE_ID)

    key = read_key_file(path)
    if key is None:
        return LinkKey(None, self_enrol=ws.allow_self_enrol, note=(
            f"{path} is missing or unusable, so the console link cannot be shown (the {WORKSPACE_ID!r} workspace's key is "
            f"stored only as a hash). Issue a new key with `{ROTATE_HINT}` (it rewrites that file; enrolled "
            "devices keep working), then restart relay serve."))
    found = await workspaces_repo.by_key(db, key)
    if found is None or found.id != WORKSPACE_ID:
        return LinkKey(None, self_enrol=ws.allow_self_enrol, note=(
            f"{path} does not hold the {WORKSPACE_ID!r} workspace's current key (it was rotated elsewhere). "
            f"Issue a new key with `{ROTATE_HINT}` (it rewrites that file), then restart relay serve."))
    note = "" if ws.allow_self_enrol else (
        f"self-enrolment of the {WORKSPACE_ID!r} workspace is off, so the console link only works for clients "
        f"that already exist (`relay admin workspaces update {WORKSPACE_ID} --self-enrol` turns it on).")
    return LinkKey(key, self_enrol=ws.allow_self_enrol, note=note)


def base_url(public_base_url: str, host: str, port: int) -> str:
    """The console's address: ``public_base_url``, else the bound address (wildcards -> loopback)."""
    if public_base_url:
        return public_base_url.rstrip("/")
    if host in ("", "0.0.0.0"):  # noqa: S104 (mapping a wildcard bind to loopback)
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def console_url(base: str, key: str) -> str:
    """``<base>/#workspace_key=<key>``: the key in the fragment, never sent to a server."""
    return f"{base}/#workspace_key={quote(key, safe='')}"
