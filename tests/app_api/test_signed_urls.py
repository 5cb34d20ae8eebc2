"""Signed, expiring file URLs: served by relay, expire, reject tampering; the signing key's lifecycle."""

from __future__ import annotations

import os
import stat
from urllib.parse import parse_qs, urlencode, urlsplit

from relay.files.signing import KEY_FILE, UrlSigner, load_signing_key
from tests.app_api.conftest import Env, error_of


async def _stored(env: Env, key: str = "tts/test/a.wav", data: bytes = b"RIFF....WAVEdata") -> str:
    await env.services.storage.put(key, data)
    return key


async def test_signed_url_serves_the_file(env_sqlite: Env) -> None:
    env = env_sqlite
    key = await _stored(env)
    url, ttl = env.services.storage.signed_url(key, str(env.client.make_url("")), 300)
    assert ttl == 300
    resp = await env.client.session.get(url)
    assert resp.status == 200 and await resp.read() == b"RIFF....WAVEdata"
    assert resp.content_type == "audio/wav"


async def test_expired_and_tampered_urls_are_403(env_sqlite: Env) -> None:
    env = env_sqlite
    key = await _stored(env)
    await _stored(env, "tts/test/b.wav", b"other")
    base = str(env.client.make_url(""))
    expired, _ = env.services.storage.signed_url(key, base, -1)
    assert await error_of(await env.client.session.get(expired)) == (403, "URL_EXPIRED")
    good, _ = env.services.storage.signed_url(key, base, 300)
    parts = urlsplit(good)
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    tampered = [
        {**q, "sig": q["sig"][:-2] + ("AA" if not q["sig"].endswith("AA") else "BB")},
        {**q, "expires": str(int(q["expires"]) + 3600)},  # extending the expiry breaks the signature
        {"expires": q["expires"]},                          # no signature
    ]
    for query in tampered:
        resp = await env.client.get(parts.path + "?" + urlencode(query))
        assert await error_of(resp) == (403, "INVALID_SIGNATURE")
    # the same signature on another file
    resp = await env.client.get(parts.path.replace("a.wav", "b.wav") + "?" + parts.query)
    assert await error_of(resp) == (403, "INVALID_SIGNATURE")
    # path traversal never reaches the filesystem
    resp = await env.client.get("/v1/app/files/../relay.db?" + parts.query)
    assert resp.status in (403, 404)


def test_signer_expiry_is_exact() -> None:
    signer = UrlSigner(b"k" * 32)
    expires, sig = signer.sign("a/b.wav", 300, now=1000.0)
    assert expires == 1300
    assert signer.verify("a/b.wav", str(expires), sig, now=1299.0) is None
    assert signer.verify("a/b.wav", str(expires), sig, now=1300.0) == "expired"
    assert signer.verify("a/c.wav", str(expires), sig, now=1000.0) == "bad signature"
    assert UrlSigner(b"j" * 32).verify("a/b.wav", str(expires), sig, now=1000.0) == "bad signature"


def test_signing_key_is_generated_once_and_private(tmp_path) -> None:  # noqa: ANN001
    k1 = load_signing_key("", tmp_path)
    k2 = load_signing_key("", tmp_path)
    assert k1 == k2 and len(k1) == 64
    mode = stat.S_IMODE(os.stat(tmp_path / KEY_FILE).st_mode)
    assert mode == 0o600
    assert load_signing_key("configured-key-of-the-cluster", tmp_path) == b"configured-key-of-the-cluster"


async def test_two_apps_on_one_data_dir_share_the_key(env_sqlite: Env, make_app) -> None:  # noqa: ANN001
    env = env_sqlite
    key = await _stored(env)
    url, _ = env.services.storage.signed_url(key, str(env.client.make_url("")), 300)
    other = await make_app(db=env.db, data_dir=str(env.services.settings.data_path))
    path = urlsplit(url)
    resp = await other.get(path.path + "?" + path.query)
    assert resp.status == 200


async def test_range_requests_for_seeking(env_sqlite: Env) -> None:
    env = env_sqlite
    key = await _stored(env, "tts/test/r.wav", bytes(range(256)) * 4)
    url, _ = env.services.storage.signed_url(key, str(env.client.make_url("")), 300)
    resp = await env.client.session.get(url, headers={"Range": "bytes=100-199"})
    assert resp.status == 206 and await resp.read() == (bytes(range(256)) * 4)[100:200]
    assert resp.headers["Content-Range"] == "bytes 100-199/1024"
    missing, _ = env.services.storage.signed_url("tts/test/none.wav", str(env.client.make_url("")), 300)
    assert await error_of(await env.client.session.get(missing)) == (404, "FILE_NOT_FOUND")
