"""The compatibility room of the WebRTC edge: every aiortc/aioice internal relay relies on, in one table.

relay reaches past aiortc's and aioice's public API where it has no door. Outside this package
only the direct RTP paths (``rtp_in``, ``rtp_out``, ``uplink``, ``mux``: the per-packet hot path,
kept inline) touch private names; everything else goes through a module here, one per family:

=====================  ==========================================================  ==============
module                 what it replaces or reads                                   scope
=====================  ==========================================================  ==============
``compat.ice``         ``aioice.ice.get_host_addresses`` (``Connection.gather_     process-wide,
                       candidates`` calls it, with no reference to the             once: see below
                       connection), by a dispatcher: the addresses of the
                       gathering under way (a contextvar: relay's peers under the
                       media plane's allowlist, the device SDK under its own
                       list), else an explicit process default (tests and tools
                       only), else the function it replaced (aioice's own)
``compat.ice``         ``Connection.get_component_candidates`` of relay's own      per instance
                       connections (sockets bound by relay, or the worker's one
                       ICE port); a host candidate added as aioice adds one
``compat.dtls``        the certificate of a new ``RTCPeerConnection``: aiortc's    per instance
                       own ``__init__`` code run with its global ``RTCCertificate``
                       rebound (aiortc's module and class untouched)
``compat.dtls``        ``RTCCertificate._create_ssl_context`` in relay's           per instance
                       certificate subclass (one context per SRTP profile list,
                       suites and alert recorder chosen by ``relay.media.dtls``);
                       reads of the DTLS transport (role, state, OpenSSL
                       connection, receive counter for ``relay.media.liveness``)
``compat.handshake``   ``RTCIceTransport._send`` (relay's first DTLS flight        per instance
                       captured and resent early) and ``RTCSctpTransport.
                       _set_state`` (an association that closes says so)
``compat.sctp_limit``  ``RTCSctpTransport._receive_data_chunk`` and                per instance
                       ``getCapabilities``: the data-channel size limit enforced
                       while SCTP reassembles
``compat.sdk``         ``RTCRtpReceiver._handle_rtp_packet`` (the device SDK's     per instance
                       RTP tap) and ``RTCPeerConnection.__createSctpTransport``
                       (a late data channel)
=====================  ==========================================================  ==============

Per instance wherever aiortc/aioice keep the thing on an object relay owns (its connection,
transport, receiver, certificate): only relay's objects change, so other aiortc users in the
process, before or after relay's start-up, see aiortc as released. The one process-wide
replacement is ``aioice.ice.get_host_addresses``: aioice looks that module
function up at call time and passes it nothing that says which connection gathers, so no
per-instance door exists short of copying ``gather_candidates``. It is installed once
(``install()``; idempotent), keeps the function it replaced, and an ICE agent gathering outside
relay's and the SDK's scopes (with no process default set) gets that function's answer: other
aiortc users in the process gather exactly as without relay.

Every private name relay's code touches, and every aiortc/aioice function or method it replaces,
is a row of ``TABLE``: the name as written in relay's code (double-underscore attributes in their
mangled form), where aiortc/aioice keeps it, and which relay module uses it for what.
``tests/media/test_compat.py`` scans relay/ and fails when a module touches a private
aiortc/aioice name that is not here, or touches one outside this package and the hot-path modules.

``install()`` runs once per process at start-up (``relay serve``, ``create_app``): ``check()``
finds every row in the installed aiortc/aioice (a method or module name by lookup; an instance
attribute in the source of the class that assigns it, so no object is built) and raises
``CompatError``, one line naming the missing attribute and the versions relay supports, instead of
a failure on every call; then the process-wide hook goes in. pyproject.toml pins the supported
minor versions (``SUPPORTED``); an installed version outside them that still has every name only
logs a warning.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import logging
from dataclasses import dataclass
from importlib import metadata

from relay._fast import srtp
from relay.media.compat import dtls, ice

log = logging.getLogger("relay.media")

SUPPORTED = {"aiortc": "1.16", "aioice": "0.13"}  # minor versions; keep in step with pyproject.toml

ATTR = "attr"  # an instance attribute: assigned in the owner class's code (or a class attribute)
MEMBER = "member"  # a method or class attribute of the owner class (hasattr)
MODULE = "module"  # a module-level name of the owner module


@dataclass(frozen=True)
class Private:
    name: str  # as relay's code spells it (mangled for ``__x`` attributes)
    owner: str  # dotted path of the class (or module) that has it
    kind: str  # ATTR, MEMBER or MODULE
    used_in: str  # relay module(s)
    why: str

    @property
    def library(self) -> str:
        return self.owner.split(".", 1)[0]

    def describe(self) -> str:
        return f"{self.owner.rsplit('.', 1)[-1]}.{self.name} ({self.why}; {self.used_in})"


_RECV = "aiortc.rtcrtpreceiver.RTCRtpReceiver"
_SEND = "aiortc.rtcrtpsender.RTCRtpSender"
_DTLS = "aiortc.rtcdtlstransport.RTCDtlsTransport"
_CERT = "aiortc.rtcdtlstransport.RTCCertificate"
_PC = "aiortc.rtcpeerconnection.RTCPeerConnection"
_CONN = "aioice.ice.Connection"
_SCTP = "aiortc.rtcsctptransport.RTCSctpTransport"
_INBOUND = "aiortc.rtcsctptransport.InboundStream"

TABLE: tuple[Private, ...] = (
    # RTCRtpReceiver: the uplink sink in place of the jitter buffer, receive() without the decoder thread
    Private("_RTCRtpReceiver__jitter_buffer", _RECV, ATTR, "media.uplink", "replaced by the UplinkSink"),
    Private("_RTCRtpReceiver__started", _RECV, ATTR, "media.uplink", "set by receive(), which is replaced"),
    Private("_RTCRtpReceiver__codecs", _RECV, ATTR, "media.uplink, media.rtp_in", "payload type -> codec, filled by receive()"),
    Private("_RTCRtpReceiver__rtx_ssrc", _RECV, ATTR, "media.uplink", "RTX SSRC -> media SSRC, filled by receive()"),
    Private("_RTCRtpReceiver__transport", _RECV, ATTR, "media.uplink", "its RTCDtlsTransport, which receive() registers with"),
    Private("_RTCRtpReceiver__rtcp_task", _RECV, ATTR, "media.uplink", "the RTCP task receive() starts and stop() cancels"),
    Private("_RTCRtpReceiver__decoder_thread", _RECV, ATTR, "media.uplink", "stop() joins it; the replaced receive() starts none"),
    Private("_RTCRtpReceiver__remote_streams", _RECV, ATTR, "media.rtp_in", "SSRC -> StreamStatistics for RTCP RRs and getStats"),
    Private("_RTCRtpReceiver__active_ssrc", _RECV, ATTR, "media.rtp_in", "SSRC -> last seen, for getSynchronizationSources"),
    Private("_enabled", _RECV, ATTR, "media.rtp_in", "False while the transceiver does not receive"),
    Private("_run_rtcp", _RECV, MEMBER, "media.uplink", "the RTCP coroutine the replaced receive() starts"),
    Private("receive", _RECV, MEMBER, "media.uplink", "replaced per receiver: aiortc 1.16's own minus the decoder thread"),
    Private("_handle_rtp_packet", _RECV, MEMBER, "media.compat.sdk", "replaced per receiver: the device SDK's RTP tap"),
    Private("_data", _RECV, ATTR, "media.uplink", "the depayloaded payload _handle_rtp_packet sets on an RtpPacket"),
    Private("_clockrate", "aiortc.rtcrtpreceiver.StreamStatistics", ATTR, "media.rtp_in",
            "its clock rate, when aiortc's own statistics become relay's StreamStats"),
    # RTCRtpSender: the direct send path in place of _run_rtp; the RTCP task reads the counters
    Private("_run_rtp", _SEND, MEMBER, "media.rtp_out", "replaced per sender by the direct send path"),
    Private("_RTCRtpSender__rtp_history", _SEND, ATTR, "media.rtp_out", "RTP history for NACK, replaced: never kept"),
    Private("_ssrc", _SEND, ATTR, "media.rtp_out", "the sender's SSRC"),
    Private("_RTCRtpSender__mid", _SEND, ATTR, "media.rtp_out", "the negotiated mid, set by send()"),
    Private("_RTCRtpSender__rtp_header_extensions_map", _SEND, ATTR, "media.rtp_out", "header extensions configured by send()"),
    Private("_RTCRtpSender__rtp_started", _SEND, ATTR, "media.rtp_out", "asyncio.Event stop() waits for"),
    Private("_RTCRtpSender__rtp_exited", _SEND, ATTR, "media.rtp_out", "asyncio.Event stop() waits for"),
    Private("_RTCRtpSender__packet_count", _SEND, ATTR, "media.rtp_out", "RTCP SR and getStats packetsSent"),
    Private("_RTCRtpSender__octet_count", _SEND, ATTR, "media.rtp_out", "RTCP SR and getStats bytesSent"),
    Private("_RTCRtpSender__rtp_timestamp", _SEND, ATTR, "media.rtp_out", "RTCP SR: RTP timestamp of the last packet"),
    Private("_RTCRtpSender__ntp_timestamp", _SEND, ATTR, "media.rtp_out", "RTCP SR: NTP time of the last packet"),
    # RTCDtlsTransport: SRTP sessions, state, routing and transport counters
    Private("_state", _DTLS, ATTR, "media.rtp_in, media.rtp_out, media.compat.dtls", "State enum; CONNECTED once DTLS is up"),
    Private("_rtp_router", _DTLS, ATTR, "media.rtp_in", "RtpRouter: receivers, ssrc_table, payload_type_table"),
    Private("_rx_srtp", _DTLS, ATTR, "media.rtp_in", "the inbound pylibsrtp.Session"),
    Private("_tx_srtp", _DTLS, ATTR, "media.rtp_out", "the outbound pylibsrtp.Session"),
    Private("_RTCDtlsTransport__rx_bytes", _DTLS, ATTR, "media.rtp_in", "transport stats counter"),
    Private("_RTCDtlsTransport__rx_packets", _DTLS, ATTR, "media.rtp_in, media.compat.dtls",
            "transport stats counter; the device's signs of life (RTP, RTCP, SCTP)"),
    Private("_RTCDtlsTransport__tx_bytes", _DTLS, ATTR, "media.rtp_out, media.compat.dtls", "transport stats counter"),
    Private("_RTCDtlsTransport__tx_packets", _DTLS, ATTR, "media.rtp_out, media.compat.dtls", "transport stats counter"),
    Private("_register_rtp_receiver", _DTLS, MEMBER, "media.uplink", "what receive() calls to get the receiver's RTP"),
    # ICE: aiortc's transports hold the aioice Connection
    Private("_connection", "aiortc.rtcicetransport.RTCIceTransport", ATTR, "media.rtp_in, media.rtp_out",
            "the aioice Connection"),
    Private("_connection", "aiortc.rtcicetransport.RTCIceGatherer", ATTR, "media.compat.ice", "the aioice Connection"),
    Private("_queue", _CONN, ATTR, "media.rtp_in", "asyncio.Queue of received datagrams for the DTLS task"),
    Private("_protocols", _CONN, ATTR, "media.rtp_in, media.compat.ice, media.mux",
            "its StunProtocols (one UDP socket each, or one per shared ICE port)"),
    Private("_local_username", _CONN, ATTR, "media.mux",
            "its ICE ufrag, re-drawn when taken on the worker's one ICE port (the routing key)"),
    Private("_nominated", _CONN, ATTR, "media.rtp_out", "component -> nominated CandidatePair (protocol, remote_addr)"),
    Private("local_candidate", _CONN, ATTR, "media.compat.ice, media.mux", "set on each StunProtocol as get_component_candidates does"),
    Private("get_component_candidates", _CONN, MEMBER, "media.compat.ice",
            "replaced per connection: sockets bound synchronously, or the worker's one ICE port"),
    Private("datagram_received", "aioice.ice.StunProtocol", MEMBER, "media.rtp_in",
            "replaced per socket: SRTP audio straight to the uplink sink"),
    Private("get_host_addresses", "aioice.ice", MODULE, "media.compat.ice",
            "replaced once per process by a dispatcher: the host addresses of the gathering under way"),
    # DTLS: one certificate per worker (media.dtls, through media.compat.dtls)
    Private("RTCCertificate", "aiortc.rtcpeerconnection", MODULE, "media.compat.dtls",
            "the global RTCPeerConnection.__init__ looks up; rebound in relay's copy of that function only"),
    Private("_RTCPeerConnection__certificates", _PC, ATTR, "media.compat.dtls",
            "checked to hold the worker's certificate"),
    Private("_key", _CERT, ATTR, "media.compat.dtls", "the private key of a generated certificate"),
    Private("_cert", _CERT, ATTR, "media.compat.dtls", "the X.509 certificate of a generated certificate"),
    Private("_create_ssl_context", _CERT, MEMBER, "media.compat.dtls",
            "overridden in relay's subclass: one cached OpenSSL context per profile list"),
    # the DTLS handshake (media.handshake): the TLS alert, the early first-flight resend, SCTP failures
    Private("_ssl", _DTLS, ATTR, "media.compat.dtls", "its OpenSSL Connection (the key of the recorded alert)"),
    Private("_role", _DTLS, ATTR, "media.compat.dtls", "'client' or 'server', set from the SDP before start()"),
    Private("_write_ssl", _DTLS, MEMBER, "media.compat.dtls",
            "replaced per instance: flights sent as datagrams of whole records (aiortc cuts at 1500 bytes)"),
    Private("_send", "aiortc.rtcicetransport.RTCIceTransport", ATTR, "media.compat.handshake, media.compat.dtls",
            "wrapped per instance to capture relay's first DTLS flight (ClientHello) and resend it early; "
            "what the whole-record writer sends with"),
    Private("_set_state", "aiortc.rtcsctptransport.RTCSctpTransport", MEMBER, "media.compat.handshake",
            "wrapped per instance: the association's state choke point (CLOSED emits no event)"),
    Private("_association_state", "aiortc.rtcsctptransport.RTCSctpTransport", ATTR, "media.compat.handshake",
            "State enum (ESTABLISHED / CLOSED)"),
    # data-channel size limit (media.compat.sctp_limit): refuse an oversized message while SCTP reassembles it
    Private("_receive_data_chunk", _SCTP, MEMBER, "media.compat.sctp_limit",
            "replaced per instance: the size check runs before a DATA chunk is buffered"),
    Private("getCapabilities", _SCTP, MEMBER, "media.compat.sctp_limit",
            "replaced per instance: the answer's a=max-message-size is the enforced limit"),
    Private("_mark_received", _SCTP, MEMBER, "media.compat.sctp_limit", "acknowledges a refused message's fragments (SACK)"),
    Private("_last_received_tsn", _SCTP, ATTR, "media.compat.sctp_limit", "duplicate detection; end of a refused message"),
    Private("_sack_misordered", _SCTP, ATTR, "media.compat.sctp_limit", "duplicate detection, as _mark_received does"),
    Private("_sack_needed", _SCTP, ATTR, "media.compat.sctp_limit", "set for a refused fragment, as _receive_data_chunk does"),
    Private("_get_inbound_stream", _SCTP, MEMBER, "media.compat.sctp_limit", "the stream whose reassembly is checked"),
    Private("_advertised_rwnd", _SCTP, ATTR, "media.compat.sctp_limit", "given back the bytes of dropped fragments"),
    Private("_receive", _SCTP, MEMBER, "media.compat.sctp_limit", "delivers messages that waited behind a refused one"),
    Private("reassembly", _INBOUND, ATTR, "media.compat.sctp_limit", "the buffered fragments of one stream (by TSN)"),
    Private("sequence_number", _INBOUND, ATTR, "media.compat.sctp_limit", "advanced past a refused ordered message"),
    Private("pop_messages", _INBOUND, MEMBER, "media.compat.sctp_limit", "delivers messages behind a refused ordered one"),
    # the device SDK
    Private("_RTCPeerConnection__createSctpTransport", _PC, MEMBER, "media.compat.sdk",
            "negotiates SCTP without a channel (a late data channel, as ESP32 devices do)"),
)

NAMES = frozenset(p.name for p in TABLE)


class CompatError(RuntimeError):
    """The installed aiortc/aioice lack a name relay relies on (one line)."""


def supported() -> str:
    return " with ".join(f"{lib} {minor}.x" for lib, minor in SUPPORTED.items())


def installed() -> dict[str, str]:
    out = {}
    for lib in SUPPORTED:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = "not installed"
    return out


def _resolve(dotted: str) -> tuple[object, type | None]:
    """(the module, the class or None) of ``owner``."""
    try:
        return importlib.import_module(dotted), None
    except ImportError:
        module_name, _, cls_name = dotted.rpartition(".")
        module = importlib.import_module(module_name)
        return module, getattr(module, cls_name)


@functools.cache
def _assigned(module_file: str) -> dict[str, frozenset[str]]:
    """Class name -> attribute names (mangled as Python stores them) assigned in that class's code."""
    with open(module_file, encoding="utf-8") as fh:
        tree = ast.parse(fh.read())
    out = {}
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        prefix = f"_{cls.name.lstrip('_')}"
        names = set()
        for node in ast.walk(cls):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                attr = node.attr
                names.add(prefix + attr if attr.startswith("__") and not attr.endswith("__") else attr)
        out[cls.name] = frozenset(names)
    return out


