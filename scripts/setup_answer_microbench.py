"""Microbenchmark: relay's side of the SDP exchange (``Peer.answer``) and DTLS context set-up, CPU per call.

    PYTHONPATH=. python scripts/setup_answer_microbench.py [--n 300]

Alternates, on one idle event loop: ``aiortc`` (a new key + certificate per connection, as aiortc
does by itself) and ``worker`` (relay.media.dtls: one certificate per worker, cached fingerprints
and OpenSSL context). The offer is a real aiortc device's (audio + data channel), ICE on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import statistics
import time

import uvloop
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.rtcdtlstransport import SRTP_PROFILES, RTCCertificate

from relay.media import dtls, ice
from relay.media import peer as peer_mod
from relay.media.codecs import choose_audio_codec, parse_offer
from relay.media.downlink import DownlinkEncoder, PacketTrack
from relay.media.metrics import MediaMetrics
from relay.media.uplink import UplinkSink


async def _offer() -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio", direction="sendrecv")
    pc.createDataChannel("oai-events")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


async def _answer_cpu_ms(sdp: str, metrics: MediaMetrics) -> float:
    codec = choose_audio_codec(parse_offer(sdp), allow_g711=True)
    sink = UplinkSink(codec, chunk_ms=40, on_chunk=lambda c, a: None, metrics=metrics)
    p = peer_mod.Peer(codec=codec, track=PacketTrack(DownlinkEncoder(codec)), sink=sink, metrics=metrics,
                      on_message=lambda m: None, on_closed=lambda r: None)
    c0 = time.process_time()
    await p.answer(sdp)
    c1 = time.process_time()
    await p.close()
    return (c1 - c0) * 1e3


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    a = ap.parse_args()
    ice.configure_host_addresses(["127.0.0.1"])
    metrics = MediaMetrics()
    sdp = await _offer()
    worker_pc = dtls.peer_connection
    modes = {"aiortc": lambda cfg, cert: RTCPeerConnection(cfg), "worker": worker_pc}
    samples: dict[str, list[float]] = {m: [] for m in modes}
    for i in range(a.n * 2 + 40):
        mode = "aiortc" if i % 2 else "worker"
        dtls.peer_connection = modes[mode]  # the name Peer.answer calls
        ms = await _answer_cpu_ms(sdp, metrics)
        if i >= 40:
            samples[mode].append(ms)
    dtls.peer_connection = worker_pc
    for mode, v in samples.items():
        print(f"Peer.answer CPU, {mode:6s} certificate: median {statistics.median(v):.3f} ms, "
              f"mean {statistics.fmean(v):.3f} ms (n {len(v)})")
    n = 300
    fresh = RTCCertificate.generateCertificate()
    shared = dtls.current()
    for name, fn in (("generateCertificate", RTCCertificate.generateCertificate),
                     ("getFingerprints (aiortc, x4 per answer)", fresh.getFingerprints),
                     ("getFingerprints (worker, x4 per answer)", shared.getFingerprints),
                     ("_create_ssl_context (aiortc, per DTLS start)", lambda: fresh._create_ssl_context(SRTP_PROFILES)),
                     ("_create_ssl_context (worker, per DTLS start)", lambda: shared._create_ssl_context(SRTP_PROFILES))):
        t = time.process_time()
        for _ in range(n):
            fn()
        print(f"{name}: {(time.process_time() - t) / n * 1e3:.3f} ms")


if __name__ == "__main__":
    uvloop.run(main())
