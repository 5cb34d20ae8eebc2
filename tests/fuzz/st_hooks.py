"""Schemathesis hooks for relay's API fuzzer (loaded with SCHEMATHESIS_HOOKS=tests.fuzz.st_hooks).

* ``application/sdp`` bodies (``POST /v1/realtime``) come from ``tests.fuzz.sdp_strategy``;
* ``only_documented_503s``: no 500 ever, and the only 5xx are 503s the operation documents
  (capacity, a busy TTS pool); replaces schemathesis' ``not_a_server_error``, which flags 503s too.
"""

from __future__ import annotations

import schemathesis
from hypothesis import strategies as st

from tests.fuzz.sdp_strategy import mutated_offers

schemathesis.openapi.media_type("application/sdp", mutated_offers().map(str.encode) | st.binary(max_size=64))


@schemathesis.check
def only_documented_503s(ctx, response, case) -> None:  # noqa: ANN001 (schemathesis' check signature)
    status = response.status_code
    if status < 500:
        return
    documented = case.operation.definition.raw.get("responses", {})
    assert status == 503 and "503" in documented, (
        f"{case.method} {case.path}: {status} {response.text[:300]!r} (only documented 503s are allowed)")
