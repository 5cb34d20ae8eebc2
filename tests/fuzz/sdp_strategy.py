"""Hypothesis strategy of SDP offers: real devices' offers (tests/media/offers) with mutations.

Mutations work on lines and on tokens inside lines, so most offers stay close to valid and
reach deep into relay's offer handling (parsing, codec choice, aiortc's answer): a line
dropped, repeated, moved or truncated; a token replaced by a hostile value (control
characters, huge numbers, unknown mids, empty values); a random attribute added.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import strategies as st

OFFERS_DIR = Path(__file__).resolve().parents[1] / "media" / "offers"
GOLDEN = {p.stem: p.read_text() for p in sorted(OFFERS_DIR.glob("*.sdp"))}

HOSTILE_TOKENS = ["", "0", "-1", "99999999999999999999", "nope", "\x00", "a\x01b", "\x7f", " ", "::", "1e300",
                  "UDP/TLS/RTP/SAVPF", "webrtc-datachannel", "opus/48000/2", "sha-256", "IN IP6 ::1", "%s%n", "é"]
EXTRA_LINES = ["a=group:BUNDLE nope nope2", "a=group:BUNDLE 0 0", "a=mid:\x00", "a=mid:", "m=video 9 UDP/TLS/RTP/SAVPF 96",
               "m=audio 9 UDP/TLS/RTP/SAVPF 0", "a=rtpmap:111 opus/0/2", "a=fmtp:111 maxplaybackrate=1",
               "a=max-message-size:-1", "a=sctp-port:70000", "a=setup:bogus", "a=fingerprint:sha-256 zz",
               "a=ice-ufrag:", "a=candidate:1 1 udp 1 127.0.0.1 1 typ host", "c=IN IP4 999.1.1.1", "b=AS:-5",
               "a=ssrc:1 cname:\x01", "a=extmap:999999 urn:x", "x=unknown"]

KEY_PREFIXES = ("m=", "a=mid", "a=group", "a=sendrecv", "a=recvonly", "a=sendonly", "a=inactive", "a=ice-",
                "a=fingerprint", "a=setup", "a=rtpmap", "a=fmtp", "a=sctp-port", "a=max-message-size", "c=")


@st.composite
def mutated_offers(draw: st.DrawFn) -> str:
    lines = GOLDEN[draw(st.sampled_from(sorted(GOLDEN)))].splitlines()
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["drop", "repeat", "move", "token", "insert", "truncate"]))
        if not lines:
            break
        # half the time a line relay or aiortc decides on (m=, mid, group, direction, ICE, DTLS, codecs)
        key_lines = [n for n, line in enumerate(lines) if line.startswith(KEY_PREFIXES)]
        i = draw(st.integers(0, len(lines) - 1) | (st.sampled_from(key_lines) if key_lines else st.nothing()))
        if op == "drop":
            del lines[i]
        elif op == "repeat":
            lines.insert(i, lines[i])
        elif op == "move":
            lines.insert(draw(st.integers(0, len(lines) - 1)), lines.pop(i))
        elif op == "token":
            tokens = lines[i].replace(":", " : ", 1).split(" ")
            j = draw(st.integers(0, len(tokens) - 1))
            tokens[j] = draw(st.sampled_from(HOSTILE_TOKENS) | st.text(max_size=8))
            lines[i] = " ".join(tokens).replace(" : ", ":", 1)
        elif op == "insert":
            lines.insert(i, draw(st.sampled_from(EXTRA_LINES)))
        else:
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
    sep = draw(st.sampled_from(["\r\n", "\n"]))
    return sep.join(lines) + sep
