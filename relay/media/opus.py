"""libopus through ctypes: mono encode/decode at the upstream's rate, no resampling step.

FFmpeg's libopus wrapper (what PyAV exposes) always decodes at 48 kHz stereo and
wants an ``AudioFrame`` per encode; libopus itself decodes straight to 24 kHz
mono and encodes from a plain int16 buffer. Calling it directly costs one C call
per 20 ms frame (a few microseconds of ctypes overhead) and no Python objects
beyond the output ``bytes``. The library is the one bundled with PyAV's wheel
(always present, since ``av`` is a dependency), else the system's libopus.

RFC 7587: the RTP clock of Opus is 48 kHz whatever rate the codec runs at, so
callers advance RTP timestamps by 960 per 20 ms frame.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os

import av

OPUS_OK = 0
OPUS_APPLICATION_VOIP = 2048
OPUS_SET_BITRATE_REQUEST = 4002
OPUS_SET_COMPLEXITY_REQUEST = 4010
OPUS_GET_COMPLEXITY_REQUEST = 4011
OPUS_SET_INBAND_FEC_REQUEST = 4012
OPUS_SET_PACKET_LOSS_PERC_REQUEST = 4014
OPUS_SET_SIGNAL_REQUEST = 4024
OPUS_SIGNAL_VOICE = 3001
OPUS_SET_MAX_BANDWIDTH_REQUEST = 4004
OPUS_RESET_STATE = 4028
# audio bandwidth (Hz of audio, i.e. half the playback rate) -> libopus bandwidth constant
_BANDWIDTHS = ((4000, 1101), (6000, 1102), (8000, 1103), (12000, 1104), (20000, 1105))
OPUS_RATES_HZ = (8000, 12000, 16000, 24000, 48000)
MAX_PACKET_BYTES = 1275  # largest Opus frame (RFC 6716)
MAX_FRAME_MS = 120


class OpusError(Exception):
    """libopus returned an error code."""


def _load() -> ctypes.CDLL:
    libs_dir = os.path.join(os.path.dirname(os.path.dirname(av.__file__)), "av.libs")
    candidates = sorted(glob.glob(os.path.join(libs_dir, "libopus*.so*")))
    system = ctypes.util.find_library("opus")
    if system:
        candidates.append(system)
    for path in candidates:
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    raise ImportError("libopus not found (neither in PyAV's wheel nor on the system)")


_lib = _load()
_lib.opus_encoder_create.restype = ctypes.c_void_p
_lib.opus_encoder_create.argtypes = [ctypes.c_int32, ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
_lib.opus_encoder_destroy.argtypes = [ctypes.c_void_p]
_lib.opus_encoder_destroy.restype = None
_lib.opus_encode.restype = ctypes.c_int32
_lib.opus_encode.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int32]
_lib.opus_encoder_ctl.restype = ctypes.c_int
_lib.opus_decoder_create.restype = ctypes.c_void_p
_lib.opus_decoder_create.argtypes = [ctypes.c_int32, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
_lib.opus_decoder_destroy.argtypes = [ctypes.c_void_p]
_lib.opus_decoder_destroy.restype = None
_lib.opus_decode.restype = ctypes.c_int
_lib.opus_decode.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int32, ctypes.c_char_p, ctypes.c_int,
                             ctypes.c_int]
_lib.opus_strerror.restype = ctypes.c_char_p
_lib.opus_strerror.argtypes = [ctypes.c_int]
# the address of opus_encode, for relay._fast.encode_batch (a batch of encodes under one GIL release)
ENCODE_FN: int = ctypes.cast(_lib.opus_encode, ctypes.c_void_p).value or 0
# the address of opus_decode, for relay._fast.UplinkAssembler (the uplink's decodes without ctypes)
DECODE_FN: int = ctypes.cast(_lib.opus_decode, ctypes.c_void_p).value or 0


def error_text(code: int) -> str:
    """libopus' message for a negative error code."""
    return _lib.opus_strerror(code).decode()


def _check(code: int, what: str) -> int:
    if code < 0:
        raise OpusError(f"{what}: {_lib.opus_strerror(code).decode()}")
    return code


