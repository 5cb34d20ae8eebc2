"""Line-by-line syntax check of an SDP offer, before aiortc's parser sees it.

aiortc's ``SessionDescription.parse`` fails on malformed input with whatever Python
raises inside it (``invalid literal for int() with base 10: 'x'``, a bare
``AssertionError``, ``not enough values to unpack``). Devices deserve the line and the
field: :func:`check_sdp` walks the offer with the same expectations as that parser
and raises :class:`SdpSyntaxError` with messages such as
``invalid m= line 5: port must be a number``. Sans-I/O, no aiortc import.
"""

from __future__ import annotations

import re

SETUP_ROLES = frozenset({"actpass", "active", "passive"})
FORBIDDEN_PAYLOAD_TYPES = range(72, 77)  # aiortc.rtp.FORBIDDEN_PAYLOAD_TYPES (RTCP packet types)
FMTP_INT_PARAMETERS = frozenset({"apt", "max-fr", "max-fs", "maxplaybackrate", "minptime", "stereo",
                                 "useinbandfec"})  # aiortc.sdp.FMTP_INT_PARAMETERS
_LINE = re.compile(r"^[a-z]=")
_MEDIA = re.compile(r"^m=([^ ]+) ([^ ]+) ([^ ]+) (.+)$")
_CONNECTION = re.compile(r"^IN (IP4|IP6) ([^ ]+)$")


class SdpSyntaxError(ValueError):
    """A malformed SDP line; the message names the line number and what is wrong."""


def _int(text: str) -> bool:
    return text.isascii() and text.isdigit()


