"""Signed links across a fleet: two relay nodes on one PostgreSQL, the link made on one, the GET on the other.

Each node is a whole app with its own data_dir and its own connection pool (as two VMs or pods);
they share only the database, and with it the storage (``file_storage=auto`` -> database) and,
when ``url_signing_key`` is unset, the URL-signing key kept in the database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from aiohttp.test_utils import TestClient

from relay.files import DatabaseStorage, LocalStorage, UrlSigner, fleet_signing_key
from relay.store import clients as clients_repo
from relay.store import workspaces as workspaces_repo
from relay.store.db import Database
from relay.web.app_api.common import SERVICES
from tests.app_api.conftest import Device, error_of
from tests.app_api.helpers import decode

TEXT = "A link made on one node plays from any node."


@pytest.fixture
async def fleet_db(pg_database_url: str) -> AsyncIterator[Database]:
    database = await Database.connect(pg_database_url)
    await database.migrate()
    yield database
    await database.close()


async def _node(make_app: Callable[..., Awaitable[TestClient]], tmp_path: Path, name: str, url: str,
                **overrides: str) -> TestClient:
    # db=None: the node opens its own pool on database_url, as a separate process would
    return await make_app(database_url=url, data_dir=str(tmp_path / name), **overrides)


async def _device(db: Database) -> tuple[str, Device]:
    ws, key = await workspaces_repo.create(db, "Fleet Inc", with_key=True)
    assert key
    client = await clients_repo.create(db, ws.id)
    return ws.id, Device(client.id, "secret-fleet-" + "s" * 40, key)


def _on(node: TestClient, url: str) -> str:
    """The same signed link, sent to another node (as a load balancer would)."""
    parts = urlsplit(url)
    return str(node.make_url(parts.path)) + "?" + parts.query


async def _speak(node: TestClient, db: Database, workspace_id: str, device: Device) -> dict:
    from relay.app_api.admin import create_workspace_voice

    voice = await create_workspace_voice(db, node.server.app[SERVICES], workspace_id, name="Narrator",
                                         design_prompt="calm")
    resp = await node.post(f"/v1/app/text-to-speech/{voice.id}/with-timestamps", headers=device.headers(),
                           json={"text": TEXT, "output_format": "wav_24000"})
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_tts_link_made_on_one_node_plays_from_the_other(fleet_db: Database, pg_database_url: str,
                                                             make_app, tmp_path: Path) -> None:  # noqa: ANN001
    node_a = await _node(make_app, tmp_path, "a", pg_database_url)
    node_b = await _node(make_app, tmp_path, "b", pg_database_url)
    assert isinstance(node_a.server.app[SERVICES].storage, DatabaseStorage)
    workspace_id, device = await _device(fleet_db)
    body = await _speak(node_a, fleet_db, workspace_id, device)
    assert urlsplit(body["audio_url"]).port == node_a.port

    resp = await node_b.session.get(_on(node_b, body["audio_url"]))
    assert resp.status == 200, await resp.text()
    data = await resp.read()
    fmt, samples, rate = decode(data)  # PyAV decodes what node B served
    assert fmt == "wav" and data[:4] == b"RIFF"
    assert abs(len(samples) / rate - body["duration_seconds"]) < 0.06
    assert resp.headers["Accept-Ranges"] == "bytes"
    # seeking works on the other node too
    resp = await node_b.session.get(_on(node_b, body["audio_url"]), headers={"Range": "bytes=44-1043"})
    assert resp.status == 206 and await resp.read() == data[44:1044]
    assert resp.headers["Content-Range"] == f"bytes 44-1043/{len(data)}"
    # nothing on either node's disk: the bytes came from the database
    assert not any((tmp_path / "b").rglob("*.wav")) and not any((tmp_path / "a").rglob("*.wav"))
    # no url_signing_key configured: both nodes took the one key the first node put in the database
    key = await fleet_signing_key(fleet_db)
    assert UrlSigner(key).verify(*_key_expires_sig(body["audio_url"])) is None
    assert not (tmp_path / "a" / "url_signing.key").exists()


def _key_expires_sig(url: str) -> tuple[str, str, str]:
    parts = urlsplit(url)
    query = dict(p.split("=", 1) for p in parts.query.split("&"))
    return parts.path.removeprefix("/v1/app/files/"), query["expires"], query["sig"]


async def test_a_configured_key_is_used_and_must_match(fleet_db: Database, pg_database_url: str,
                                                       make_app, tmp_path: Path) -> None:  # noqa: ANN001
    shared = "fleet-signing-key-" + "k" * 32
    node_a = await _node(make_app, tmp_path, "a", pg_database_url, url_signing_key=shared)
    node_b = await _node(make_app, tmp_path, "b", pg_database_url, url_signing_key=shared)
    node_c = await _node(make_app, tmp_path, "c", pg_database_url, url_signing_key="another-key-" + "x" * 32)
    storage = node_a.server.app[SERVICES].storage
    await storage.put("tts/fleet/a.wav", b"RIFF-fleet-bytes")
    url, _ = storage.signed_url("tts/fleet/a.wav", str(node_a.make_url("")), 300)
    assert UrlSigner(shared.encode()).verify(*_key_expires_sig(url)) is None
    resp = await node_b.session.get(_on(node_b, url))
    assert resp.status == 200 and await resp.read() == b"RIFF-fleet-bytes"
    # a node with another key refuses the link: the key must be the same on every node
    assert await error_of(await node_c.session.get(_on(node_c, url))) == (403, "INVALID_SIGNATURE")


async def test_local_storage_on_a_fleet_breaks_links_which_is_why_auto_picks_the_database(
        fleet_db: Database, pg_database_url: str, make_app, tmp_path: Path) -> None:  # noqa: ANN001
    node_a = await _node(make_app, tmp_path, "a", pg_database_url, file_storage="local")
    node_b = await _node(make_app, tmp_path, "b", pg_database_url, file_storage="local")
    storage = node_a.server.app[SERVICES].storage
    assert isinstance(storage, LocalStorage)
    await storage.put("tts/fleet/a.wav", b"RIFF-local")
    url, _ = storage.signed_url("tts/fleet/a.wav", str(node_a.make_url("")), 300)
    assert (await node_a.session.get(url)).status == 200
    # same key (from the database), but the file is on node A's disk only
    assert await error_of(await node_b.session.get(_on(node_b, url))) == (404, "FILE_NOT_FOUND")


async def test_database_storage_contract(db: Database) -> None:
    """put/get/replace/delete/cleanup on SQLite and PostgreSQL (BLOB / BYTEA)."""
    import time

    storage = DatabaseStorage(db, UrlSigner(b"k" * 32))
    payload = bytes(range(256)) * 10
    await storage.put("tts/d/old.mp3", payload)
    got = await storage.get("tts/d/old.mp3")
    assert got is not None and got.data == payload and got.content_type == "audio/mpeg"
    await storage.put("tts/d/old.mp3", b"replaced")
    assert (await storage.get("tts/d/old.mp3")).data == b"replaced"
    await storage.put("tts/d/new.mp3", b"new")
    await storage.put("tts2/x.mp3", b"other prefix")
    await storage.put("voices/v/reference.wav", b"ref")
    await db.execute("UPDATE stored_files SET created_at = ? WHERE key IN (?, ?)", time.time() - 7200,
                     "tts/d/old.mp3", "tts2/x.mp3")
    assert await storage.cleanup("tts", 3600) == 1  # only under tts/, only the old one
    assert await storage.get("tts/d/old.mp3") is None
    assert await storage.get("tts2/x.mp3") is not None and await storage.get("tts/d/new.mp3") is not None
    assert await storage.delete("voices/v/reference.wav") and not await storage.delete("voices/v/reference.wav")
    with pytest.raises(ValueError):
        await storage.get("../etc/passwd")
    assert await fleet_signing_key(db) == await fleet_signing_key(db)  # generated once


async def test_database_files_honour_ranges(fleet_db: Database, pg_database_url: str,
                                            make_app, tmp_path: Path) -> None:  # noqa: ANN001
    node = await _node(make_app, tmp_path, "a", pg_database_url)
    storage = node.server.app[SERVICES].storage
    data = bytes(range(256)) * 4
    await storage.put("tts/test/r.wav", data)
    url, _ = storage.signed_url("tts/test/r.wav", str(node.make_url("")), 300)
    for rng, status, body, content_range in [
        ("bytes=100-199", 206, data[100:200], "bytes 100-199/1024"),
        ("bytes=1000-", 206, data[1000:], "bytes 1000-1023/1024"),
        ("bytes=-24", 206, data[-24:], "bytes 1000-1023/1024"),
        ("bytes=1000-5000", 206, data[1000:], "bytes 1000-1023/1024"),
        ("bytes=2000-", 416, b"", "bytes */1024"),
    ]:
        resp = await node.session.get(url, headers={"Range": rng})
        assert (resp.status, await resp.read(), resp.headers["Content-Range"]) == (status, body, content_range), rng
    resp = await node.session.get(url, headers={"Range": "pages=1-2"})  # not bytes: the whole file
    assert resp.status == 200 and await resp.read() == data
    missing, _ = storage.signed_url("tts/test/none.wav", str(node.make_url("")), 300)
    assert await error_of(await node.session.get(missing)) == (404, "FILE_NOT_FOUND")
