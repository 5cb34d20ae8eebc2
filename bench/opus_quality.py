"""Opus complexity: encode cost and a quality proxy for relay's downlink (24 kHz mono voice, 20 ms, 32 kb/s).

Quality proxy: log-spectral distance (LSD, dB) between the input speech and
``decode(encode(speech))``, over the speech frames only (silence excluded), after
removing the codec's delay. Lower is better; complexity 10 is the reference. LSD
is not a listening test, but it tracks the coarse spectral errors lower
complexities make (SILK's noise shaping and pitch analysis, CELT's band
decisions) and is cheap and deterministic.

    python -m bench.opus_quality            # table: complexity, us/frame, LSD, delta vs 10, kb/s
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from relay.media.opus import OpusDecoder, OpusEncoder

RATE_HZ = 24000
FRAME_SAMPLES = RATE_HZ // 50  # 20 ms
BITRATE_BPS = 32000
NFFT = 512  # ~21 ms analysis window at 24 kHz
HOP = 256
LSD_MARGIN_DB = 0.25  # a complexity whose LSD is within this of complexity 10's counts as "same quality"


def speech_24k() -> np.ndarray:
    """espeak-ng sentences (bench's speech, normalised to ~-22 dBFS), 24 kHz int16, whole frames."""
    from bench.audio import espeak_speech, normalise

    x = normalise(espeak_speech(RATE_HZ, pause_ms=300))
    return x[: len(x) // FRAME_SAMPLES * FRAME_SAMPLES]


def round_trip(pcm: np.ndarray, complexity: int, *, bitrate_bps: int = BITRATE_BPS) -> tuple[np.ndarray, int]:
    """``decode(encode(pcm))`` frame by frame; returns the output and the payload bytes."""
    enc, dec = OpusEncoder(RATE_HZ, bitrate_bps=bitrate_bps, complexity=complexity), OpusDecoder(RATE_HZ)
    raw = pcm.astype("<i2").tobytes()
    fb = FRAME_SAMPLES * 2
    out, nbytes = [], 0
    for i in range(0, len(raw), fb):
        p = enc.encode(raw[i:i + fb])
        nbytes += len(p)
        out.append(dec.decode(p))
    enc.close()
    dec.close()
    return np.frombuffer(b"".join(out), "<i2"), nbytes


def _delay(ref: np.ndarray, out: np.ndarray, max_lag: int = 1200) -> int:
    a, b = ref[:RATE_HZ * 4].astype(float), out[:RATE_HZ * 4].astype(float)
    corr = [float(np.dot(a[: len(a) - lag], b[lag:])) for lag in range(max_lag)]
    return int(np.argmax(corr))


def _spectra(x: np.ndarray) -> np.ndarray:
    win = np.hanning(NFFT)
    frames = np.lib.stride_tricks.sliding_window_view(x.astype(float), NFFT)[::HOP] * win
    return np.abs(np.fft.rfft(frames, axis=1)) ** 2


def lsd_db(ref: np.ndarray, out: np.ndarray) -> float:
    """Mean log-spectral distance (dB) over the frames where ``ref`` is speech (within 40 dB of its loudest)."""
    d = _delay(ref, out)
    n = min(len(ref), len(out) - d)
    r, o = _spectra(ref[:n]), _spectra(out[d:d + n])
    energy = r.sum(axis=1)
    speech = energy > energy.max() * 1e-4
    eps = 1e-3 * r[speech].mean()
    diff = 10 * np.log10(r[speech] + eps) - 10 * np.log10(o[speech] + eps)
    return float(np.mean(np.sqrt(np.mean(diff ** 2, axis=1))))


def encode_us_per_frame(pcm: np.ndarray, complexity: int, repeats: int = 5) -> float:
    enc = OpusEncoder(RATE_HZ, bitrate_bps=BITRATE_BPS, complexity=complexity)
    raw = pcm.astype("<i2").tobytes()
    frames = [raw[i:i + FRAME_SAMPLES * 2] for i in range(0, len(raw), FRAME_SAMPLES * 2)]
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for f in frames:
            enc.encode(f)
        best = min(best, (time.perf_counter() - t0) / len(frames))
    enc.close()
    return best * 1e6


def table(pcm: np.ndarray | None = None) -> list[dict[str, float]]:
    pcm = speech_24k() if pcm is None else pcm
    seconds = len(pcm) / RATE_HZ
    rows = []
    for c in range(11):
        out, nbytes = round_trip(pcm, c)
        rows.append({"complexity": c, "encode_us": encode_us_per_frame(pcm, c), "lsd_db": lsd_db(pcm, out),
                     "kbps": nbytes * 8 / seconds / 1000})
    ref = rows[-1]["lsd_db"]
    for r in rows:
        r["lsd_delta_db"] = r["lsd_db"] - ref
    return rows


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    print("| complexity | encode us/frame (min of 5) | LSD dB | vs 10 | kb/s |")
    print("|---|---|---|---|---|")
    for r in table():
        print(f"| {r['complexity']} | {r['encode_us']:.0f} | {r['lsd_db']:.2f} | {r['lsd_delta_db']:+.2f} | {r['kbps']:.1f} |")


if __name__ == "__main__":
    main()
