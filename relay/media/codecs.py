"""Which audio codec a call uses, decided from the device's offer (sans-I/O).

The device's order of preference in its offer decides, within what relay and the
assistant allow:

- Opus -> uplink decoded to PCM16 at 24 kHz, downlink encoded from PCM16 24 kHz;
  upstream audio format ``pcm16``.
- PCMU / PCMA, when the device lists one before Opus (or offers no Opus) and the
  assistant allows G.711 -> the payload bytes go upstream and back untouched
  (upstream format ``g711_ulaw`` / ``g711_alaw``): zero transcoding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aiortc import RTCRtpCodecCapability, RTCRtpSender
from aiortc.sdp import SessionDescription

from relay.media.sdp_check import SdpSyntaxError, check_sdp


class OfferError(ValueError):
    """The offer cannot be used; ``code`` is the API error code."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class AudioCodec:
    name: str  # "opus" | "PCMU" | "PCMA" (SDP encoding name)
    upstream_format: str  # "pcm16" | "g711_ulaw" | "g711_alaw"
    clock_rate_hz: int  # RTP clock
    frame_bytes: int  # upstream-format bytes per 20 ms frame

    @property
    def is_g711(self) -> bool:
        return self.name != "opus"


PCM16_RATE_HZ = 24000
OPUS = AudioCodec("opus", "pcm16", 48000, PCM16_RATE_HZ * 2 // 50)
PCMU = AudioCodec("PCMU", "g711_ulaw", 8000, 160)
PCMA = AudioCodec("PCMA", "g711_alaw", 8000, 160)
_BY_NAME = {"opus": OPUS, "pcmu": PCMU, "pcma": PCMA}


_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_MID_RE = re.compile(r"^[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]{1,32}$")  # an RFC 8866 token, as browsers send


def _check_bundle(desc: SessionDescription) -> None:
    """Every m-line's mid is a distinct token, and a BUNDLE group names only those mids (aiortc's
    answer fails on anything else)."""
    mids = [m.rtp.muxId for m in desc.media if m.rtp.muxId]
    if any(not _MID_RE.match(mid) for mid in mids) or (desc.group and len(mids) != len(desc.media)):
        raise OfferError("malformed SDP offer: every m-line needs an a=mid token", "invalid_sdp")
    if len(set(mids)) != len(mids):
        raise OfferError("malformed SDP offer: two m-lines share one a=mid", "invalid_sdp")
    for group in desc.group:
        unknown = [g for g in group.items if g not in mids]
        if unknown or len(set(group.items)) != len(group.items):
            raise OfferError(f"malformed SDP offer: a=group:{group.semantic} names "
                             f"{'unknown' if unknown else 'repeated'} mids", "invalid_sdp")


def parse_offer(sdp: str) -> SessionDescription:
    """Parse an SDP offer; raises ``OfferError`` with a clear message for unusable input."""
    if not sdp.strip():
        raise OfferError("empty SDP offer", "invalid_sdp")
    if not sdp.lstrip().startswith("v=0"):
        raise OfferError("malformed SDP offer: it must start with 'v=0'", "invalid_sdp")
    bad = _CONTROL_RE.search(sdp)
    if bad:  # SDP is text lines (RFC 8866): a NUL or other control character is never valid
        raise OfferError(f"malformed SDP offer: control character {bad.group()!r} at offset {bad.start()}",
                         "invalid_sdp")
    try:
        check_sdp(sdp)  # the line and the field that are wrong, in words (relay.media.sdp_check)
    except SdpSyntaxError as exc:
        raise OfferError(f"malformed SDP offer: {exc}", "invalid_sdp") from None
    try:
        desc = SessionDescription.parse(sdp)
    except Exception:  # aiortc's parser raises anything (even AssertionError) on hostile input
        # whatever check_sdp did not foresee: never Python's own words ("invalid literal for int()")
        raise OfferError("malformed SDP offer: it could not be parsed", "invalid_sdp") from None
    audio = [m for m in desc.media if m.kind == "audio"]
    if not audio:
        raise OfferError("the SDP offer has no audio m-line", "no_audio")
    if len(audio) > 1:
        raise OfferError("the SDP offer has more than one audio m-line", "invalid_sdp")
    if audio[0].direction is None:  # RFC 8866 means sendrecv, but aiortc's answer fails without one (a 500)
        raise OfferError("the SDP offer's audio m-line has no direction (a=sendrecv)", "invalid_sdp")
    if any(m.kind == "video" for m in desc.media):
        raise OfferError("video is not supported: offer audio (and a data channel) only", "invalid_sdp")
    _check_bundle(desc)
    for m in desc.media:
        if m.dtls is None or not m.dtls.fingerprints:
            raise OfferError("the SDP offer has no DTLS fingerprint", "invalid_sdp")
        if not m.ice.usernameFragment or not m.ice.password:
            raise OfferError("the SDP offer has no ICE credentials (ice-ufrag/ice-pwd)", "invalid_sdp")
    return desc


def choose_audio_codec(desc: SessionDescription, *, allow_g711: bool) -> AudioCodec:
    """The first codec of the device's audio m-line that relay can use (G.711 only if allowed)."""
    audio = next(m for m in desc.media if m.kind == "audio")
    by_pt = {c.payloadType: c for c in audio.rtp.codecs}
    # the m-line's format list carries the device's preference (rtpmap lines may come in any order)
    ordered = [by_pt[pt] for pt in audio.fmt if pt in by_pt]
    for codec in ordered:
        choice = _BY_NAME.get(codec.name.lower())
        if choice is None or (choice.is_g711 and not allow_g711):
            continue
        if choice is OPUS and codec.clockRate != 48000:
            continue
        if choice.is_g711 and codec.clockRate != 8000:
            continue
        return choice
    offered = ", ".join(sorted({c.name for c in audio.rtp.codecs})) or "none"
    usable = "opus, PCMU, PCMA" if allow_g711 else "opus"
    raise OfferError(f"no usable audio codec in the offer (offered: {offered}; usable: {usable})", "unsupported_codec")


def opus_max_playback_hz(desc: SessionDescription) -> int | None:
    """The device's Opus ``maxplaybackrate`` (e.g. 16000 on an ESP32), if it states one."""
    audio = next((m for m in desc.media if m.kind == "audio"), None)
    for codec in audio.rtp.codecs if audio else ():
        if codec.name.lower() == "opus":
            value = codec.parameters.get("maxplaybackrate")
            if isinstance(value, int) and 8000 <= value <= 48000:
                return value
    return None


def opus_wants_fec(desc: SessionDescription) -> bool:
    """The device asks for in-band FEC in what relay sends (its offer's Opus ``useinbandfec=1``)."""
    audio = next((m for m in desc.media if m.kind == "audio"), None)
    for codec in audio.rtp.codecs if audio else ():
        if codec.name.lower() == "opus" and codec.parameters.get("useinbandfec") == 1:
            return True
    return False


# What relay wants to receive (RFC 7587 parameters of the answer): in-band FEC (the uplink decodes it
# when a packet is lost), mono, and no more than relay uses -- it decodes at 24 kHz, voice at <= 32 kbps.
OPUS_ANSWER_FMTP = "minptime=10;useinbandfec=1;stereo=0;sprop-stereo=0;maxplaybackrate=24000;maxaveragebitrate=32000"
OPUS_PTIME_MS = 20
_OPUS_RTPMAP = re.compile(r"^a=rtpmap:(\d+) opus/48000(?:/2)?(\r?\n)", re.I | re.M)


def opus_answer_fmtp(answer_sdp: str) -> str:
    """``answer_sdp`` with relay's Opus ``a=fmtp`` (``OPUS_ANSWER_FMTP``) and ``a=ptime`` (aiortc writes
    neither): after the Opus rtpmap line, unless the answer already has an fmtp for that payload type."""
    match = _OPUS_RTPMAP.search(answer_sdp)
    if match is None or f"a=fmtp:{match.group(1)} " in answer_sdp:
        return answer_sdp
    pt, eol = match.group(1), match.group(2)
    lines = f"a=fmtp:{pt} {OPUS_ANSWER_FMTP}{eol}"
    if "a=ptime:" not in answer_sdp:
        lines += f"a=ptime:{OPUS_PTIME_MS}{eol}"
    return answer_sdp[:match.end()] + lines + answer_sdp[match.end():]


def codec_preferences(codec: AudioCodec) -> list[RTCRtpCodecCapability]:
    """The aiortc capability list that pins the transceiver to ``codec``."""
    caps = RTCRtpSender.getCapabilities("audio").codecs
    return [c for c in caps if c.mimeType.lower() == f"audio/{codec.name.lower()}"]
