"""Schemathesis hooks for relay's API fuzzer (loaded with SCHEMATHESIS_HOOKS=tests.fuzz.st_hooks).

* ``application/sdp`` bodies (``POST /v1/realtime``) come from ``tests.fuzz.sdp_strategy``;
* ``only_documented_503s``: no 500 ever, and the only 5xx are 503s the operation documents
  (capacity, a busy TTS pool); replaces schemathesis' ``not_a_server_error``, which flags 503s too;
* ``positive_data_where_schemas_tell``: schemathesis' ``positive_data_acceptance`` (a request the
  document calls valid is not refused with 400/422) on every operation but those in
  ``POSITIVE_UNCHECKED``, whose valid requests depend on more than a JSON Schema can say (schemathesis'
  own per-operation switch in its config file did not hold in 4.32.5: the check still ran there).
"""

from __future__ import annotations

import schemathesis
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.fuzz.sdp_strategy import mutated_offers

#: operations whose valid requests depend on more than JSON Schema can say, so schema-valid data is refused
POSITIVE_UNCHECKED = {
    "POST /v1/realtime": "the body must be an SDP offer a WebRTC stack accepts",
    "POST /v1/realtime/sessions": "a client id self-enrols with a workspace key only when it is a UUID",
    "POST /v1/app/voices/clone": "audio_file must be 10-30 s of decodable audio",
    "POST /admin/v1/voices": "audio_file must be decodable audio; exactly one of design_prompt and audio_file",
    "POST /admin/v1/assistants": "tool names must be unique within an assistant",
    "PATCH /admin/v1/assistants/{id}": "tool names must be unique within an assistant",
}

schemathesis.openapi.media_type("application/sdp", mutated_offers().map(str.encode) | st.binary(max_size=64))


@schemathesis.check
def only_documented_503s(ctx, response, case) -> None:  # noqa: ANN001 (schemathesis' check signature)
    status = response.status_code
    if status < 500:
        return
    documented = case.operation.definition.raw.get("responses", {})
    assert status == 503 and "503" in documented, (
        f"{case.method} {case.path}: {status} {response.text[:300]!r} (only documented 503s are allowed)")


@schemathesis.check
def positive_data_where_schemas_tell(ctx, response, case) -> bool | None:  # noqa: ANN001 (schemathesis' signature)
    if case.operation.label in POSITIVE_UNCHECKED:
        return None
    return positive_data_acceptance(ctx, response, case)