class OpusEncoder:
    """Mono voice encoder: ``encode(pcm16) -> bytes`` for exactly one frame of ``frame_ms``."""

    def __init__(self, rate_hz: int = 24000, *, frame_ms: int = 20, bitrate_bps: int = 32000,
                 complexity: int = 5, fec: bool = False, fec_loss_perc: int = 10,
                 max_playback_hz: int | None = None) -> None:
        self._enc = None
        if rate_hz not in OPUS_RATES_HZ:
            raise ValueError(f"Opus cannot run at {rate_hz} Hz")
        if frame_ms not in (10, 20, 40, 60):
            raise ValueError(f"unsupported Opus frame length {frame_ms} ms")
        if not 0 <= complexity <= 10:
            raise ValueError("Opus complexity must be 0..10")
        err = ctypes.c_int(0)
        self._enc = _lib.opus_encoder_create(rate_hz, 1, OPUS_APPLICATION_VOIP, ctypes.byref(err))
        _check(err.value, "opus_encoder_create")
        self.rate_hz = rate_hz
        self.samples_per_frame = rate_hz * frame_ms // 1000
        self.frame_bytes = self.samples_per_frame * 2
        c_int = ctypes.c_int
        _check(_lib.opus_encoder_ctl(ctypes.c_void_p(self._enc), OPUS_SET_BITRATE_REQUEST, c_int(bitrate_bps)), "bitrate")
        _check(_lib.opus_encoder_ctl(ctypes.c_void_p(self._enc), OPUS_SET_COMPLEXITY_REQUEST, c_int(complexity)), "complexity")
        _check(_lib.opus_encoder_ctl(ctypes.c_void_p(self._enc), OPUS_SET_SIGNAL_REQUEST, c_int(OPUS_SIGNAL_VOICE)), "signal")
        _check(_lib.opus_encoder_ctl(ctypes.c_void_p(self._enc), OPUS_SET_INBAND_FEC_REQUEST, c_int(int(fec))), "fec")
        if fec:  # libopus adds in-band FEC (LBRR) only for an expected loss above 0
            _check(_lib.opus_encoder_ctl(ctypes.c_void_p(self._enc), OPUS_SET_PACKET_LOSS_PERC_REQUEST,
                                         c_int(fec_loss_perc)), "packet loss")
        if max_playback_hz:  # the device plays back at most this rate (SDP maxplaybackrate): spend no bits above
            bandwidth = next((bw for hz, bw in _BANDWIDTHS if max_playback_hz // 2 <= hz), 1105)
            _check(_lib.opus_encoder_ctl(ctypes.c_void_p(self._enc), OPUS_SET_MAX_BANDWIDTH_REQUEST,
                                         c_int(bandwidth)), "max bandwidth")
        self._out = ctypes.create_string_buffer(MAX_PACKET_BYTES)

    @property
    def state(self) -> int:
        """The ``OpusEncoder*`` address (0 once closed), for ``relay._fast.encode_batch``."""
        return self._enc or 0

    @property
    def complexity(self) -> int:
        """The encoder's complexity as libopus reports it (``OPUS_GET_COMPLEXITY``)."""
        value = ctypes.c_int(-1)
        _check(_lib.opus_encoder_ctl(ctypes.c_void_p(self._enc), OPUS_GET_COMPLEXITY_REQUEST, ctypes.byref(value)),
               "get complexity")
        return value.value

    def set_complexity(self, complexity: int) -> None:
        """``OPUS_SET_COMPLEXITY`` between frames (the stream stays decodable; never while another
        thread encodes with this encoder)."""
        if not 0 <= complexity <= 10:
            raise ValueError("Opus complexity must be 0..10")
        if self._enc:
            _check(_lib.opus_encoder_ctl(ctypes.c_void_p(self._enc), OPUS_SET_COMPLEXITY_REQUEST,
                                         ctypes.c_int(complexity)), "complexity")

    def reset(self) -> None:
        """Back to the state of a fresh encoder (``OPUS_RESET_STATE``: no history, no lookahead), the
        state a decoder that has been decoding silence expects the next frame from. ~1 us."""
        if self._enc:
            _check(_lib.opus_encoder_ctl(ctypes.c_void_p(self._enc), OPUS_RESET_STATE), "reset")

    def encode(self, pcm16: bytes) -> bytes:
        if len(pcm16) != self.frame_bytes:
            raise ValueError(f"expected {self.frame_bytes} bytes of PCM16, got {len(pcm16)}")
        n = _lib.opus_encode(self._enc, pcm16, self.samples_per_frame, self._out, MAX_PACKET_BYTES)
        _check(n, "opus_encode")
        return self._out.raw[:n]

    def close(self) -> None:
        if self._enc:
            _lib.opus_encoder_destroy(self._enc)
            self._enc = None

    def __del__(self) -> None:
        self.close()


class OpusDecoder:
    """Mono decoder straight to ``rate_hz``: ``decode(payload) -> pcm16``; ``conceal(ms)`` for a lost frame."""

    def __init__(self, rate_hz: int = 24000) -> None:
        self._dec = None
        if rate_hz not in OPUS_RATES_HZ:
            raise ValueError(f"Opus cannot run at {rate_hz} Hz")
        err = ctypes.c_int(0)
        self._dec = _lib.opus_decoder_create(rate_hz, 1, ctypes.byref(err))
        _check(err.value, "opus_decoder_create")
        self.rate_hz = rate_hz
        self._max_samples = rate_hz * MAX_FRAME_MS // 1000
        self._out = ctypes.create_string_buffer(self._max_samples * 2)

    @property
    def state(self) -> int:
        """The ``OpusDecoder*`` address (0 once closed), for ``relay._fast.UplinkAssembler``."""
        return self._dec or 0

    def decode(self, payload: bytes) -> bytes:
        """Decode one Opus packet; raises ``OpusError`` on a corrupt one (the caller skips it)."""
        if not payload:
            return b""
        n = _lib.opus_decode(self._dec, payload, len(payload), self._out, self._max_samples, 0)
        _check(n, "opus_decode")
        return self._out.raw[: n * 2]

    def decode_fec(self, next_payload: bytes, duration_ms: int = 20) -> bytes:
        """The lost frame just before ``next_payload``, from the in-band FEC that packet carries
        (``decode_fec=1``); libopus conceals (PLC) when it carries none. Then decode ``next_payload``
        itself as usual."""
        samples = self.rate_hz * duration_ms // 1000
        n = _lib.opus_decode(self._dec, next_payload, len(next_payload), self._out, samples, 1)
        _check(n, "opus_decode(fec)")
        return self._out.raw[: n * 2]

    def conceal(self, duration_ms: int = 20) -> bytes:
        """Packet-loss concealment for one missing frame of ``duration_ms``."""
        samples = self.rate_hz * duration_ms // 1000
        n = _lib.opus_decode(self._dec, None, 0, self._out, samples, 0)
        _check(n, "opus_decode(plc)")
        return self._out.raw[: n * 2]

    def close(self) -> None:
        if self._dec:
            _lib.opus_decoder_destroy(self._dec)
            self._dec = None

    def __del__(self) -> None:
        self.close()
