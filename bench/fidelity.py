"""Fidelity figures: wideband PESQ (ITU-T P.862.2, the ``pesq`` package) of speech through relay's
media code against the codec's own ceiling, clean and under seeded packet loss with and without
in-band FEC, and the downlink's cost of FEC.

- *Ceiling*: the same speech through a direct libopus encode/decode at the same settings (and, under
  loss, the same lost packets, each recovered the way libopus can: from the next packet's in-band
  FEC when it is there, else concealment).
- *Uplink under loss*: the device's packets (libopus at 48 kHz, 32 kb/s, complexity 5, FEC on or
  off) minus the lost ones, through relay's ``UplinkSink`` (reorder, loss detection, FEC/PLC,
  decode straight to 24 kHz, chunking) -- what the upstream receives.
- The end-to-end figures (real calls, both directions) come from ``tests/e2e/test_pesq.py``, which
  uses the helpers here.

    python -m bench.fidelity            # loss table (FEC on/off, relay vs ceiling) + downlink FEC cost

PESQ runs at 16 kHz (P.862.2); both signals are aligned (codec delay removed) and resampled first.
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from relay.call.metrics import MediaMetrics
from relay.client.codec import read_wav_pcm16, resample_pcm16
from relay.media.codecs import OPUS
from relay.media.opus import OpusDecoder, OpusEncoder
from relay.media.uplink import UplinkSink

RATE_HZ = 24000  # relay's pcm16 rate (upstream side)
DEVICE_RATE_HZ = 48000
PESQ_RATE_HZ = 16000
FRAME_MS = 20
CLIP_TEXT = "Hello there, can you hear me clearly? Please set the volume to forty percent, and tell me a story."
CLIP_RMS = 2500.0  # about -22 dBFS over the voiced samples (bench's speech level)
LOSS_CASES = {"5% random": ("random", 0.05), "15% random": ("random", 0.15), "3-packet bursts": ("burst", 3)}
BURST_EVERY = 40  # 3-packet bursts: one burst per this many packets on average (7.5 % loss)


def speech_clip(rate_hz: int = RATE_HZ) -> np.ndarray:
    """A fixed clip: ``CLIP_TEXT`` by espeak-ng (en-us, 160 wpm) at ``rate_hz``, ~-22 dBFS, with 200 ms
    of silence before and after, whole 20 ms frames."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (scripts/test.sh installs it)")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "clip.wav"
        subprocess.run([exe, "-v", "en-us", "-s", "160", "-w", str(wav), CLIP_TEXT], check=True, capture_output=True)
        samples, native = read_wav_pcm16(wav)
    x = resample_pcm16(samples, native, rate_hz).astype(np.float64)
    voiced = x[np.abs(x) > 50]
    x *= CLIP_RMS / float(np.sqrt(np.mean(voiced ** 2)))
    pad = np.zeros(rate_hz // 5)
    x = np.concatenate([pad, x, pad])
    frame = rate_hz * FRAME_MS // 1000
    x = np.concatenate([x, np.zeros(-len(x) % frame)])
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def align(ref: np.ndarray, deg: np.ndarray, rate_hz: int, max_lag_s: float = 3.0) -> np.ndarray:
    """``deg`` shifted so it lines up with ``ref`` (cross-correlation, lag 0..``max_lag_s``), same length."""
    a = ref.astype(np.float64)
    b = deg.astype(np.float64)
    n = len(a) + len(b)
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(b, size) * np.conj(np.fft.rfft(a, size)), size)
    lag = int(np.argmax(corr[: int(max_lag_s * rate_hz)]))
    out = b[lag:lag + len(a)]
    return np.concatenate([out, np.zeros(len(a) - len(out))]).astype(np.int16)


