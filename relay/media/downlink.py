"""Downlink: the encoder and the track the media clock feeds, one payload per 20 ms tick.

relay's calls send through the direct RTP path (``install_sender`` ->
``relay.media.rtp_out``): ``PacketTrack.push(payload)`` builds, protects and queues
the RTP packet synchronously (``relay._fast.RtpStream``), and aiortc's sender task
never runs for audio: the track is never pulled.

``DownlinkEncoder`` turns the bridge's 20 ms of upstream-format audio into the
RTP payload: Opus at 24 kHz mono (RTP clock 48 kHz), or G.711 bytes untouched. With ``fec``
(the device's offer asks for ``useinbandfec=1``) each Opus packet also carries the previous
frame at a low rate (in-band FEC, tuned for 10 % loss), so the device recovers a lost packet.
Idle frames reuse one cached encoded silence payload, and so do frames the assistant
sends that are inaudible (peak <= ``QUIET_PEAK``, about -66 dBFS: the near-silence in
pauses and between sentences): encoding those cost a full libopus call each (~130 us
at complexity 4, the largest item of relay's CPU) for a frame that decodes to the same
silence. The check is one pass of ``relay._fast.peak_abs`` (~1 us).

The encoder and the device's decoder stay in step. An Opus encoder's state is part of the
stream: its next frame is coded against its own history (energies, pitch, the ~4 ms lookahead
it still holds), and the device decodes it against the history the device decoded. While the
cached silence plays, the device's decoder follows that silence; a live encoder left frozen at
the last loud frame would code the next sound against the wrong past (measured through a call:
a 40 ms tone burst after 1.5 s of idle decoded 13-23 dB too quiet, and the held lookahead came
out later, in the next response's silence). So after audio the live encoder first *drains*:
the next ``QUIET_HANGOVER`` silent or quiet frames still go through it (silence as zeros) --
the decoder fades out cleanly and the lookahead's last milliseconds of sound leave now -- then
it is *reset* (``OPUS_RESET_STATE``, ~1 us) as the cached silence takes over: the next sound
starts from a fresh encoder, which is what a decoder that has been decoding silence expects
(within 0.1 dB of the level sent, tests/e2e/test_fidelity.py). ``settled`` says the drain is
done; DTX (``relay.media.call``) skips packets only then. G.711 has no state.

Encoding off the event loop: ``prepare(frame)`` runs on the loop and returns the payload
when no libopus call is needed (silence, a gated quiet frame, G.711), else ``None``; then
``job(frame, done)`` wraps the frame in an ``EncodeJob`` the media clock encodes, with the
other calls' jobs of the same tick, on its one encode thread (``encode_jobs``), and ``done``
gets the payload back on the loop. An encoder is used by that one thread only while a job
of it is in flight, and ``close()`` during that time is deferred until the job is finished
(``job_finished``), so a call ending mid-batch never frees an encoder the thread is using.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import NoReturn

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from relay._fast import encode_batch, peak_abs
from relay.call.metrics import MediaMetrics
from relay.media import rtp_out
from relay.media.codecs import PCM16_RATE_HZ, AudioCodec
from relay.media.opus import ENCODE_FN, OpusEncoder, OpusError, error_text
from relay.media.rtp_out import DirectRtpSender
from relay.media.uplink import G711_SILENCE

FRAME_MS = 20
QUIET_PEAK = 16  # |sample| <= 16 of 32767 (-66 dBFS): sent as the cached silence payload, not encoded
# after audio, this many silent or quiet frames still go through the live encoder (the drain; then
# it is reset): cutting straight from speech to the cached payload truncates the decoder's fade-out
# and leaves the lookahead's sound in the encoder (log-spectral distance +0.14 dB on espeak speech
# without; with 2 frames +0.01 dB, and 84 % of the quiet frames are still skipped)
QUIET_HANGOVER = 2


class DownlinkEncoder:
    """20 ms of upstream-format audio (or ``None`` for silence) -> one RTP payload."""

    def __init__(self, codec: AudioCodec, *, complexity: int = 5, bitrate_bps: int = 32000,
                 max_playback_hz: int | None = None, fec: bool = False) -> None:
        self.codec = codec
        self._g711 = codec.is_g711
        if codec.is_g711:
            self._encoder = None
            self._silence = bytes([G711_SILENCE[codec.name]]) * codec.frame_bytes
            self._zeros = b""
        else:
            self._encoder = OpusEncoder(PCM16_RATE_HZ, frame_ms=FRAME_MS, bitrate_bps=bitrate_bps,
                                        complexity=complexity, fec=fec, max_playback_hz=max_playback_hz)
            # Encoded with a throwaway encoder so the live one's state is untouched.
            self._silence = _opus_silence(complexity, bitrate_bps)
            self._zeros = bytes(self._encoder.frame_bytes)
        self.ticks_per_frame = codec.clock_rate_hz * FRAME_MS // 1000
        self.quiet_frames = 0  # inaudible Opus frames sent as the cached silence payload
        self.resets = 0  # times the live encoder went back to its initial state (after a drain)
        self._quiet_run = 0  # silent/quiet frames since the last audible one (while draining)
        self._dirty = False  # the live encoder has history the device's decoder will not share once silence plays
        self._reset_pending = False
        self._jobs_in_flight = 0  # EncodeJobs of this encoder handed to the encode thread, not finished
        self._close_pending = False
        self.complexity = complexity  # the live Opus encoder's (set_complexity: the clock's adaptive level)

    def encode(self, frame: bytes | None) -> bytes:
        """The payload of ``frame``, encoding it here if needed (``prepare`` + ``encode_live``)."""
        payload = self.prepare(frame)
        return self.encode_live(self._zeros if frame is None else frame) if payload is None else payload

    @property
    def settled(self) -> bool:
        """The live encoder holds no history (fresh or reset): skipping packets (DTX) is safe."""
        return not self._dirty

    def prepare(self, frame: bytes | None) -> bytes | None:
        """On the loop: the payload when no live encode is needed (silence, a quiet frame after the
        drain, G.711), else ``None``: the frame -- zeros for ``None`` while draining -- needs
        ``encode_live`` (``job``). Runs the drain and the reset (module doc)."""
        if self._g711:
            if frame is None:
                return self._silence
            if len(frame) != self.codec.frame_bytes:
                raise ValueError(f"expected {self.codec.frame_bytes} bytes of G.711, got {len(frame)}")
            return frame
        if frame is not None and peak_abs(frame) > QUIET_PEAK:
            self._quiet_run = 0
            self._dirty = True
            return None
        if self._dirty:  # silence or a quiet frame after audio: drain, then reset
            self._quiet_run += 1
            if self._quiet_run <= QUIET_HANGOVER:
                return None
            self._reset_live()
        if frame is not None:
            self.quiet_frames += 1
        return self._silence

    def _reset_live(self) -> None:
        self._dirty = False
        self._quiet_run = 0
        self.resets += 1
        if self._jobs_in_flight:  # the encode thread is using it: job_finished() resets it
            self._reset_pending = True
        elif self._encoder is not None:
            self._encoder.reset()

    def encode_live(self, frame: bytes) -> bytes:
        """One libopus encode (any thread, but one at a time per encoder; the GIL is released)."""
        encoder = self._encoder
        if encoder is None:
            raise RuntimeError("this encoder is closed or has no live codec")
        return encoder.encode(frame)

    def set_complexity(self, complexity: int) -> None:
        """The live encoder's complexity from the next frame on. On the loop, only while the encode
        thread is not running a batch with this encoder (the clock calls it on a tick's jobs before
        handing them over: its previous batch is back by then)."""
        if complexity == self.complexity:
            return
        self.complexity = complexity
        if self._encoder is not None:
            self._encoder.set_complexity(complexity)

    def job(self, frame: bytes | None, done: Callable[[bytes], None]) -> EncodeJob:
        """An ``EncodeJob`` for ``frame`` (after ``prepare`` returned ``None``; ``None``: a frame of
        the drain, zeros); marks the encoder busy."""
        self._jobs_in_flight += 1
        return EncodeJob(self, self._zeros if frame is None else frame, done)

    def job_finished(self) -> None:
        """On the loop, after a job of this encoder ran: a ``close()`` or reset deferred meanwhile
        happens now."""
        self._jobs_in_flight -= 1
        if self._jobs_in_flight:
            return
        if self._close_pending:
            self.close()
        elif self._reset_pending:
            self._reset_pending = False
            if self._encoder is not None:
                self._encoder.reset()

    @property
    def busy(self) -> bool:
        return self._jobs_in_flight > 0

    def close(self) -> None:
        if self._jobs_in_flight:
            self._close_pending = True  # the encode thread is using it: job_finished() closes it
            return
        self._close_pending = False
        encoder, self._encoder = self._encoder, None
        if encoder is not None:
            encoder.close()


class EncodeJob:
    """One frame for the encode thread: ``payload`` or ``error`` is set there, ``done`` runs on the loop."""

    __slots__ = ("done", "encoder", "error", "payload", "pcm16")

    def __init__(self, encoder: DownlinkEncoder, pcm16: bytes, done: Callable[[bytes], None]) -> None:
        self.encoder = encoder
        self.pcm16 = pcm16
        self.done = done
        self.payload: bytes | None = None
        self.error: Exception | None = None


def encode_jobs(jobs: list[EncodeJob]) -> list[EncodeJob]:
    """Run every job's libopus encode (on the clock's encode thread, or inline for tiny batches).

    All frames go to ``relay._fast.encode_batch``: one GIL release for the whole batch. (Through
    ctypes, each encode would re-take the GIL on return, which waits up to the 5 ms switch
    interval whenever the loop thread is busy in Python: measured, a 50-frame batch then took
    37-270 ms instead of 5-6 ms.) A failing encode is recorded on its job; the others still run.
    """
    if not jobs:
        return jobs
    states: list[int] = []
    frames: list[bytes] = []
    samples = 0
    for job in jobs:
        encoder = job.encoder._encoder
        states.append(encoder.state if encoder is not None else 0)
        frames.append(job.pcm16)
        if encoder is not None:
            samples = encoder.samples_per_frame
    if samples == 0:  # every encoder of the batch is closed
        for job in jobs:
            job.error = RuntimeError("this encoder is closed")
        return jobs
    try:
        results = encode_batch(ENCODE_FN, states, frames, samples)
    except Exception as exc:  # recorded on every job; the clock ends those calls
        for job in jobs:
            job.error = exc
        return jobs
    for job, result in zip(jobs, results, strict=True):
        if isinstance(result, bytes):
            job.payload = result
        else:
            job.error = OpusError(f"opus_encode: {error_text(result)}")
    return jobs


_SILENCE_CACHE: dict[tuple[int, int], bytes] = {}


def _opus_silence(complexity: int, bitrate_bps: int) -> bytes:
    key = (complexity, bitrate_bps)
    if key not in _SILENCE_CACHE:
        enc = OpusEncoder(PCM16_RATE_HZ, frame_ms=FRAME_MS, bitrate_bps=bitrate_bps, complexity=complexity)
        zero = bytes(enc.frame_bytes)
        payload = b""
        for _ in range(3):  # let the encoder settle on a steady silent frame
            payload = enc.encode(zero)
        enc.close()
        _SILENCE_CACHE[key] = payload
    return _SILENCE_CACHE[key]


class PacketTrack(MediaStreamTrack):
    """An audio track fed by the media clock: ``push(payload)`` once per tick, ``skip()`` for DTX.

    ``push`` sends the RTP packet right away through the bound
    ``relay.media.rtp_out.DirectRtpSender`` (``install_sender``; bound once DTLS is up: frames
    pushed before that count as ``unsent``, frames that cannot leave afterwards -- the connection
    is gone -- as ``dropped``). aiortc's sender never pulls from it: ``recv()`` raises.
    """

    kind = "audio"

    def __init__(self, encoder: DownlinkEncoder, *, metrics: MediaMetrics | None = None) -> None:
        super().__init__()
        self._metrics = metrics
        self._pts = 0
        self._ticks_per_frame = encoder.ticks_per_frame
        self._direct: DirectRtpSender | None = None
        self._ended: asyncio.Future[None] | None = None
        self.dropped = 0
        self.unsent = 0  # frames pushed before DTLS was up (the RTP timestamp advanced)

    def push(self, payload: bytes) -> None:
        if self.readyState != "live":
            return
        pts = self._pts
        self._pts = pts + self._ticks_per_frame
        direct = self._direct
        if direct is None:
            self.unsent += 1  # DTLS not up yet: nothing to send on (not a drop)
        elif direct.send(payload, pts):
            if self._metrics is not None:
                self._metrics.rtp_out_packets += 1
        else:
            self.dropped += 1  # the connection is gone

    def skip(self) -> None:
        """No packet this tick (DTX): the RTP timestamp still advances by one frame."""
        self._pts += self._ticks_per_frame

    # -- the direct send path (relay.media.rtp_out) ----------------------------
    def bind(self, direct: DirectRtpSender | None) -> None:
        self._direct = direct

    @property
    def direct(self) -> DirectRtpSender | None:
        return self._direct

    async def wait_ended(self) -> None:
        if self.readyState != "live":
            return
        if self._ended is None:
            self._ended = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._ended)

    async def recv(self) -> NoReturn:  # type: ignore[override]
        """Never called: ``install_sender`` replaces the sender's RTP task that would call it."""
        raise MediaStreamError("PacketTrack is sent by relay's direct RTP path (install_sender), not pulled")

    def stop(self) -> None:
        super().stop()
        self._direct = None
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(None)


def install_sender(sender: object) -> None:
    """Set up an audio ``RTCRtpSender`` whose track is a ``PacketTrack``: no RTP retransmission
    history (saves ~80 KB per call) and the direct send path (``relay.media.rtp_out``: aiortc's RTP
    task does not run, its RTCP task does). Every private aiortc attribute involved is touched in
    ``relay.media.rtp_out`` only (rows of ``relay.media.compat.TABLE``, checked at start-up)."""
    track = sender.track  # type: ignore[attr-defined]
    if not isinstance(track, PacketTrack):
        raise TypeError("install_sender: the sender's track must be a PacketTrack")
    rtp_out.install(sender, track)
