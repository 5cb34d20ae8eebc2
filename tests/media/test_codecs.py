"""Offer parsing and codec choice against golden offers of real devices."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.media.codecs import OPUS, PCMA, PCMU, OfferError, choose_audio_codec, parse_offer
from tests.media.conftest import golden_offer


@pytest.mark.parametrize("name", ["chrome", "chromium156_captured", "firefox", "safari", "esp32_opus"])
def test_opus_devices_negotiate_opus(name):
    desc = parse_offer(golden_offer(name))
    assert choose_audio_codec(desc, allow_g711=True) is OPUS


def test_esp32_pcma_negotiates_pcma_when_allowed():
    desc = parse_offer(golden_offer("esp32_pcma"))
    codec = choose_audio_codec(desc, allow_g711=True)
    assert codec is PCMA and codec.upstream_format == "g711_alaw" and codec.frame_bytes == 160


def test_pcma_only_offer_rejected_when_g711_not_allowed():
    desc = parse_offer(golden_offer("esp32_pcma"))
    with pytest.raises(OfferError) as info:
        choose_audio_codec(desc, allow_g711=False)
    assert info.value.code == "unsupported_codec" and "PCMA" in str(info.value)


def test_device_order_decides_between_g711_and_opus():
    sdp = golden_offer("chrome").replace("SAVPF 111 63 9 0 8 13 110 126", "SAVPF 0 111 63 9 8 13 110 126")
    assert choose_audio_codec(parse_offer(sdp), allow_g711=True) is PCMU
    assert choose_audio_codec(parse_offer(sdp), allow_g711=False) is OPUS


@pytest.mark.parametrize("sdp, code", [
    ("", "invalid_sdp"),
    ("   \n", "invalid_sdp"),
    ("hello world", "invalid_sdp"),
    ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", "no_audio"),
    ("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF\r\n", "invalid_sdp"),
])
def test_bad_offers_are_clear_errors(sdp, code):
    with pytest.raises(OfferError) as info:
        parse_offer(sdp)
    assert info.value.code == code


def test_offer_without_dtls_fingerprint_rejected():
    sdp = "\n".join(line for line in golden_offer("chrome").splitlines() if not line.startswith("a=fingerprint"))
    with pytest.raises(OfferError, match="fingerprint"):
        parse_offer(sdp + "\n")


def test_video_offer_rejected():
    sdp = golden_offer("chrome") + "m=video 9 UDP/TLS/RTP/SAVPF 96\nc=IN IP4 0.0.0.0\na=mid:2\na=rtpmap:96 VP8/90000\n"
    with pytest.raises(OfferError):
        parse_offer(sdp)


def test_offer_with_only_unknown_codecs():
    sdp = golden_offer("chrome").replace("SAVPF 111 63 9 0 8 13 110 126", "SAVPF 9 13")
    with pytest.raises(OfferError) as info:
        choose_audio_codec(parse_offer(sdp), allow_g711=True)
    assert info.value.code == "unsupported_codec"


@pytest.mark.parametrize("name,wants", [("chrome", True), ("chromium156_captured", True), ("firefox", True),
                                        ("esp32_opus", False)])
def test_in_band_fec_is_used_downlink_when_the_device_offers_it(name, wants):
    from relay.media.codecs import opus_wants_fec

    assert opus_wants_fec(parse_offer(golden_offer(name))) is wants


def test_the_answer_gets_relays_opus_fmtp_and_ptime_once():
    from relay.media.codecs import OPUS_ANSWER_FMTP, opus_answer_fmtp

    answer = ("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\n"
              "a=rtcp-fb:111 nack\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n")
    out = opus_answer_fmtp(answer)
    assert f"a=rtpmap:111 opus/48000/2\r\na=fmtp:111 {OPUS_ANSWER_FMTP}\r\na=ptime:20\r\na=rtcp-fb:111" in out
    assert opus_answer_fmtp(out) == out  # an fmtp already there is kept as is
    params = dict(p.split("=") for p in OPUS_ANSWER_FMTP.split(";"))
    assert params["useinbandfec"] == "1" and params["stereo"] == "0" and params["sprop-stereo"] == "0"
    # aiortc (as a device) parses it back
    from aiortc.sdp import SessionDescription

    codec = SessionDescription.parse(out).media[0].rtp.codecs[0]
    assert codec.parameters["useinbandfec"] == 1 and int(codec.parameters["maxaveragebitrate"]) == 32000
    pcmu = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=rtpmap:0 PCMU/8000\r\n"
    assert opus_answer_fmtp(pcmu) == pcmu
MALFORMED = sorted((Path(__file__).parent / "offers" / "malformed").glob("*.sdp"))


@pytest.mark.parametrize("path", MALFORMED, ids=[p.stem for p in MALFORMED])
def test_malformed_offer_corpus_is_refused_at_parsing(path):
    """Each offer of the corpus has one defect that made aiortc fail later (a 500) or is refused anyway."""
    with pytest.raises(OfferError) as info:
        parse_offer(path.read_bytes().decode())
    assert info.value.code == "invalid_sdp"


def test_mids_and_groups_that_aiortc_answers_stay_accepted():
    base = golden_offer("chrome")
    for sdp in (base.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 1"),  # a partial bundle
                base.replace("a=group:BUNDLE 0 1", "a=group:LS 0 1"),
                base.replace("a=group:BUNDLE 0 1\n", "").replace("a=mid:0\n", "").replace("a=mid:1\n", "")):
        assert sdp != base
        assert choose_audio_codec(parse_offer(sdp), allow_g711=True) is OPUS
