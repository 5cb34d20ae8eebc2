"""libespeak-ng through ctypes: synchronous synthesis with real word events.

This module is the only one that knows the espeak-ng C API. It is **not
thread-safe** (libespeak-ng keeps global state): one process may drive one
synthesis at a time. relay runs it inside dedicated worker processes
(``relay.tts.pool``), each holding its own copy of the library, so calls are
serialised per process by construction and never touch the event loop.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import dataclass

# espeak_AUDIO_OUTPUT
_AUDIO_OUTPUT_SYNCHRONOUS = 2
# espeak_EVENT_TYPE
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_END = 5
_EVENT_MSG_TERMINATED = 6
# espeak_PARAMETER
_RATE, _VOLUME, _PITCH, _RANGE, _PUNCTUATION, _CAPITALS, _WORDGAP = 1, 2, 3, 4, 5, 6, 7
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_EE_OK = 0

LIBRARY_NAMES = ("libespeak-ng.so.1", "libespeak-ng.so", "espeak-ng")


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class EspeakError(RuntimeError):
    """libespeak-ng is missing or refused a call."""


@dataclass(frozen=True)
class WordEvent:
    """One espeakEVENT_WORD: where a word starts in the text and in the audio."""

    text_position: int  # 0-based character offset into the synthesised text
    length_chars: int
    start_sample: int   # sample offset in the output at ``rate_hz``


@dataclass(frozen=True)
class RawSpeech:
    pcm16: bytes
    rate_hz: int
    words: list[WordEvent]


_SHARED: Espeak | None = None


class Espeak:
    """The initialised libespeak-ng of this process. Use ``Espeak.shared()``: the library has one
    global synth callback, so a second instance would steal the first one's audio."""

    @classmethod
    def shared(cls) -> Espeak:
        global _SHARED
        if _SHARED is None:
            _SHARED = cls()
        return _SHARED

    def __init__(self, data_path: str | None = None) -> None:
        if _SHARED is not None:
            raise EspeakError("libespeak-ng is already initialised in this process; use Espeak.shared()")
        lib = None
        for name in LIBRARY_NAMES:
            path = ctypes.util.find_library(name) if "/" not in name and not name.endswith(".1") else name
            try:
                lib = ctypes.CDLL(path or name)
                break
            except OSError:
                continue
        if lib is None:
            raise EspeakError("libespeak-ng not found (Debian: apt install libespeak-ng1)")
        self._lib = lib
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_Synchronize.restype = ctypes.c_int
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0,
                                     data_path.encode() if data_path else None, 0)
        if rate <= 0:
            raise EspeakError(f"espeak_Initialize failed ({rate})")
        self.rate_hz = int(rate)
        self._chunks: list[bytes] = []
        self._words: list[tuple[int, int, int]] = []
        self._samples = 0
        # keep a reference: the C library holds the pointer
        self._callback = _SynthCallback(self._on_synth)
        lib.espeak_SetSynthCallback(self._callback)

    def _on_synth(self, wav, numsamples, events) -> int:  # noqa: ANN001 - ctypes signature
        i = 0
        while True:
            ev = events[i]
            if ev.type == _EVENT_LIST_TERMINATED:
                break
            if ev.type == _EVENT_WORD:
                # ev.sample is the absolute sample index of the word start; audio_position (ms) is coarser.
                self._words.append((ev.text_position, ev.length, ev.sample))
            i += 1
        if numsamples > 0 and wav:
            self._chunks.append(ctypes.string_at(wav, numsamples * 2))
            self._samples += numsamples
        return 0  # 0 = continue

    def synthesise(self, text: str, *, voice: str = "en", rate_wpm: int = 175, pitch: int = 50,
                   pitch_range: int = 50, volume: int = 100, word_gap_10ms: int = 0) -> RawSpeech:
        """Speak ``text`` (plain text, UTF-8) and return 16-bit mono PCM plus the word events."""
        lib = self._lib
        if lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
            raise EspeakError(f"unknown espeak voice {voice!r}")
        for param, value in ((_RATE, rate_wpm), (_PITCH, pitch), (_RANGE, pitch_range), (_VOLUME, volume),
                             (_WORDGAP, word_gap_10ms)):
            if lib.espeak_SetParameter(param, int(value), 0) != _EE_OK:
                raise EspeakError(f"espeak_SetParameter({param}, {value}) failed")
        self._chunks, self._words, self._samples = [], [], 0
        data = text.encode("utf-8") + b"\0"
        buf = ctypes.create_string_buffer(data)
        err = lib.espeak_Synth(buf, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if err != _EE_OK:
            raise EspeakError(f"espeak_Synth failed ({err})")
        lib.espeak_Synchronize()
        words = [WordEvent(max(0, pos - 1), length, sample) for pos, length, sample in self._words if length > 0]
        pcm = b"".join(self._chunks)
        self._chunks = []
        return RawSpeech(pcm16=pcm, rate_hz=self.rate_hz, words=words)
