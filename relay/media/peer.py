"""The aiortc peer wrapper: one device's WebRTC connection, nothing else.

``Peer.answer(offer)`` builds the answer for a complete (non-trickle) offer:
a transceiver pinned to the negotiated codec, the uplink sink plugged into the
receiver (no decoder thread), the pre-encoded downlink track, host candidates
from the ICE allowlist, no STUN.

Data channels: any label (``messages``, ``oai-events``, ``esp_channel``, ...),
opened by the device at any time, also after the audio started. Events for the
device wait in a bounded queue until a channel is open; the most recently opened
channel is the one events go to; messages from every channel reach
``on_message``. A channel whose send buffer is over ``dc_max_buffered_bytes``
(a device not reading) loses events instead of growing memory.

The owner (``relay.media.call.Call``) learns of the end through ``on_closed(reason)``:
``device_closed`` (peer closed), ``ice_failed``, ``dtls_failed`` (logged with the TLS alert,
counted in ``MediaMetrics.dtls_failures``), ``sctp_failed`` (the association closed before any
data channel opened), ``datachannel_closed``. relay's first DTLS flight is resent early when
unanswered (``relay.media.handshake``). A data-channel message over ``dc_max_message_bytes``
(the answer's ``a=max-message-size``) is refused while SCTP reassembles it
(``relay.media.compat.sctp_limit``): ``on_message_refused(bytes_so_far)``, and the message never
reaches ``on_message``. ``close()`` is idempotent and frees every aiortc resource.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.rtcdatachannel import RTCDataChannel

from relay.call.metrics import MediaMetrics, bump
from relay.media import downlink, dtls, handshake, ice, uplink
from relay.media.codecs import AudioCodec, OfferError, codec_preferences, opus_answer_fmtp
from relay.media.compat import dtls as compat_dtls
from relay.media.compat import sctp_limit
from relay.media.downlink import PacketTrack
from relay.media.sdp_check import rejection_reason

log = logging.getLogger("relay.media")


class Peer:
    def __init__(
        self,
        *,
        codec: AudioCodec,
        track: PacketTrack,
        sink: uplink.UplinkSink,
        metrics: MediaMetrics,
        on_message: Callable[[str | bytes], None],
        on_closed: Callable[[str], None],
        on_connected: Callable[[], None] = lambda: None,
        on_first_channel: Callable[[str], None] = lambda label: None,
        dc_queue_max: int = 256,
        dc_max_buffered_bytes: int = 1 << 20,
        dc_max_message_bytes: int = 256 * 1024,
        on_message_refused: Callable[[int], None] = lambda size: None,
        public_ip: str = "",
        port_range: tuple[int, int] | None = None,
        mux: Any = None,
        log_extra: dict[str, str] | None = None,
    ) -> None:
        self.codec = codec
        self.track = track
        self.sink = sink
        self._metrics = metrics
        self._on_message = on_message
        self._on_closed = on_closed
        self._on_connected = on_connected
        self._on_first_channel = on_first_channel
        self._channel_seen = False
        self._pending: deque[str] = deque(maxlen=dc_queue_max)
        self._dc_max_buffered = dc_max_buffered_bytes
        self._dc_max_message = dc_max_message_bytes
        self._on_message_refused = on_message_refused
        self._channels: list[RTCDataChannel] = []
        self._log_extra = log_extra or {}
        self._public_ip = public_ip
        self._port_range = port_range
        self._mux = mux  # relay.media.mux.IceMux: the worker's one ICE port; None: a port per call
        self.pc: RTCPeerConnection | None = None
        self._first_flight: handshake.FirstFlight | None = None
        self._channel_opened = False
        self.closed = False
        self.connected = False

    # -- signalling --------------------------------------------------------
    async def answer(self, offer_sdp: str) -> str:
        """The answer SDP for ``offer_sdp``; raises ``OfferError`` (the peer is then closed)."""
        # the worker's shared DTLS certificate instead of a new key + certificate per call (media/dtls.py)
        pc = self.pc = dtls.peer_connection(ice.rtc_configuration(), dtls.current())
        pc.on("connectionstatechange", self._on_state)
        pc.on("datachannel", self._on_datachannel)
        try:
            transceiver = pc.addTransceiver(self.track, direction="sendrecv")
            transceiver.setCodecPreferences(codec_preferences(self.codec))
            uplink.install(transceiver.receiver, self.sink)
            downlink.install_sender(transceiver.sender)
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            except (ValueError, KeyError, IndexError, TypeError, AttributeError, AssertionError) as exc:
                raise OfferError(f"the SDP offer was rejected: {rejection_reason(exc)}", "invalid_sdp") from None
            except Exception as exc:  # aiortc's InvalidStateError/OperationError: a bad offer, not our fault
                if type(exc).__module__.startswith("aiortc"):
                    raise OfferError(f"the SDP offer was rejected: {rejection_reason(exc)}", "invalid_sdp") from None
                raise
            if pc.sctp is not None:  # the limit checked while reassembling = the answer's a=max-message-size
                sctp_limit.MessageSizeLimit.install(pc.sctp, self._dc_max_message, self._on_message_refused,
                                                    self._log_extra)
            ice.install_gatherer(pc, self._port_range, self._mux)  # the worker's port, or bound without a resolver hop
            answer = await pc.createAnswer()
            with ice.gathering():  # relay's host-address allowlist, for this connection only
                await pc.setLocalDescription(answer)
            local = pc.localDescription  # a property that re-serialises the SDP: read it once
            dtls_transport = transceiver.receiver.transport  # BUNDLE: the one DTLS transport of the call
            compat_dtls.send_whole_records(dtls_transport)  # never a flight cut inside a record
            self._first_flight = handshake.FirstFlight(dtls_transport)
            if pc.sctp is not None:
                handshake.watch_sctp(pc.sctp, dtls_transport, self._on_sctp_failed, lambda: self._channel_opened)
            if local is not None and " typ host" not in local.sdp:
                raise ice.NoFreePort("no ICE candidate could be gathered (no free UDP port?)")
        except BaseException:
            await self.close()
            raise
        if local is None:
            await self.close()
            raise OfferError("could not build an SDP answer", "invalid_sdp")
        answer_sdp = local.sdp if self.codec.is_g711 else opus_answer_fmtp(local.sdp)
        return ice.advertise_public_ip(answer_sdp, self._public_ip) if self._public_ip else answer_sdp

    # -- data channel ------------------------------------------------------
    def send_event(self, text: str) -> None:
        """Send a JSON text event to the device, or queue it until a channel opens."""
        if self.closed:
            return
        channel = self._channels[-1] if self._channels else None
        if channel is None or channel.readyState != "open":
            if len(self._pending) == self._pending.maxlen:
                self._metrics.dc_events_dropped += 1
            self._pending.append(text)
            return
        if channel.bufferedAmount > self._dc_max_buffered:
            self._metrics.dc_events_dropped += 1
            return
        self._send(channel, text)

    def _send(self, channel: RTCDataChannel, text: str) -> None:
        try:
            channel.send(text)
        except ValueError:
            # larger than the device's SCTP max-message-size (an ESP32 takes 16 KiB): drop it, say so
            self._metrics.dc_events_dropped += 1
            log.warning("event of %d bytes exceeds the device's message size limit; dropped", len(text),
                        extra=self._log_extra)
            notice = ('{"type":"error","error":{"type":"server_error","code":"event_too_large",'
                      '"message":"An event was larger than this device accepts and was dropped."}}')
            if len(text) > len(notice):
                self._send(channel, notice)
        except ConnectionError:
            self._metrics.dc_events_dropped += 1  # the channel is closing; the close handler ends the call

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        log.info("data channel %r opened by the device", channel.label, extra=self._log_extra)
        self._channels.append(channel)
        self._channel_opened = True
        if not self._channel_seen:  # its label is the first hint of the device's dialect
            self._channel_seen = True
            self._on_first_channel(channel.label)

        @channel.on("message")
        def on_message(message: str | bytes) -> None:
            self._on_message(message)

        @channel.on("close")
        def on_close() -> None:
            if channel in self._channels:
                self._channels.remove(channel)
            if not self._channels and not self.closed:
                self._on_closed("datachannel_closed")

        while self._pending and channel.readyState == "open":
            self._send(channel, self._pending.popleft())

    def rewrite_pending(self, rewrite: Callable[[str], list[str]]) -> None:
        """Replace each event still queued for a channel by ``rewrite(event)`` (e.g. another dialect)."""
        self._pending = deque((out for text in self._pending for out in rewrite(text)), maxlen=self._pending.maxlen)

    async def flush(self, timeout_s: float = 0.5, *, await_channel_s: float = 0.0) -> None:
        """Wait (bounded) until queued data-channel events have left.

        With ``await_channel_s`` and events still queued because the device has not opened a
        channel yet (the call ends before the device finished connecting, e.g. the upstream
        refused), wait up to that long for the channel so the device learns why.
        """
        loop = asyncio.get_running_loop()
        if self._pending and not self._channels and not self.closed and await_channel_s > 0:
            pc = self.pc
            if pc is not None and pc.connectionState not in ("failed", "closed"):
                deadline = loop.time() + await_channel_s
                while not self._channels and not self.closed and loop.time() < deadline:  # noqa: ASYNC110 -- polling state that has no event
                    await asyncio.sleep(0.02)
        deadline = loop.time() + timeout_s
        while not self.closed and loop.time() < deadline:
            open_channels = [c for c in self._channels if c.readyState == "open"]
            if not open_channels or all(c.bufferedAmount == 0 for c in open_channels):
                return
            await asyncio.sleep(0.01)

    # -- connection state --------------------------------------------------
    def _on_state(self) -> None:
        pc = self.pc
        if pc is None or self.closed:
            return
        state = pc.connectionState
        log.debug("peer connection state %s", state, extra=self._log_extra)
        if state == "connected" and not self.connected:
            self.connected = True
            self._on_connected()
        elif state == "failed":
            transceivers = pc.getTransceivers()
            dtls_transport = transceivers[0].receiver.transport if transceivers else None
            reason, detail = handshake.classify_failure(dtls_transport)
            if reason == "dtls_failed":
                bump(self._metrics.dtls_failures, detail or "unknown")
                refused = handshake.refused_key_of(dtls_transport) if dtls_transport is not None else None
                log.warning("DTLS handshake with the device failed: %s%s", detail,
                            f" ({refused})" if refused else "", extra=self._log_extra)
            else:
                log.info("ICE with the device failed", extra=self._log_extra)
            self._on_closed(reason)
        elif state == "closed":
            self._on_closed("device_closed")

    def connect_timeout_reason(self) -> str:
        """Why a device that did not connect in time did not: ``dtls_timeout`` if ICE is up, else ``ice_timeout``."""
        pc = self.pc
        transceivers = pc.getTransceivers() if pc is not None else []
        if transceivers:
            dtls_transport = transceivers[0].receiver.transport
            if dtls_transport.transport.state in ("connected", "completed") and dtls_transport.state != "connected":
                return "dtls_timeout"
        return "ice_timeout"

    def _on_sctp_failed(self) -> None:
        if not self.closed:
            log.warning("SCTP association with the device closed before any data channel opened",
                        extra=self._log_extra)
            self._on_closed("sctp_failed")

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._pending.clear()
        if self._first_flight is not None:
            self._metrics.dtls_first_flight_resends += self._first_flight.resends
            self._first_flight.stop()
            self._first_flight = None
        self.track.stop()
        self.sink.close()
        pc, self.pc = self.pc, None
        self._channels.clear()
        if pc is not None:
            pc.remove_all_listeners()
            await pc.close()
