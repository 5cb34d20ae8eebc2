"""One libopus call per frame for a whole batch (pure-Python twin of ``opusbatch.pyx``).

``encode_batch(encode_fn, states, frames, frame_samples) -> list[bytes | int]``

- ``encode_fn``: the address of libopus' ``opus_encode`` (``relay.media.opus.ENCODE_FN``);
- ``states``: ``OpusEncoder*`` addresses (``0`` / ``None`` for a closed encoder);
- ``frames``: one ``bytes`` of ``frame_samples`` mono PCM16 samples per state;
- result, per frame: the encoded packet (``bytes``, at most 1275), or libopus' negative
  error code (``-1``, ``OPUS_BAD_ARG``, for a closed encoder or a frame of the wrong type or
  length, without calling libopus).

The compiled kernel makes every call under one GIL release; this twin calls through ctypes
(which releases and re-takes the GIL around each call).
"""

from __future__ import annotations

import ctypes

MAX_PACKET_BYTES = 1275
OPUS_BAD_ARG = -1

_PROTO = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_int32)
_functions: dict[int, ctypes._CFuncPtr] = {}  # type: ignore[name-defined]


def encode_batch(encode_fn: int, states: list[int | None], frames: list[bytes], frame_samples: int) -> list[bytes | int]:
    if not isinstance(states, list) or not isinstance(frames, list):
        raise TypeError("states and frames must be lists")
    if len(frames) != len(states):
        raise ValueError("states and frames differ in length")
    if frame_samples <= 0:
        raise ValueError("frame_samples must be positive")
    if not encode_fn:
        raise ValueError("no opus_encode function")
    fn = _functions.get(encode_fn)
    if fn is None:
        fn = _functions[encode_fn] = _PROTO(encode_fn)
    out = ctypes.create_string_buffer(MAX_PACKET_BYTES)
    results: list[bytes | int] = []
    for state, frame in zip(states, frames, strict=True):
        if not state or type(frame) is not bytes or len(frame) != 2 * frame_samples:
            results.append(OPUS_BAD_ARG)
            continue
        n = fn(state, frame, frame_samples, out, MAX_PACKET_BYTES)
        results.append(out.raw[:n] if n >= 0 else n)
    return results
