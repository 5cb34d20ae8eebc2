"""Client errors found by the HTTP API fuzzer (issue 14, item 4) are 4xx in the documented shape, never 500."""

from __future__ import annotations

import pytest

from tests.app_api.conftest import Env, build_env

TOKEN = "admin-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def aenv(sqlite_db, make_app) -> Env:  # noqa: ANN001
    return await build_env(sqlite_db, make_app, admin_token=TOKEN)


async def _client_error(resp) -> tuple[int, str]:  # noqa: ANN001
    """(status, code) of a 4xx in either documented shape (admin: {"error"}, app API: {"detail"})."""
    assert 400 <= resp.status < 500, (resp.status, await resp.text())
    body = await resp.json()
    err = body.get("detail") or body.get("error")
    assert isinstance(err, dict) and err.get("code"), body
    return resp.status, err["code"]


CTRL_PART = (b"--XYZ\r\nContent-Disposition: form-data; name=\"name\"\r\nX-Bad: a\x01b\r\n\r\nx\r\n"
             b"--XYZ\r\nContent-Disposition: form-data; name=\"audio_file\"; filename=\"a\x7f.wav\"\r\n\r\n"
             b"RIFF\r\n--XYZ--\r\n")


@pytest.mark.parametrize("path", ["/v1/app/voices/clone", "/admin/v1/voices"])
async def test_multipart_part_header_with_a_control_character(aenv: Env, path: str) -> None:
    headers = {**aenv.a.headers(), **AUTH, "Content-Type": "multipart/form-data; boundary=XYZ"}
    await _client_error(await aenv.client.post(path, headers=headers, data=CTRL_PART))


@pytest.mark.parametrize("path", ["/admin/v1/clients", "/admin/v1/workspaces", "/admin/v1/assistants",
                                  "/admin/v1/stories", "/admin/v1/voices", "/admin/v1/tokens", "/admin/v1/app-usage"])
@pytest.mark.parametrize("query", ["offset=99999999999999999999", "limit=99999999999999999999", "offset=-1e400",
                                   "limit=1e300"])
async def test_huge_paging_numbers(aenv: Env, path: str, query: str) -> None:
    resp = await aenv.client.get(f"{path}?{query}", headers=AUTH)
    if resp.status == 200:  # a list that ignores or clamps paging is fine too
        return
    await _client_error(resp)


@pytest.mark.parametrize("body", [{"description": []}, {"name": {}}, {"name": 5}, {"description": {"a": 1}},
                                  {"name": None}, [], "x"])
async def test_patch_admin_voice_with_wrong_types(aenv: Env, body: object) -> None:
    voice = await aenv.workspace_voice()
    for vid in (voice.id, "x"):
        await _client_error(await aenv.client.patch(f"/admin/v1/voices/{vid}", headers=AUTH, json=body))


@pytest.mark.parametrize("field, value", [("slug", [1]), ("slug", {}), ("name", 3), ("transcript", [""]),
                                          ("sort_order", 1e300), ("sort_order", -1e300), ("sort_order", 2**70),
                                          ("sort_order", "1.5"), ("sort_order", 1.5), ("default_voice_id", 5), ("excerpt", [])])
async def test_story_fields_with_wrong_types(aenv: Env, field: str, value: object) -> None:
    body = {"workspace_id": aenv.ws.id, "slug": "fox", "name": "Fox", "transcript": "A fox.", field: value}
    await _client_error(await aenv.client.post("/admin/v1/stories", headers=AUTH, json=body))
    ok = await aenv.client.post("/admin/v1/stories", headers=AUTH, json={
        "workspace_id": aenv.ws.id, "slug": "fox2", "name": "Fox", "transcript": "A fox."})
    assert ok.status == 201, await ok.text()
    sid = (await ok.json())["story_id"]
    await _client_error(await aenv.client.patch(f"/admin/v1/stories/{sid}", headers=AUTH, json={field: value}))


async def test_story_sort_order_may_be_an_integral_json_number(aenv: Env) -> None:
    """JSON has one number type and the OpenAPI document says "integer": 3.0 is 3 (1.5 is refused above)."""
    ok = await aenv.client.post("/admin/v1/stories", headers=AUTH, json={
        "workspace_id": aenv.ws.id, "slug": "fox3", "name": "Fox", "transcript": "A fox.", "sort_order": 3.0})
    assert ok.status == 201, await ok.text()
    assert (await ok.json())["sort_order"] == 3
