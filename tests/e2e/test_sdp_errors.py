"""``POST /v1/realtime`` with a malformed offer: 400 ``invalid_sdp`` whose message names the
line and the field, in the documented error shape, and nothing is left behind."""

from __future__ import annotations

import re

import orjson

from tests.e2e.test_errors import assert_error, post
from tests.media.conftest import golden_offer


async def test_a_malformed_m_line_is_named_not_pythons_words(relay):
    sdp = golden_offer("firefox")
    broken = re.sub(r"^m=audio \d+ ", "m=audio x9 ", sdp, count=1, flags=re.M)
    assert broken != sdp
    line_no = next(i for i, line in enumerate(broken.splitlines(), 1) if line.startswith("m=audio"))
    err = assert_error(*await post(relay, broken), 400, "invalid_sdp")
    assert err["message"] == f"malformed SDP offer: invalid m= line {line_no}: port must be a number"
    assert err["type"] == "invalid_request_error"
    broken = sdp.replace("a=rtpmap:109 opus/48000/2", "a=rtpmap:109 opus/48k/2", 1)
    status, ctype, body = await post(relay, broken)
    err = assert_error(status, ctype, body, 400, "invalid_sdp")
    assert "a=rtpmap line" in err["message"] and "clock rate must be a number" in err["message"]
    assert b"int()" not in body and b"literal" not in orjson.dumps(err)
    assert len(relay.plane.registry) == 0