class _Checker:
    def __init__(self) -> None:
        self.line_no = 0
        self.kind = ""  # current media kind ("" in the session part)
        self.payload_types: set[int] = set()
        self.fmtp: list[tuple[int, str]] = []  # (line number, payload type) checked at the section's end

    def fail(self, what: str, problem: str, line_no: int | None = None) -> SdpSyntaxError:
        return SdpSyntaxError(f"invalid {what} line {line_no or self.line_no}: {problem}")

    def end_section(self) -> None:
        for line_no, pt in self.fmtp:
            if int(pt) not in self.payload_types:
                raise self.fail("a=fmtp", f"payload type {pt} has no a=rtpmap line in its m= section", line_no)
        self.payload_types, self.fmtp = set(), []

    def line(self, text: str) -> None:
        if not text:
            return
        if not _LINE.match(text):
            raise SdpSyntaxError(f"invalid line {self.line_no}: expected <letter>=<value>")
        key = text[0]
        if key == "v" and not _int(text[2:].strip()):
            raise self.fail("v=", "the version must be a number (v=0)")
        if key == "c":
            self.connection("c=", text[2:])
        elif key == "m":
            self.media(text)
        elif key == "a":
            name, colon, value = text[2:].partition(":")
            check = getattr(self, "attr_" + name.replace("-", "_"), None)
            if check is not None:
                if not colon:
                    raise self.fail(f"a={name}", f"a value is missing (a={name}:...)")
                check(value)

    def connection(self, what: str, value: str) -> None:
        if not _CONNECTION.match(value):
            raise self.fail(what, "expected 'IN IP4 <address>' or 'IN IP6 <address>'")

    def media(self, text: str) -> None:
        self.end_section()
        m = _MEDIA.match(text)
        if not m:
            raise self.fail("m=", "expected m=<media> <port> <protocol> <formats>")
        self.kind = m.group(1)
        if not _int(m.group(2)):
            raise self.fail("m=", "port must be a number")
        if not re.fullmatch(r"[A-Z/]+", m.group(3)):
            raise self.fail("m=", f"unknown protocol {m.group(3)[:40]!r}")
        if self.kind in ("audio", "video"):
            for fmt in m.group(4).split():
                if not _int(fmt):
                    raise self.fail("m=", f"payload type {fmt[:20]!r} must be a number")
                if int(fmt) > 255 or int(fmt) in FORBIDDEN_PAYLOAD_TYPES:
                    raise self.fail("m=", f"payload type {fmt} is not allowed")

    # -- attributes (a=<name>:<value>), as aiortc reads them ---------------------------
    def attr_fingerprint(self, value: str) -> None:
        if len(value.split()) != 2:
            raise self.fail("a=fingerprint", "expected a=fingerprint:<algorithm> <hex value>")

    def attr_setup(self, value: str) -> None:
        if value not in SETUP_ROLES:
            raise self.fail("a=setup", "expected actpass, active or passive")

    def attr_candidate(self, value: str) -> None:
        bits = value.split()
        if len(bits) < 8:
            raise self.fail("a=candidate", "expected <foundation> <component> <transport> <priority> <address> "
                                           "<port> typ <type>")
        for index, name in ((1, "component"), (3, "priority"), (5, "port")):
            if not _int(bits[index]):
                raise self.fail("a=candidate", f"{name} must be a number")
        for i in range(8, len(bits) - 1, 2):
            if bits[i] == "rport" and not _int(bits[i + 1]):
                raise self.fail("a=candidate", "rport must be a number")

    def attr_extmap(self, value: str) -> None:
        bits = value.split()
        if len(bits) != 2:
            raise self.fail("a=extmap", "expected a=extmap:<id>[/<direction>] <uri>")
        ext_id = bits[0].split("/")
        if len(ext_id) > 2 or not _int(ext_id[0]):
            raise self.fail("a=extmap", "the id must be a number")

    def attr_max_message_size(self, value: str) -> None:
        if not _int(value):
            raise self.fail("a=max-message-size", "must be a number")

    def attr_rtcp(self, value: str) -> None:
        port, _, rest = value.partition(" ")
        if not _int(port):
            raise self.fail("a=rtcp", "port must be a number")
        if rest:
            self.connection("a=rtcp", rest)

    def attr_rtpmap(self, value: str) -> None:
        pt, _, desc = value.partition(" ")
        bits = desc.split("/")
        if not _int(pt):
            raise self.fail("a=rtpmap", "payload type must be a number")
        if len(bits) < 2 or not bits[0]:
            raise self.fail("a=rtpmap", "expected a=rtpmap:<payload type> <codec>/<clock rate>[/<channels>]")
        if not _int(bits[1]):
            raise self.fail("a=rtpmap", "clock rate must be a number")
        if self.kind == "audio" and len(bits) > 2 and not _int(bits[2]):
            raise self.fail("a=rtpmap", "channels must be a number")
        self.payload_types.add(int(pt))

    def attr_fmtp(self, value: str) -> None:
        pt, sep, params = value.partition(" ")
        if not _int(pt) or not sep:
            raise self.fail("a=fmtp", "expected a=fmtp:<payload type> <parameters>")
        for param in params.split(";"):
            k, eq, v = param.partition("=")
            if eq and k in FMTP_INT_PARAMETERS and not _int(v.strip()):
                raise self.fail("a=fmtp", f"{k} must be a number")
        if self.kind in ("audio", "video"):
            self.fmtp.append((self.line_no, pt))

    def attr_sctpmap(self, value: str) -> None:
        number, sep, _ = value.partition(" ")
        if not _int(number) or not sep:
            raise self.fail("a=sctpmap", "expected a=sctpmap:<number> <description>")

    def attr_sctp_port(self, value: str) -> None:
        if not _int(value):
            raise self.fail("a=sctp-port", "must be a number")

    def attr_ssrc_group(self, value: str) -> None:
        if not all(_int(b) for b in value.split()[1:]):
            raise self.fail("a=ssrc-group", "SSRCs must be numbers")

    def attr_ssrc(self, value: str) -> None:
        ssrc, sep, desc = value.partition(" ")
        if not _int(ssrc):
            raise self.fail("a=ssrc", "the SSRC must be a number")
        if not sep or ":" not in desc:
            raise self.fail("a=ssrc", "expected a=ssrc:<ssrc> <attribute>:<value>")

    def attr_rtcp_fb(self, value: str) -> None:
        if len(value.split(" ", 2)) < 2:
            raise self.fail("a=rtcp-fb", "expected a=rtcp-fb:<payload type or *> <type>")


_PYTHON_WORDS = re.compile(r"invalid literal for|values to unpack|is not in list|could not convert|has no attribute|"
                           r"unsupported operand|index out of range|NoneType|object is not|unhashable|expected str")
INCONSISTENT = ("it is inconsistent (check its m= sections and their codecs, and the DTLS fingerprint, "
                "setup and ICE attributes)")


def rejection_reason(exc: BaseException) -> str:
    """Why the WebRTC stack refused an offer, in words a device developer can act on.

    aiortc's own messages ("ICE username fragment or password is missing") are kept;
    errors raised by Python itself inside it (KeyError, ``invalid literal for int()``...)
    are replaced, so relay never answers with its internals.
    """
    text = str(exc)
    if (isinstance(exc, (KeyError, IndexError, TypeError, AttributeError, AssertionError, StopIteration))
            or not text or _PYTHON_WORDS.search(text)):
        return INCONSISTENT
    return text[:200]


def check_sdp(sdp: str) -> None:
    """Raise :class:`SdpSyntaxError` at the first malformed line (lines numbered from 1)."""
    checker = _Checker()
    for checker.line_no, raw in enumerate(sdp.splitlines(), 1):
        checker.line(raw.rstrip("\r"))
    checker.end_section()
