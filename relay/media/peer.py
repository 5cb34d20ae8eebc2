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
``device_closed`` (peer closed / failed), ``datachannel_closed``. ``close()`` is
idempotent and frees every aiortc resource.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.rtcdatachannel import RTCDataChannel

from relay.media import downlink, dtls, ice, uplink
from relay.media.codecs import AudioCodec, OfferError, codec_preferences
from relay.media.downlink import PacketTrack
from relay.media.metrics import MediaMetrics

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
        dc_queue_max: int = 256,
        dc_max_buffered_bytes: int = 1 << 20,
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
        self._pending: deque[str] = deque(maxlen=dc_queue_max)
        self._dc_max_buffered = dc_max_buffered_bytes
        self._channels: list[RTCDataChannel] = []
        self._log_extra = log_extra or {}
        self._public_ip = public_ip
        self._port_range = port_range
        self._mux = mux  # relay.media.mux.IceMux: the worker's one ICE port; None: a port per call
        self.pc: RTCPeerConnection | None = None
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
            except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
                raise OfferError(f"the SDP offer was rejected: {exc}", "invalid_sdp") from None
            except Exception as exc:  # aiortc's InvalidStateError/OperationError: a bad offer, not our fault
                if type(exc).__module__.startswith("aiortc"):
                    raise OfferError(f"the SDP offer was rejected: {exc}", "invalid_sdp") from None
                raise
            ice.install_gatherer(pc, self._port_range, self._mux)  # host candidates: the worker's port, or bound without a resolver hop
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
            local = pc.localDescription  # a property that re-serialises the SDP: read it once
            if local is not None and " typ host" not in local.sdp:
                raise ice.NoFreePort("no ICE candidate could be gathered (no free UDP port?)")
        except BaseException:
            await self.close()
            raise
        if local is None:
            await self.close()
            raise OfferError("could not build an SDP answer", "invalid_sdp")
        answer_sdp = local.sdp
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
        elif state in ("failed", "closed"):
            self._on_closed("ice_failed" if state == "failed" else "device_closed")

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._pending.clear()
        self.track.stop()
        self.sink.close()
        pc, self.pc = self.pc, None
        self._channels.clear()
        if pc is not None:
            pc.remove_all_listeners()
            await pc.close()
