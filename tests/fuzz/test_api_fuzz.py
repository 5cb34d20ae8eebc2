"""Property-based fuzzing of the whole HTTP API (issue 14, item 4), against a real ``relay serve``.

* schemathesis, driven by relay's own ``/openapi.json``, with the admin token, a workspace key
  and an enrolled client, so authenticated paths are reached; ``POST /v1/realtime``'s SDP bodies
  come from hypothesis-generated mutations of real devices' offers (tests/fuzz/st_hooks.py);
* the same SDP mutations posted by an authenticated device straight to ``POST /v1/realtime``.

Asserted: no 500, the only 5xx the documented 503s, responses conform to the document
(status codes, content types, headers, schemas), requests the document calls invalid are refused
and valid ones are not refused with 400/422 (the operations where validity needs more than a schema
are listed in ``tests/fuzz/st_hooks.py``'s ``POSITIVE_UNCHECKED``), and 0 tracebacks in relay's log. The runs print their case
counts. Bounded: a fixed number of examples per operation and a time budget for the whole run.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from tests.conftest import free_port
from tests.fuzz.sdp_strategy import mutated_offers

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "fuzz-admin-token-" + "z" * 24
SECRET = "fuzz-device-secret-" + "s" * 24
#: schemathesis examples per API operation and phase (bounds the run to a few minutes on 2 cores)
MAX_EXAMPLES = int(os.environ.get("RELAY_FUZZ_EXAMPLES", "25"))
#: negative_data_rejection: a request the document says is invalid is refused (4xx);
#: positive_data_where_schemas_tell (tests/fuzz/st_hooks.py): one it says is valid is not refused with 400/422
CHECKS = ("only_documented_503s,status_code_conformance,content_type_conformance,response_headers_conformance,"
          "response_schema_conformance,negative_data_rejection,positive_data_where_schemas_tell")
#: the whole schemathesis run's time limit, seconds (about 40 s here with 25 examples; a run that overruns fails).
#: Not schemathesis' --max-time: that is a budget it fills, repeating the fuzzing until it is spent.
MAX_TIME_S = int(os.environ.get("RELAY_FUZZ_MAX_TIME_S", "600"))


@dataclass
class Served:
    base_url: str
    log_path: Path
    workspace_key: str
    client_id: str

    def tracebacks(self) -> list[str]:
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if "Traceback" in line or '"exc":' in line:
                found.append(line[:2000])
        return found


def _call(method: str, url: str, body: bytes | None = None, **headers: str) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 (loopback)
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}


def _enrolled_client(base: str) -> tuple[str, str]:
    """A new client, in a new workspace with a key, with ``SECRET`` enrolled (trust on first use): ``(client id,
    workspace key)``. Its own workspace: the schemathesis run deletes what it finds and rotates the keys it
    finds, the default workspace's included, so the app API's credentials must live where it does not look."""
    status, body = _call("POST", base + "/admin/v1/workspaces", json.dumps({"name": "fuzz", "with_key": True}).encode(),
                         **ADMIN)
    assert status == 201, body
    key = json.loads(body)["key"]
    workspace = json.dumps({"workspace_id": json.loads(body)["id"]}).encode()
    status, body = _call("POST", base + "/admin/v1/clients", workspace, **ADMIN)
    assert status == 201, body
    client_id = json.loads(body)["id"]
    status, body = _call("POST", base + "/v1/realtime/sessions", b"{}", **{
        "X-Client-Id": client_id, "X-Client-Secret": SECRET, "Content-Type": "application/json"})
    assert status == 200, body
    return client_id, key


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("fuzz")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env.update({"RELAY_PORT": str(port), "RELAY_DATA_DIR": str(tmp / "data"), "RELAY_LOG_FORMAT": "json",
                "RELAY_ADMIN_TOKEN": ADMIN_TOKEN, "RELAY_ICE_HOST_ADDRESSES": "127.0.0.1",
                "RELAY_DEMO_MODE": "true", "RELAY_ICE_CONNECT_TIMEOUT_S": "2", "RELAY_MAX_CALLS_PER_CLIENT": "0",
                # the fuzzer sends thousands of requests with wrong credentials on purpose
                "RELAY_AUTH_FAIL_LIMIT": "1000000", "RELAY_SHUTDOWN_TIMEOUT_S": "3",
                "PYTHONPATH": str(ROOT)})
    log_path = tmp / "relay.log"
    with open(log_path, "wb") as log_fh:
        proc = subprocess.Popen([sys.executable, "-m", "relay", "serve"], env=env, cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=log_fh)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                if _call("GET", base + "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        client_id, key = _enrolled_client(base)
        yield Served(base, log_path, key, client_id)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_schemathesis_over_the_openapi_document(served: Served, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        f'[auth.openapi.AdminToken]\nbearer = "{ADMIN_TOKEN}"\n'
        f'[auth.openapi.WorkspaceKey]\napi_key = "{served.workspace_key}"\n'
        f'[auth.openapi.ClientId]\napi_key = "{served.client_id}"\n'
        f'[auth.openapi.ClientSecret]\napi_key = "{SECRET}"\n'
        f'[auth.openapi.MetricsToken]\nbearer = "{ADMIN_TOKEN}"\n'
        # 413 (a body over relay's limit) refuses invalid data as well as 400 does
        '[checks.negative_data_rejection]\nexpected-statuses = ["400", "401", "403", "404", "405", "406", "409", '
        '"413", "415", "422", "428", "429", "5xx"]\n')
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.fuzz.st_hooks", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run",
           served.base_url + "/openapi.json", "--checks", CHECKS, "--max-examples", str(MAX_EXAMPLES),
           # one worker: with two, CPython 3.11's ast module raised SystemError inside schemathesis' generators
           "--workers", "1", "--seed", "14", "--request-timeout", "120", "--no-color",
           # the WebSocket upgrade (GET /v1/realtime) is fuzzed by tests/ws_edge, not over plain HTTP
           "--exclude-name", "GET /v1/realtime"]
    out = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=MAX_TIME_S)
    report = out.stdout + out.stderr
    generated = re.search(r"(\d+) generated", report)
    print(f"\nschemathesis: {generated.group(0) if generated else '? generated'}; "
          f"exit {out.returncode}\n" + report[-3000:])
    assert generated and int(generated.group(1)) > 0, report[-5000:]
    assert out.returncode == 0, report[-20000:]
    assert served.tracebacks() == []


def test_mutated_sdp_offers_from_an_enrolled_device(served: Served) -> None:
    statuses: Counter[int] = Counter()
    client_id, _ = _enrolled_client(served.base_url)

    @settings(max_examples=int(os.environ.get("RELAY_FUZZ_SDP_EXAMPLES", "150")), deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(offer=mutated_offers())
    def post(offer: str) -> None:
        status, body = _call("POST", served.base_url + "/v1/realtime", offer.encode(), **{
            "X-Client-Id": client_id, "X-Client-Secret": SECRET, "Content-Type": "application/sdp"})
        statuses[status] += 1
        assert status in (201, 400, 503), (status, body[:300], repr(offer), served.tracebacks()[-1:])
        if status != 201:
            err = json.loads(body)["error"]
            assert err["code"] and err["message"] and err["type"]
            assert status == 400 or err["code"] == "capacity_exceeded"

    post()
    print(f"\nSDP offers posted: {sum(statuses.values())}, by status: {dict(sorted(statuses.items()))}")
    assert statuses[400] > 0 and statuses[201] > 0
    assert served.tracebacks() == []
