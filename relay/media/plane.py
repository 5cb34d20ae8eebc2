"""The WebRTC edge's per-worker services: ``MediaPlane``, the call plane (``relay.call.plane``) plus
the media clock, the worker's ICE port (mux) or its slice of the port range, and the ICE/DTLS set-up.

``check_settings(settings)`` is the one check of the ICE/DTLS settings (a ``SettingsError`` naming
the setting, when the app is built, before anything starts). ``MediaPlane.start(db)`` then installs
them for this worker: the ICE host-address allowlist, this worker's DTLS certificate, the ICE mux's
socket (a taken port fails start-up), the media clock; ``close()`` ends the calls and stops them.
``call_config(device)`` and ``new_call(...)`` build a WebRTC ``Call`` wired to the plane.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from relay.call.plane import CallPlane
from relay.media import dtls, ice
from relay.media.adapt import ComplexityController
from relay.media.call import Call, CallConfig
from relay.media.clock import MediaClock
from relay.media.codecs import AudioCodec
from relay.media.mux import IceMux
from relay.node.state import port_slice
from relay.settings import Settings, SettingsError

log = logging.getLogger("relay.media")


def check_settings(settings: Settings) -> None:
    """The ICE/DTLS settings, checked once: ``SettingsError`` (one line naming the setting)."""
    if settings.ice_public_ip:
        try:
            ipaddress.ip_address(settings.ice_public_ip)
        except ValueError:
            raise SettingsError(f"ice_public_ip is not an IP address: {settings.ice_public_ip!r}") from None
    for address in settings.ice_host_addresses:
        if address.strip():
            try:
                ipaddress.ip_address(address.strip())
            except ValueError:
                raise SettingsError(f"ice_host_addresses: not an IP address: {address!r}") from None
    if settings.ice_port_min or settings.ice_port_max:
        if not 0 < settings.ice_port_min <= settings.ice_port_max <= 65535:
            raise SettingsError("ice_port_min/ice_port_max: need 0 < min <= max <= 65535 (or both 0)")
        if settings.ice_mux:
            raise SettingsError("ice_port_min/ice_port_max configure one port per call: set ice_mux = false to use "
                                "them, or ice_udp_port for the worker's one ICE port")
    if not 0 <= settings.ice_udp_port <= 65535:
        raise SettingsError("ice_udp_port: need 0..65535 (0: a free port chosen at start)")
    if not 0 < settings.dtls_cert_rotate_s <= dtls.MAX_ROTATE_S:
        raise SettingsError(f"dtls_cert_rotate_s: need 0 < s <= {dtls.MAX_ROTATE_S:.0f} (certificates last 30 days)")
    if not dtls.MIN_RSA_BITS_FLOOR <= settings.dtls_min_rsa_bits <= dtls.MAX_RSA_BITS:
        raise SettingsError(f"dtls_min_rsa_bits: need {dtls.MIN_RSA_BITS_FLOOR}..{dtls.MAX_RSA_BITS} (RSA keys smaller "
                            f"than {dtls.MIN_RSA_BITS_FLOOR} bits are never accepted)")
    if not 0 <= settings.opus_complexity <= 10:
        raise SettingsError("opus_complexity: need 0..10")
    if not 0 <= settings.opus_complexity_min <= settings.opus_complexity:
        raise SettingsError("opus_complexity_min: need 0 <= opus_complexity_min <= opus_complexity")


class MediaPlane(CallPlane):
    """The call plane of a worker that answers WebRTC calls too (module doc)."""

    def __init__(self, settings: Settings, *, worker: Any = None) -> None:
        check_settings(settings)
        super().__init__(settings, worker=worker)
        try:  # this worker's slice of ice_port_min..ice_port_max (one port per call, ice_mux off)
            self.ice_port_range = port_slice(settings.ice_port_min, settings.ice_port_max, self.worker_index,
                                             worker.count if worker is not None else 1)
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
        # the ICE mux: worker i of a node uses ice_udp_port + i (0: each picks a free port)
        self.ice_udp_port = settings.ice_udp_port + self.worker_index if settings.ice_udp_port else 0
        self.mux: IceMux | None = None  # that port's sockets and routing table (set by start: needs the loop)
        # with opus_adaptive off the ladder has one level: the clock still measures its load (the gauge)
        floor = settings.opus_complexity_min if settings.opus_adaptive else settings.opus_complexity
        self.clock = MediaClock(self.metrics, adapt=ComplexityController(settings.opus_complexity, floor))

    async def start(self, db: Any = None) -> None:
        settings = self.settings
        ice.configure_host_addresses(settings.ice_host_addresses)
        dtls.configure(settings.dtls_cert_rotate_s, settings.dtls_min_rsa_bits)  # this worker's DTLS certificate (relay/media/dtls.py)
        if settings.ice_mux:
            self.mux = IceMux(self.ice_udp_port)
            try:
                await self.mux.open(ice.gather_addresses())  # fails start-up when the port is taken
            except OSError as exc:
                self.mux.close()
                raise SettingsError(f"ice_udp_port {self.ice_udp_port}: cannot bind the worker's ICE UDP port "
                                    f"({exc.strerror or exc}); pick a free one") from None
        self.clock.start()
        await super().start(db)

    async def _close_edge(self) -> None:
        await self.clock.stop()
        if self.mux is not None:
            self.mux.close()

    def call_config(self, device: Any) -> CallConfig:
        """A WebRTC call's configuration for ``device``, with this worker's port slice and port mux."""
        return call_config(self.settings, device, self.ice_port_range, self.mux)

    def new_call(self, call_id: str, device: Any, codec: AudioCodec, max_playback_hz: int | None = None,
                 downlink_fec: bool = False) -> Call:
        """A WebRTC call wired to this worker (not started: ``await call.start(offer)``)."""
        return Call(call_id=call_id, device=device, codec=codec, config=self.call_config(device),
                    metrics=self.metrics, clock=self.clock, upstream_factory=self.open_upstream,
                    tool_runner=self.run_tool, usage_recorder=self.record_usage,
                    on_finished=self.call_finished, on_connected=self.registry.connected,
                    max_playback_hz=max_playback_hz, downlink_fec=downlink_fec)


def call_config(settings: Settings, device: Any, ice_port_range: tuple[int, int] | None = None,
                ice_mux: IceMux | None = None) -> CallConfig:
    """A WebRTC call's configuration from the settings (without a worker: the whole port range, no mux)."""
    if ice_port_range is None and settings.ice_port_min:
        ice_port_range = (settings.ice_port_min, settings.ice_port_max)
    limit_s = min(float(settings.max_call_s), float(getattr(device, "max_call_s", 0) or settings.max_call_s))
    if getattr(device, "demo", False):
        limit_s = min(limit_s, float(settings.demo_max_call_s))
    return CallConfig(
        uplink_chunk_ms=settings.uplink_chunk_ms,
        opus_complexity=settings.opus_complexity,
        playout_trim_above_ms=settings.playout_trim_above_ms,
        opus_bitrate_bps=settings.opus_bitrate_bps,
        dc_queue_max=settings.datachannel_queue_max,
        dc_max_buffered_bytes=settings.datachannel_max_buffered_bytes,
        device_events_per_s=settings.device_events_per_s,
        ice_public_ip=settings.ice_public_ip,
        ice_port_range=ice_port_range,
        ice_mux=ice_mux,
        dtx=settings.downlink_dtx,
        ice_connect_timeout_s=settings.ice_connect_timeout_s,
        max_call_s=limit_s,
        recycle_after_s=float(settings.upstream_recycle_s) if settings.upstream_recycle_s > 0 else None,
        device_event_max_bytes=settings.device_event_max_bytes,
        upstream_slow_notice_s=settings.upstream_slow_notice_s,
        device_liveness_timeout_s=settings.device_liveness_timeout_s,
    )
