"""The downlink track and encoder: RTP timing, unsent/dropped frames, silence cache, G.711 passthrough."""

from __future__ import annotations

import pytest
from aiortc.mediastreams import MediaStreamError

from relay.media.codecs import OPUS, PCMA
from relay.media.downlink import DownlinkEncoder, PacketTrack
from relay.media.opus import OpusDecoder


class Recorder:
    """What ``PacketTrack.push`` hands the bound direct sender: (payload, pts), and whether it left."""

    def __init__(self, up: bool = True) -> None:
        self.sent: list[tuple[bytes, int]] = []
        self.up = up

    def send(self, payload: bytes, pts: int) -> bool:
        self.sent.append((payload, pts))
        return self.up


async def test_the_track_is_never_pulled_and_counts_unsent_and_dropped_frames():
    enc = DownlinkEncoder(PCMA)
    track = PacketTrack(enc)
    track.push(b"\x55" * 160)  # DTLS not up: no direct sender bound yet
    assert track.unsent == 1 and track.dropped == 0
    gone = Recorder(up=False)
    track.bind(gone)
    track.push(b"\x55" * 160)
    assert track.dropped == 1 and gone.sent == [(b"\x55" * 160, 160)]
    with pytest.raises(MediaStreamError):  # aiortc's sender task, were it to run, ends at once
        await track.recv()
    track.stop()
    track.push(b"\x55" * 160)
    assert track.direct is None and gone.sent == [(b"\x55" * 160, 160)]


def test_g711_is_passed_through_untouched_and_checked():
    enc = DownlinkEncoder(PCMA)
    frame = bytes(range(160))
    assert enc.encode(frame) is frame
    assert enc.encode(None) == b"\xd5" * 160
    with pytest.raises(ValueError):
        enc.encode(b"\x00" * 10)


def test_opus_silence_is_cached_and_decodes_to_silence():
    a, b = DownlinkEncoder(OPUS), DownlinkEncoder(OPUS)
    assert a.encode(None) is b.encode(None)
    pcm = OpusDecoder(24000).decode(a.encode(None))
    assert len(pcm) == 960 and max(abs(int.from_bytes(pcm[i:i + 2], "little", signed=True))
                                   for i in range(0, len(pcm), 2)) < 50


async def test_skip_advances_the_rtp_clock_without_a_packet():
    enc = DownlinkEncoder(OPUS)
    track = PacketTrack(enc)
    direct = Recorder()
    track.bind(direct)
    track.push(enc.encode(None))
    track.skip()
    track.skip()
    track.push(enc.encode(None))
    assert [pts for _, pts in direct.sent] == [0, 3 * 960]  # 20 ms of the 48 kHz RTP clock a frame


