"""The compiled kernels free what they allocate (malloc'd filter tables, history and playout storage)."""

from __future__ import annotations

import gc

from relay._fast import playout, resample


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def churn(rounds: int) -> None:
    frame_48k = bytes(range(256)) * 15  # 20 ms at 48 kHz, PCM16
    for i in range(rounds):
        r = resample.Resampler(48000, 8000 if i % 2 else 24000)
        r.process(frame_48k * 4)  # grows the history buffer
        r.flush()
        b = playout.PlayoutBuffer(48, capacity_ms=2000)
        b.push("a", frame_48k * 40)  # ~100 KB: a malloc'd buffer above the kept size
        b.pop_frame()
        if i % 3 == 0:
            b.clear()
        del r, b


def test_no_native_leak() -> None:
    churn(200)  # warm up allocator pools
    gc.collect()
    before = rss_bytes()
    churn(3000)  # a leak of the per-object buffers would be > 300 MB here
    gc.collect()
    assert rss_bytes() - before < 32 * 1024 * 1024