def pesq_wb(ref: np.ndarray, ref_rate_hz: int, deg: np.ndarray, deg_rate_hz: int) -> float:
    """Wideband PESQ (MOS-LQO) of ``deg`` against ``ref``, each at its own rate."""
    from pesq import pesq

    r = resample_pcm16(ref, ref_rate_hz, PESQ_RATE_HZ)
    d = align(r, resample_pcm16(deg, deg_rate_hz, PESQ_RATE_HZ), PESQ_RATE_HZ)
    return float(pesq(PESQ_RATE_HZ, r.astype(np.float32) / 32768, d.astype(np.float32) / 32768, "wb"))


def frames(pcm: np.ndarray, rate_hz: int) -> list[bytes]:
    n = rate_hz * FRAME_MS // 1000
    raw = np.concatenate([pcm, np.zeros(-len(pcm) % n, np.int16)]).astype("<i2").tobytes()
    return [raw[i:i + 2 * n] for i in range(0, len(raw), 2 * n)]


# -- downlink ---------------------------------------------------------------------------------
def downlink_ceiling(clip: np.ndarray, *, complexity: int = 4, bitrate_bps: int = 32000,
                     decode_rate_hz: int = DEVICE_RATE_HZ) -> np.ndarray:
    """The clip (24 kHz) through one libopus encoder at relay's downlink settings, every frame
    encoded, decoded at ``decode_rate_hz`` (a browser decodes at 48 kHz)."""
    enc, dec = OpusEncoder(RATE_HZ, bitrate_bps=bitrate_bps, complexity=complexity), OpusDecoder(decode_rate_hz)
    out = b"".join(dec.decode(enc.encode(f)) for f in frames(clip, RATE_HZ) + [bytes(960)] * 3)
    return np.frombuffer(out, "<i2")


def downlink_fec_cost(clip: np.ndarray, *, complexity: int = 4, bitrate_bps: int = 32000,
                      rounds: int = 3) -> dict[str, dict[str, float]]:
    """Encode cost (us/frame, best of ``rounds``) and payload rate (kb/s) of relay's downlink encoder
    with in-band FEC off and on."""
    out: dict[str, dict[str, float]] = {}
    pcm = frames(clip, RATE_HZ)
    for label, fec in (("FEC off", False), ("FEC on", True)):
        best = float("inf")
        nbytes = 0
        for _ in range(rounds):
            enc = OpusEncoder(RATE_HZ, bitrate_bps=bitrate_bps, complexity=complexity, fec=fec)
            t0 = time.perf_counter()
            nbytes = sum(len(enc.encode(f)) for f in pcm)
            best = min(best, time.perf_counter() - t0)
            enc.close()
        out[label] = {"us_per_frame": best / len(pcm) * 1e6, "kbps": nbytes * 8 / (len(pcm) * FRAME_MS)}
    return out


# -- uplink ------------------------------------------------------------------------------------
def device_packets(clip: np.ndarray, *, fec: bool, loss_perc: int = 10, bitrate_bps: int = 32000,
                   complexity: int = 5) -> list[bytes]:
    """What a device sends for the clip: libopus at 48 kHz mono, 20 ms, with or without in-band FEC
    (``loss_perc``: the loss the sender expects, as a browser learns it from RTCP)."""
    pcm48 = resample_pcm16(clip, RATE_HZ, DEVICE_RATE_HZ)
    enc = OpusEncoder(DEVICE_RATE_HZ, bitrate_bps=bitrate_bps, complexity=complexity, fec=fec,
                      fec_loss_perc=loss_perc)
    packets = [enc.encode(f) for f in frames(pcm48, DEVICE_RATE_HZ)]
    enc.close()
    return packets


