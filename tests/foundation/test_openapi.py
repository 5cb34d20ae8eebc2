"""/openapi.json is a valid OpenAPI 3.1 document, and real responses match it."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_spec
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from relay.store import clients

from .helpers import db_of, device_headers, new_secret

TOKEN = "admin-" + "k" * 40
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Contract:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        resource = Resource.from_contents(doc, default_specification=DRAFT202012)
        self.registry = Registry().with_resource("urn:relay-openapi", resource)
        self.checked: list[tuple[str, str, int]] = []

    def _template(self, path: str) -> str:
        for template in self.doc["paths"]:
            pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
            if re.match(pattern, path):
                return template
        raise AssertionError(f"{path} is not documented")

    def check(self, method: str, path: str, status: int, body: Any) -> None:
        template = self._template(path)
        op = self.doc["paths"][template].get(method.lower())
        assert op is not None, f"{method} {template} is not documented"
        assert str(status) in op["responses"], f"{method} {template}: status {status} is not documented"
        pointer = "/".join(["#", "paths", template.replace("~", "~0").replace("/", "~1"), method.lower(),
                            "responses", str(status)])
        response = op["responses"][str(status)]
        if "$ref" in response:
            pointer = response["$ref"]
        schema = {"$ref": "urn:relay-openapi" + pointer + "/content/application~1json/schema"}
        Draft202012Validator(schema, registry=self.registry).validate(body)
        self.checked.append((method, template, status))


@pytest.fixture
async def app(make_app) -> TestClient:
    return await make_app(admin_token=TOKEN, auth_fail_limit=2, turn_urls=["turn:127.0.0.1:3478"],
                          turn_secret=["s3cret-value"])


async def test_document_is_valid_openapi(app: TestClient) -> None:
    resp = await app.get("/openapi.json")
    assert resp.status == 200
    doc = await resp.json()
    validate_spec(doc)
    assert doc["openapi"].startswith("3.1")
    for path in ("/v1/realtime/sessions", "/admin/v1/clients", "/admin/v1/clients/{id}/reset-secret", "/healthz"):
        assert path in doc["paths"]


async def test_documented_paths_are_routed(app: TestClient) -> None:
    doc = await (await app.get("/openapi.json")).json()
    routed = {r.resource.canonical for r in app.server.app.router.routes() if r.resource is not None}
    for path in doc["paths"]:
        assert path in routed, f"{path} is documented but not routed"


async def test_real_responses_match(app: TestClient) -> None:
    contract = Contract(await (await app.get("/openapi.json")).json())

    async def call(method: str, path: str, **kw: Any) -> tuple[int, Any]:
        resp = await app.request(method, path, **kw)
        body = await resp.json()
        contract.check(method, path, resp.status, body)
        return resp.status, body

    # realtime sessions: success and each error status
    cid = (await clients.create(db_of(app), "default")).id
    secret = new_secret()
    body = {"modalities": ["text", "audio"]}
    assert (await call("POST", "/v1/realtime/sessions", json=body, headers=device_headers(cid, secret)))[0] == 200
    assert (await call("POST", "/v1/realtime/sessions", json=body, headers=device_headers()))[0] == 400
    assert (await call("POST", "/v1/realtime/sessions", json=body,
                       headers=device_headers(str(uuid.uuid4()), secret)))[0] == 404
    assert (await call("POST", "/v1/realtime/sessions", json=body,
                       headers=device_headers(cid, X_Demo_Mode="true")))[0] == 403
    assert (await call("POST", "/v1/realtime/sessions", data="x",
                       headers={**device_headers(cid, secret), "Content-Type": "text/plain"}))[0] == 415
    assert (await call("POST", "/v1/realtime/sessions", json={"pad": "x" * 70000},
                       headers=device_headers(cid, secret)))[0] == 413
    for _ in range(2):
        assert (await call("POST", "/v1/realtime/sessions", json=body, headers=device_headers(cid, new_secret())))[0] \
            == 401
    assert (await call("POST", "/v1/realtime/sessions", json=body, headers=device_headers(cid, new_secret())))[0] == 429

    # ops
    assert (await call("GET", "/healthz"))[0] == 200
    assert (await call("GET", "/readyz"))[0] == 200

    # admin
    status, ws = await call("POST", "/admin/v1/workspaces", json={"name": "W", "with_key": True}, headers=AUTH)
    assert status == 201
    assert (await call("GET", "/admin/v1/workspaces", headers=AUTH))[0] == 200
    assert (await call("GET", f"/admin/v1/workspaces/{ws['id']}", headers=AUTH))[0] == 200
    assert (await call("POST", f"/admin/v1/workspaces/{ws['id']}/rotate-key", headers=AUTH))[0] == 200
    status, asst = await call("POST", "/admin/v1/assistants", headers=AUTH, json={
        "name": "A", "workspace_id": ws["id"], "tools": [{"name": "t", "side": "client"}]})
    assert status == 201
    assert (await call("PATCH", f"/admin/v1/assistants/{asst['id']}", json={"voice": "sage"}, headers=AUTH))[0] == 200
    assert (await call("GET", "/admin/v1/assistants", headers=AUTH))[0] == 200
    status, cl = await call("POST", "/admin/v1/clients", json={"workspace_id": ws["id"]}, headers=AUTH)
    assert status == 201
    assert (await call("GET", "/admin/v1/clients", headers=AUTH))[0] == 200
    assert (await call("PATCH", f"/admin/v1/clients/{cl['id']}", json={"assistant_id": asst["id"]},
                       headers=AUTH))[0] == 200
    for op in ("disable", "enable", "reset-secret"):
        assert (await call("POST", f"/admin/v1/clients/{cl['id']}/{op}", headers=AUTH))[0] == 200
    assert (await call("GET", f"/admin/v1/clients/{cl['id']}/usage", headers=AUTH))[0] == 200
    assert (await call("GET", f"/admin/v1/clients/{uuid.uuid4()}", headers=AUTH))[0] == 404
    assert (await call("POST", "/admin/v1/clients", json={"id": cl["id"]}, headers=AUTH))[0] == 409
    assert (await call("GET", "/admin/v1/clients", headers={"Authorization": "Bearer nope"}))[0] == 401
    assert (await call("DELETE", f"/admin/v1/clients/{cl['id']}", headers=AUTH))[0] == 200
    assert (await call("DELETE", f"/admin/v1/assistants/{asst['id']}", headers=AUTH))[0] == 200
    assert (await call("DELETE", f"/admin/v1/workspaces/{ws['id']}", headers=AUTH))[0] == 200
    assert len(contract.checked) >= 30


async def test_contract_catches_a_wrong_body(app: TestClient) -> None:
    """The checker is not vacuous: a body off the schema is rejected."""
    from jsonschema import ValidationError

    contract = Contract(await (await app.get("/openapi.json")).json())
    with pytest.raises(ValidationError):
        contract.check("POST", "/v1/realtime/sessions", 200, {"id": "sess_x", "iceServers": []})
    with pytest.raises(ValidationError):
        contract.check("POST", "/v1/realtime/sessions", 400, {"detail": {"error": "x", "code": "y"}})