def test_inaudible_opus_frames_are_sent_as_the_cached_silence_not_encoded():
    import numpy as np

    from relay.media.downlink import QUIET_HANGOVER, QUIET_PEAK

    enc = DownlinkEncoder(OPUS)
    silence = DownlinkEncoder(OPUS).encode(None)  # the cached payload
    rng = np.random.default_rng(3)
    quiet = rng.integers(-QUIET_PEAK, QUIET_PEAK + 1, 480).astype("<i2").tobytes()
    loud = rng.integers(-3000, 3000, 480).astype("<i2").tobytes()
    # a fresh encoder has nothing to drain: quiet frames are the cached payload at once
    assert enc.encode(quiet) is silence and enc.quiet_frames == 1
    enc.encode(loud)
    # after audio the first QUIET_HANGOVER quiet frames are encoded (fade-out, drain), the rest cached
    hang = [enc.encode(quiet) for _ in range(QUIET_HANGOVER)]
    assert all(p is not silence for p in hang) and enc.quiet_frames == 1
    assert enc.encode(quiet) is silence and enc.quiet_frames == 2
    just_audible = np.zeros(480, "<i2")
    just_audible[100] = -(QUIET_PEAK + 1)
    assert enc.encode(just_audible.tobytes()) is not silence and enc.quiet_frames == 2
    # speech after quiet frames is still encoded and decodes to a tone at its level
    t = np.arange(480 * 10) / 24000
    tone = (6000 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()
    dec = OpusDecoder(24000)
    for _ in range(QUIET_HANGOVER + 2):
        dec.decode(enc.encode(quiet))
    out = np.frombuffer(b"".join(dec.decode(enc.encode(tone[i:i + 960])) for i in range(0, len(tone), 960)), "<i2")
    assert enc.quiet_frames == 4
    assert 0.7 * 6000 / np.sqrt(2) < np.sqrt(np.mean(out[2400:].astype(float) ** 2)) < 1.3 * 6000 / np.sqrt(2)


def test_the_quiet_gate_keeps_speech_quality():
    """On espeak speech with pauses, the gated stream's log-spectral distance to the input stays
    within 0.05 dB of encoding every frame (the codec's own error is ~2.4 dB), and most pause
    frames are skipped."""
    import numpy as np

    from bench import opus_quality as oq

    pcm = oq.speech_24k()
    raw = pcm.astype("<i2").tobytes()

    def run(gate: bool) -> tuple[float, int]:
        enc, dec = DownlinkEncoder(OPUS, complexity=4), OpusDecoder(24000)
        encode = enc.encode if gate else enc._encoder.encode
        out = b"".join(dec.decode(encode(raw[i:i + 960])) for i in range(0, len(raw), 960))
        return oq.lsd_db(pcm, np.frombuffer(out, "<i2")), enc.quiet_frames

    (plain, _), (gated, skipped) = run(False), run(True)
    assert gated - plain < 0.05
    assert skipped > 0.1 * len(raw) / 960


def test_g711_frames_are_never_gated():
    enc = DownlinkEncoder(PCMA)
    frame = b"\xd5" * 159 + b"\xd4"
    assert enc.encode(frame) is frame and enc.quiet_frames == 0


def _tone(ms: int, hz: float, amp: int = 16000) -> bytes:
    import numpy as np

    t = np.arange(24 * ms) / 24000
    return (amp * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()


def _energy(pcm16: bytes) -> float:
    import numpy as np

    x = np.frombuffer(pcm16, "<i2").astype(np.float64)
    return float(np.sum(x * x))


def test_after_audio_silence_drains_the_live_encoder_then_resets_it():
    """Silence after audio: QUIET_HANGOVER frames of zeros through the live encoder (the decoder
    fades out, the lookahead's sound leaves), then the cached payload and a reset; DTX may skip
    packets only once the encoder is settled."""
    from relay.media.downlink import QUIET_HANGOVER

    enc = DownlinkEncoder(OPUS)
    assert enc.settled and enc.prepare(None) is enc.encode(None)
    assert enc.prepare(_tone(20, 300)) is None and not enc.settled
    drain = [enc.prepare(None) for _ in range(QUIET_HANGOVER)]
    assert drain == [None] * QUIET_HANGOVER and not enc.settled and enc.resets == 0
    assert enc.prepare(None) is enc.encode(None) and enc.settled and enc.resets == 1
    assert enc.prepare(None) is enc.encode(None) and enc.resets == 1  # idle stays cheap: no encode, no reset


def test_a_reset_asked_while_the_encode_thread_holds_the_encoder_waits_for_the_job():
    from relay.media.downlink import QUIET_HANGOVER

    enc = DownlinkEncoder(OPUS)
    enc.prepare(_tone(20, 300))
    for _ in range(QUIET_HANGOVER):
        enc.prepare(None)
    job = enc.job(None, lambda payload: None)
    assert job.pcm16 == bytes(960)  # a frame of the drain is zeros
    assert enc.prepare(None) is enc.encode(None) and enc._reset_pending
    enc.job_finished()
    assert not enc._reset_pending and not enc.busy


@pytest.mark.parametrize("hz", [300.0, 1000.0, 3000.0])
def test_a_burst_after_idle_decodes_at_the_level_of_a_fresh_encode(hz):
    """The device's decoder and relay's encoder stay in step across idle: a 40 ms burst after a
    loud one and 1.5 s of cached silence decodes as loud as the same burst through a fresh
    encoder and decoder (before the drain + reset: 13-23 dB quieter, the encoder's state frozen
    at the previous burst), and the silence carries nothing of the earlier burst."""
    import numpy as np

    burst = _tone(40, hz)
    fresh_enc, fresh_dec = DownlinkEncoder(OPUS, complexity=4), OpusDecoder(24000)
    reference = _energy(b"".join(fresh_dec.decode(fresh_enc.encode(f))
                                 for f in (burst[:960], burst[960:], None, None, None)))
    enc, dec = DownlinkEncoder(OPUS, complexity=4), OpusDecoder(24000)
    for f in (burst[:960], burst[960:]):
        dec.decode(enc.encode(f))
    gap = b"".join(dec.decode(enc.encode(None)) for _ in range(75))
    after = _energy(b"".join(dec.decode(enc.encode(f)) for f in (burst[:960], burst[960:], None, None, None)))
    assert abs(10 * np.log10(after / reference)) < 0.1
    tail = np.frombuffer(gap[960 * 3:], "<i2").astype(np.float64)  # from 60 ms after the burst
    assert 20 * np.log10(max(1e-9, np.sqrt(np.mean(tail * tail)) / 32768)) < -60
