"""The one operator bearer check (``relay.auth.bearer_matches``), used by the admin API, ``GET /metrics``
and ``GET /v1/realtime/stats`` alike: case-insensitive scheme, constant-time compare, one failure budget."""

from __future__ import annotations

import pytest

from relay.auth import bearer_matches, presented_bearer

ADMIN = "admin-token-for-tests-0123456789"


@pytest.mark.parametrize("header", [f"Bearer {ADMIN}", f"bearer {ADMIN}", f"BEARER {ADMIN}",
                                    f"  Bearer   {ADMIN}  "])
def test_the_scheme_is_case_insensitive_and_blanks_are_ignored(header: str) -> None:
    assert bearer_matches(header, ADMIN)
    assert presented_bearer(header) == ADMIN


@pytest.mark.parametrize("header", ["", "Bearer", f"Basic {ADMIN}", f"Bearer {ADMIN}x", f"Bearer {ADMIN[:-1]}",
                                    ADMIN, f"Bearer{ADMIN}"])
def test_anything_else_is_refused(header: str) -> None:
    assert not bearer_matches(header, ADMIN)


def test_an_empty_expected_token_never_matches() -> None:
    assert not bearer_matches("Bearer ", "") and not bearer_matches("Bearer x", "")


# every operator endpoint: (path, the 401 code it answers)
ENDPOINTS = [("/admin/v1/workspaces", "invalid_admin_token"), ("/metrics", "invalid_metrics_token"),
             ("/v1/realtime/stats", "invalid_admin_token")]


@pytest.mark.parametrize(("path", "code"), ENDPOINTS)
async def test_every_operator_endpoint_uses_the_one_check(make_app, path: str, code: str) -> None:
    app = await make_app(admin_token=ADMIN)
    for scheme in ("Bearer", "bearer", "BEARER"):  # /v1/realtime/stats was case-sensitive before
        resp = await app.get(path, headers={"Authorization": f"{scheme} {ADMIN}"})
        assert resp.status == 200, (path, scheme, await resp.text())
    resp = await app.get(path, headers={"Authorization": "Bearer wrong-token"})
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == code
    assert resp.headers["WWW-Authenticate"].startswith("Bearer realm=")


async def test_failures_share_one_budget_per_address(make_app) -> None:
    app = await make_app(admin_token=ADMIN, auth_fail_limit=2)
    statuses = []
    for path, _code in ENDPOINTS * 8:  # the budget is 10 x auth_fail_limit per address, over all three
        statuses.append((await app.get(path, headers={"Authorization": "Bearer wrong"})).status)
    assert statuses[:20] == [401] * 20 and set(statuses[20:]) == {429}
    resp = await app.get("/v1/realtime/stats", headers={"Authorization": f"Bearer {ADMIN}"})
    assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0
