"""The physical floor of one call on this machine: what relay cannot avoid doing, measured.

``python -m bench.floor [--frames 1000] [--batch 32] [--json floor.json]``

For one call's real audio (the bench's speech, 20 ms Opus frames from a device), per 20 ms:

- **decode** the device's Opus frame with libopus to 24 kHz mono (relay's uplink rate);
- **encode** 20 ms of that speech with libopus at relay's settings (``opus_complexity``,
  ``opus_bitrate_bps`` from ``relay.settings``: the downlink);
- **SRTP unprotect** the uplink packet and **protect** the downlink one (pylibsrtp/libsrtp2, the
  profile aiortc negotiates first);
- **two syscalls per packet amortised by batching**: each packet sent with ``sendmmsg`` and received
  with ``recvmmsg`` (``relay._fast.send_batch`` / ``BatchReceiver``) on loopback UDP, ``--batch``
  packets per call, i.e. one tick's packets of ``--batch`` calls (kernel loopback delivery included).

Each step is timed on this thread's CPU clock (``time.thread_time``) over ``--frames`` frames, the
best of ``REPEATS`` rounds (a floor, not an average: noise from the shared machine only adds).
The floor per call is 50 frames/s x (decode + encode + unprotect + protect + send/receive of two
packets), as % of one core. Everything else relay spends per call -- Python, the event loop,
the upstream WebSocket, RTCP, timers -- is what the ratio ``relay CPU per call / floor`` shows.
The echo and short workloads encode only while the assistant speaks: this floor is the loopback
(full-duplex audio all the time) figure, an upper bound of theirs.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import sys
import time
from collections.abc import Callable
from typing import Any

import pylibsrtp
from aiortc.rtcdtlstransport import SRTP_PROFILES

from relay._fast import BatchReceiver, send_batch
from relay.media.opus import OpusDecoder, OpusEncoder

RATE_HZ = 24000
FRAME_BYTES = RATE_HZ // 50 * 2
FRAMES_PER_S = 50
REPEATS = 3
MAX_FRAMES = 20000


def _best(fn: Callable[[], int]) -> float:
    """Best-of-REPEATS CPU seconds per item of ``fn`` (which returns how many items it did)."""
    best = float("inf")
    for _ in range(REPEATS):
        t0 = time.thread_time()
        n = fn()
        best = min(best, (time.thread_time() - t0) / max(1, n))
    return best


def _srtp_pair() -> tuple[pylibsrtp.Session, pylibsrtp.Session]:
    profile = SRTP_PROFILES[0]
    key = os.urandom(profile.key_length + profile.salt_length)
    tx = pylibsrtp.Session(pylibsrtp.Policy(key, pylibsrtp.Policy.SSRC_ANY_OUTBOUND, 0, profile.libsrtp_profile))
    rx = pylibsrtp.Session(pylibsrtp.Policy(key, pylibsrtp.Policy.SSRC_ANY_INBOUND, 0, profile.libsrtp_profile))
    return tx, rx


def _rtp(payloads: list[bytes], ssrc: int = 0x1234) -> list[bytes]:
    return [struct.pack("!BBHII", 0x80, 111, i & 0xFFFF, i * 960, ssrc) + p for i, p in enumerate(payloads)]


def measure(packets: list[bytes], *, frames: int = 1000, batch: int = 32, complexity: int | None = None,
            bitrate_bps: int | None = None) -> dict[str, Any]:
    """The floor for a call sending ``packets`` (20 ms Opus frames, looped to ``frames``)."""
    if not packets:
        raise ValueError("no packets")
    if not 10 <= frames <= MAX_FRAMES or not 1 <= batch <= 1024:
        raise ValueError(f"frames must be 10..{MAX_FRAMES} and batch 1..1024")
    if complexity is None or bitrate_bps is None:
        from relay.settings import load_settings

        s = load_settings(environ={})
        complexity = s.opus_complexity if complexity is None else complexity
        bitrate_bps = s.opus_bitrate_bps if bitrate_bps is None else bitrate_bps
    uplink = [packets[i % len(packets)] for i in range(frames)]
    dec = OpusDecoder(RATE_HZ)
    pcm = [dec.decode(p) for p in uplink]  # the speech at 24 kHz: also the downlink (loopback)
    pcm = [x.ljust(FRAME_BYTES, b"\0")[:FRAME_BYTES] for x in pcm]
    enc = OpusEncoder(RATE_HZ, bitrate_bps=bitrate_bps, complexity=complexity)
    downlink = [enc.encode(x) for x in pcm]

    def decode() -> int:
        d = OpusDecoder(RATE_HZ)
        for p in uplink:
            d.decode(p)
        d.close()
        return len(uplink)

    def encode() -> int:
        e = OpusEncoder(RATE_HZ, bitrate_bps=bitrate_bps, complexity=complexity)
        for x in pcm:
            e.encode(x)
        e.close()
        return len(pcm)

    plain = _rtp(downlink)
    protect_s = unprotect_s = float("inf")
    for _ in range(REPEATS):
        tx, rx = _srtp_pair()
        t0 = time.thread_time()
        wire = [tx.protect(p) for p in plain]
        t1 = time.thread_time()
        for w in wire:
            rx.unprotect(w)
        t2 = time.thread_time()
        protect_s, unprotect_s = min(protect_s, (t1 - t0) / len(plain)), min(unprotect_s, (t2 - t1) / len(plain))
    io_s, io_single_s = _io(wire, batch), _io(wire, 1)
    decode_s, encode_s = _best(decode), _best(encode)
    per_frame_s = decode_s + encode_s + protect_s + unprotect_s + 2 * io_s
    steps_us = {
        "decode": decode_s * 1e6,
        "encode": encode_s * 1e6,
        "srtp_protect": protect_s * 1e6,
        "srtp_unprotect": unprotect_s * 1e6,
        f"send_recv_per_packet_batch{batch}": io_s * 1e6,
        "send_recv_per_packet_batch1": io_single_s * 1e6,
    }
    return {
        "frames": frames,
        "batch": batch,
        "opus_complexity": complexity,
        "opus_bitrate_bps": bitrate_bps,
        "srtp_profile": SRTP_PROFILES[0].openssl_profile.decode(),
        "us_per_frame": {k: round(v, 2) for k, v in steps_us.items()},
        "cpu_pct_per_call": round(per_frame_s * FRAMES_PER_S * 100.0, 3),
        "cpu_pct_per_call_unbatched": round((per_frame_s + 2 * (io_single_s - io_s)) * FRAMES_PER_S * 100.0, 3),
    }


def _io(wire: list[bytes], batch: int) -> float:
    """CPU per packet to send it (sendmmsg) and receive it (recvmmsg) on loopback UDP, ``batch`` at a time."""
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for s in (a, b):
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        addr = b.getsockname()
        receiver = BatchReceiver(batch, 2048)
        groups = [[(w, addr) for w in wire[i : i + batch]] for i in range(0, len(wire) - batch + 1, batch)]

        def run() -> int:
            n = 0
            for group in groups:
                sent = send_batch(a, group)
                got = 0
                while got < sent:
                    got += len(receiver.recv(b))
                n += got
            return n

        return _best(run)
    finally:
        a.close()
        b.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=1000, help="20 ms frames per timed round")
    ap.add_argument("--batch", type=int, default=32, help="packets per sendmmsg/recvmmsg (calls per tick)")
    ap.add_argument("--audio", help="16-bit WAV (default: the bench's espeak-ng speech)")
    ap.add_argument("--json", help="write the result here")
    args = ap.parse_args(argv)
    from bench.audio import build

    audio = build(args.audio, markers=False)
    out = measure(audio.packets, frames=args.frames, batch=args.batch)
    out["audio"] = audio.source
    for step, us in out["us_per_frame"].items():
        print(f"  {step:>34}: {us:8.2f} us")
    print(f"floor: {out['cpu_pct_per_call']:.3f} % of one core per call (batches of {args.batch}); "
          f"{out['cpu_pct_per_call_unbatched']:.3f} % with a syscall per packet")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
