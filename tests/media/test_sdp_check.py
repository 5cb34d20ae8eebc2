"""Malformed SDP offers get errors in words (line and field), never Python's own
("invalid literal for int() with base 10"); the offers of real devices pass untouched."""

from __future__ import annotations

import random
import re

import pytest
from aiortc.sdp import SessionDescription

from relay.media.codecs import OfferError, parse_offer
from relay.media.sdp_check import INCONSISTENT, SdpSyntaxError, check_sdp, rejection_reason
from tests.media.conftest import OFFERS, golden_offer

PYTHON_WORDS = re.compile(r"invalid literal|int\(\)|unpack|NoneType|Traceback|AssertionError|KeyError|"
                          r"has no attribute|not in list|base 10")
NAMES = sorted(p.stem for p in OFFERS.glob("*.sdp"))


@pytest.mark.parametrize("name", NAMES)
def test_offers_of_real_devices_pass(name: str) -> None:
    check_sdp(golden_offer(name))
    parse_offer(golden_offer(name))


@pytest.mark.parametrize("old, new, where, problem", [
    ("m=audio 9 ", "m=audio nine ", "m=", "port must be a number"),
    ("SAVPF 111 63", "SAVPF 111 x63", "m=", "payload type 'x63' must be a number"),
    ("SAVPF 111 63", "SAVPF 111 73", "m=", "payload type 73 is not allowed"),
    ("m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126", "m=audio 9", "m=",
     "expected m=<media> <port> <protocol> <formats>"),
    ("a=rtpmap:111 opus/48000/2", "a=rtpmap:1x1 opus/48000/2", "a=rtpmap", "payload type must be a number"),
    ("a=rtpmap:111 opus/48000/2", "a=rtpmap:111 opus/fast/2", "a=rtpmap", "clock rate must be a number"),
    ("a=rtpmap:111 opus/48000/2", "a=rtpmap:111 opus/48000/two", "a=rtpmap", "channels must be a number"),
    ("a=rtpmap:111 opus/48000/2", "a=rtpmap:111 opus", "a=rtpmap", "expected a=rtpmap:<payload type>"),
    ("a=fmtp:111 ", "a=fmtp:112 ", "a=fmtp", "payload type 112 has no a=rtpmap line"),
    ("a=fmtp:111 minptime=10", "a=fmtp:111 minptime=ten", "a=fmtp", "minptime must be a number"),
    ("typ host generation 0 network-id 1", "typ", "a=candidate", "expected <foundation>"),
    ("udp 2122260223 127.0.0.1 51642", "udp high 127.0.0.1 51642", "a=candidate", "priority must be a number"),
    ("udp 2122260223 127.0.0.1 51642", "udp 2122260223 127.0.0.1 port", "a=candidate", "port must be a number"),
    ("a=setup:actpass", "a=setup:whatever", "a=setup", "expected actpass, active or passive"),
    ("a=fingerprint:sha-256 ", "a=fingerprint:sha-256", "a=fingerprint", "expected a=fingerprint:<algorithm>"),
    ("a=sctp-port:5000", "a=sctp-port:five", "a=sctp-port", "must be a number"),
    ("a=max-message-size:262144", "a=max-message-size:lots", "a=max-message-size", "must be a number"),
    ("c=IN IP4 0.0.0.0", "c=IN 0.0.0.0", "c=", "expected 'IN IP4 <address>'"),
    ("a=extmap:1 ", "a=extmap:one ", "a=extmap", "the id must be a number"),
])
def test_malformed_lines_are_named_with_line_number_and_field(old: str, new: str, where: str, problem: str) -> None:
    sdp = golden_offer("chrome")
    assert old in sdp, old
    broken = sdp.replace(old, new, 1)
    line_no = next(i for i, (a, b) in enumerate(zip(sdp.splitlines(), broken.splitlines(), strict=True), 1)
                   if a != b)  # the damaged line
    with pytest.raises(SdpSyntaxError) as err:
        check_sdp(broken)
    assert str(err.value).startswith(f"invalid {where} line {line_no}: "), str(err.value)
    assert problem in str(err.value)
    with pytest.raises(OfferError) as offer_err:
        parse_offer(broken)
    assert offer_err.value.code == "invalid_sdp"
    assert str(offer_err.value) == f"malformed SDP offer: {err.value}"
    assert not PYTHON_WORDS.search(str(offer_err.value))


def test_the_issue_example() -> None:
    sdp = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\nm=audio abc UDP/TLS/RTP/SAVPF 111\r\n"
    with pytest.raises(OfferError, match=r"^malformed SDP offer: invalid m= line 3: port must be a number$"):
        parse_offer(sdp)
    with pytest.raises(ValueError, match="invalid literal for int"):  # what aiortc alone says about it
        SessionDescription.parse(sdp.replace("m=audio abc", "m=audio 9").replace("111", "1x1"))


@pytest.mark.parametrize("seed", range(6))
def test_mutated_real_offers_never_answer_in_python_words(seed: int) -> None:
    """Random damage to real offers (digits to letters, fields dropped, lines cut): every
    rejection is an OfferError in words; none escapes as another exception."""
    rng = random.Random(seed)
    name = NAMES[seed % len(NAMES)]
    lines = golden_offer(name).splitlines()
    for _ in range(150):
        damaged = list(lines)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(1, len(damaged))
            line = damaged[i]
            how = rng.randrange(4)
            if how == 0 and line:
                j = rng.randrange(len(line))
                damaged[i] = line[:j] + rng.choice("x: /=") + line[j + 1:]
            elif how == 1:
                parts = line.split(" ")
                if len(parts) > 1:
                    del parts[rng.randrange(len(parts))]
                damaged[i] = " ".join(parts)
            elif how == 2:
                damaged[i] = line[: rng.randrange(len(line) + 1)]
            else:
                damaged[i] = line.replace(":", "", 1)
        sdp = "\r\n".join(damaged) + "\r\n"
        try:
            parse_offer(sdp)
        except OfferError as exc:
            assert not PYTHON_WORDS.search(str(exc)), (str(exc), sdp)


def test_rejection_reasons_keep_aiortc_words_and_drop_pythons() -> None:
    assert rejection_reason(ValueError("ICE username fragment or password is missing")) == \
        "ICE username fragment or password is missing"
    assert rejection_reason(ValueError("invalid literal for int() with base 10: 'x'")) == INCONSISTENT
    assert rejection_reason(KeyError("mid")) == INCONSISTENT
    assert rejection_reason(AssertionError()) == INCONSISTENT
