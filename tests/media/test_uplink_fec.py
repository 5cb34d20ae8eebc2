"""In-band FEC on the uplink: relay's ``UplinkSink`` recovers a lost packet from the next one's FEC.

The device's packets (libopus at 48 kHz, 32 kb/s, FEC on or off) go through the sink minus a
seeded set of lost ones (``bench.fidelity``); the speech the upstream would receive is scored with
wideband PESQ (ITU-T P.862.2) against the clip, and against the codec's own ceiling under the same
loss (libopus alone: FEC from the next packet when it arrived, else concealment).
"""

from __future__ import annotations

import numpy as np
import pytest

from bench import fidelity as fi
from relay.call.metrics import MediaMetrics
from relay.media.codecs import OPUS
from relay.media.opus import OpusDecoder, OpusEncoder
from relay.media.uplink import UplinkSink

PESQ_MARGIN = 0.1


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return fi.speech_clip()


@pytest.mark.parametrize("case", list(fi.LOSS_CASES))
def test_uplink_pesq_under_loss_fec_on_beats_off_and_meets_the_ceiling(clip, case):
    scores = {}
    for fec in (False, True):
        kind, value = fi.LOSS_CASES[case]
        loss_perc = int(value * 100) if kind == "random" else round(100 * value / fi.BURST_EVERY)
        packets = fi.device_packets(clip, fec=fec, loss_perc=loss_perc)
        lost = fi.lost_packets(len(packets), case)
        relay = fi.pesq_wb(clip, fi.RATE_HZ, fi.relay_uplink(packets, lost), fi.RATE_HZ)
        ceiling = fi.pesq_wb(clip, fi.RATE_HZ, fi.uplink_ceiling(packets, lost), fi.RATE_HZ)
        scores[fec] = (relay, ceiling)
        assert relay >= ceiling - PESQ_MARGIN, (case, fec, relay, ceiling)
    print(f"\nuplink PESQ-WB, {case}: FEC off {scores[False][0]:.2f}, on {scores[True][0]:.2f} "
          f"(ceilings {scores[False][1]:.2f} / {scores[True][1]:.2f})")
    assert scores[True][0] >= scores[False][0]


def test_a_lost_packet_is_recovered_from_the_next_packets_fec():
    """One lost frame of a steady tone: recovered from FEC it is close to the frame itself;
    concealment alone (the sink before FEC) is further off."""
    t = np.arange(48000) / 48000
    tone = (8000 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()
    enc = OpusEncoder(48000, fec=True, fec_loss_perc=20)
    packets = [enc.encode(tone[i:i + 1920]) for i in range(0, len(tone), 1920)]
    clean = OpusDecoder(24000)
    reference = [clean.decode(p) for p in packets]
    out: list[bytes] = []
    sink = UplinkSink(OPUS, chunk_ms=20, on_chunk=lambda c, _t: out.append(c), metrics=MediaMetrics(),
                      max_packets_per_s=1e9)
    lost = 20
    for seq, p in enumerate(packets):
        if seq != lost:
            sink.push(seq, p)
    assert len(out) == len(packets)  # the lost frame was filled in, timing kept

    def err_db(a: bytes, b: bytes) -> float:
        x, y = np.frombuffer(a, "<i2").astype(float), np.frombuffer(b, "<i2").astype(float)
        return float(10 * np.log10(np.sum((x - y) ** 2) / np.sum(y ** 2)))

    plc = OpusDecoder(24000)
    for p in packets[:lost]:
        plc.decode(p)
    concealed = plc.conceal(20)
    assert err_db(out[lost], reference[lost]) < err_db(concealed, reference[lost]) - 3
    assert err_db(out[lost], reference[lost]) < -6