def lost_packets(count: int, case: str, seed: int = 11) -> set[int]:
    """Seeded loss: ``random`` (each packet lost with probability p) or ``burst`` (runs of n packets,
    one run per ``BURST_EVERY`` packets on average). The first and last 5 packets are never lost."""
    kind, value = LOSS_CASES[case]
    rng = random.Random(seed)
    lost: set[int] = set()
    if kind == "random":
        lost = {i for i in range(5, count - 5) if rng.random() < value}
    else:
        i = 5
        while True:
            i += rng.randint(BURST_EVERY // 2, BURST_EVERY * 3 // 2)
            if i + int(value) >= count - 5:
                break
            lost.update(range(i, i + int(value)))
    return lost


def uplink_ceiling(packets: list[bytes], lost: set[int]) -> np.ndarray:
    """libopus alone at 24 kHz: each received packet decoded; a lost one recovered from the next
    packet's in-band FEC when that one arrived (libopus conceals when it carries none), else concealed."""
    dec = OpusDecoder(RATE_HZ)
    out = []
    for i, p in enumerate(packets):
        if i not in lost:
            out.append(dec.decode(p))
        elif i + 1 < len(packets) and i + 1 not in lost:
            out.append(dec.decode_fec(packets[i + 1], FRAME_MS))
        else:
            out.append(dec.conceal(FRAME_MS))
    return np.frombuffer(b"".join(out), "<i2")


def relay_uplink(packets: list[bytes], lost: set[int], *, chunk_ms: int = 40) -> np.ndarray:
    """The packets minus the lost ones, in order, through relay's ``UplinkSink``: what the upstream
    receives (pcm16 24 kHz). Five silent packets follow, so a loss near the end is resolved too."""
    chunks: list[bytes] = []
    sink = UplinkSink(OPUS, chunk_ms=chunk_ms, on_chunk=lambda chunk, _t: chunks.append(chunk),
                      metrics=MediaMetrics(), max_packets_per_s=1e9)
    tail = OpusEncoder(DEVICE_RATE_HZ)
    packets = packets + [tail.encode(bytes(1920)) for _ in range(5)]
    for seq, payload in enumerate(packets):
        if seq not in lost:
            sink.push(seq, payload)
    sink.close()
    return np.frombuffer(b"".join(chunks), "<i2")


def loss_table(clip: np.ndarray | None = None, seed: int = 11) -> list[dict[str, object]]:
    """Uplink PESQ per loss case, FEC off and on: relay vs the ceiling (and the clean figures)."""
    clip = speech_clip() if clip is None else clip
    rows: list[dict[str, object]] = []
    for case in ("none", *LOSS_CASES):
        for fec in (False, True):
            if case == "none":
                loss_perc, lost = 0, set()
            else:
                kind, value = LOSS_CASES[case]
                loss_perc = int(value * 100) if kind == "random" else round(100 * value / BURST_EVERY)
            packets = device_packets(clip, fec=fec, loss_perc=max(loss_perc, 1))
            if case != "none":
                lost = lost_packets(len(packets), case, seed)
            rows.append({
                "loss": case, "fec": fec, "lost_packets": len(lost), "packets": len(packets),
                "relay": pesq_wb(clip, RATE_HZ, relay_uplink(packets, lost), RATE_HZ),
                "ceiling": pesq_wb(clip, RATE_HZ, uplink_ceiling(packets, lost), RATE_HZ),
            })
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    clip = speech_clip()
    print(f"clip: {len(clip) / RATE_HZ:.1f} s of espeak-ng speech; PESQ = ITU-T P.862.2 wideband MOS-LQO")
    print("\nuplink (device 48 kHz 32 kb/s -> relay's UplinkSink -> 24 kHz), seeded loss:")
    print(f"{'loss':<16}{'FEC':<5}{'lost':>6}{'relay':>8}{'ceiling':>9}")
    for row in loss_table(clip, args.seed):
        print(f"{row['loss']:<16}{'on' if row['fec'] else 'off':<5}{row['lost_packets']:>6}"
              f"{row['relay']:>8.2f}{row['ceiling']:>9.2f}")
    ceiling = pesq_wb(clip, RATE_HZ, downlink_ceiling(clip), DEVICE_RATE_HZ)
    print(f"\ndownlink codec ceiling (24 kHz, 32 kb/s, complexity 4, decoded at 48 kHz): PESQ {ceiling:.2f}")
    for label, cost in downlink_fec_cost(clip).items():
        print(f"downlink encode {label}: {cost['us_per_frame']:.0f} us/frame, {cost['kbps']:.1f} kb/s")


if __name__ == "__main__":
    main()