def _present(p: Private) -> bool:
    try:
        module, cls = _resolve(p.owner)
    except (ImportError, AttributeError):
        return False
    if p.kind == MODULE:
        return cls is None and hasattr(module, p.name)
    if cls is None:
        return False
    if hasattr(cls, p.name):
        return True
    if p.kind == ATTR:
        try:
            return p.name in _assigned(inspect.getfile(cls)).get(cls.__name__, frozenset())
        except (OSError, TypeError, SyntaxError):  # no source to read: cannot vouch for it
            return False
    return False


def missing(table: tuple[Private, ...] = TABLE) -> list[Private]:
    """The rows the installed aiortc/aioice do not have."""
    return [p for p in table if not _present(p)]


def check(table: tuple[Private, ...] = TABLE) -> None:
    """``CompatError`` (one line) unless the installed aiortc/aioice have every name of ``table``."""
    versions = installed()
    gone = missing(table)
    if gone:
        first = gone[0]
        more = f" (and {len(gone) - 1} more)" if len(gone) > 1 else ""
        have = ", ".join(f"{lib} {v}" for lib, v in versions.items())
        raise CompatError(f"{first.library} has no {first.describe()}{more}: relay supports {supported()} "
                          f"(installed: {have}); install the versions pyproject.toml pins")
    off = [f"{lib} {v}" for lib, v in versions.items() if not _within(v, SUPPORTED[lib])]
    if off:
        log.warning("%s: not the versions relay was checked against (%s); every private name it uses is present",
                    ", ".join(off), supported())


def _within(version: str, minor: str) -> bool:
    return version == minor or version.startswith(minor + ".")


_installed = False


def install() -> None:
    """Once per process, at start-up: ``check()``, then the process-wide hook (``compat.ice``) and the
    per-instance hooks' preparation. Idempotent: later calls do nothing. ``CompatError`` (one line)
    when the installed aiortc/aioice lack something."""
    global _installed
    if _installed:
        return
    check()
    try:
        dtls.prepare()
        srtp.check()  # the compiled SRTP paths reach pylibsrtp's libsrtp (relay._fast.srtp)
    except RuntimeError as exc:
        raise CompatError(f"{exc}: relay supports {supported()}; install the versions pyproject.toml pins") from None
    ice.install()
    _installed = True
