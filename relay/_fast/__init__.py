"""relay's hot-path kernels: compiled (Cython) by default, pure-Python twins on request.

Each kernel ``name`` is ``name.pyx`` (+ ``name.pxd``) with a reference twin
``name_py.py`` of the identical API. The compiled modules are used unless the
environment variable ``RELAY_NO_EXTENSIONS=1`` is set (read once, here: the one
sanctioned exception to "configuration only in relay/settings.py", because it
selects code, not behaviour). If the compiled modules cannot be imported and
the switch is not set, importing this package raises: there is no silent
fallback to the slow twins. Build them with ``python setup.py build_ext --inplace``.

Public names:

* ``Resampler(in_rate_hz, out_rate_hz)``: ``.process(pcm16) -> bytes``,
  ``.flush() -> bytes``, ``.reset()``
* ``PlayoutBuffer(bytes_per_ms, frame_ms=20, capacity_ms=120000, silence_byte=0)``
* ``ulaw_encode``, ``ulaw_decode``, ``alaw_encode``, ``alaw_decode``
* ``rms_dbfs``, ``peak_abs``, ``gain``, ``stereo_to_mono``, ``mono_to_stereo``,
  ``audio_level_dbov``, ``SILENCE_DBFS``
* ``parse_rtp(data) -> (payload_type, marker, seq, timestamp, ssrc, payload)``,
  ``StreamStats(clockrate)`` (aiortc ``StreamStatistics`` drop-in; the direct uplink path)
* ``encode_batch(encode_fn, states, frames, frame_samples)``: libopus encodes of a batch
  under one GIL release (the media clock's encode thread)
* ``BatchReceiver(max_datagrams, max_bytes).recv(sock)``, ``send_batch(sock, datagrams)``: batched
  UDP I/O (``recvmmsg`` / ``sendmmsg``; the worker's ICE port)
* ``RtpStream(...)``, ``SendQueue(sock, max_datagrams, on_pending)``: the downlink send kernel (RTP
  header + payload written into the socket's queue, SRTP-protected in place, one ``sendmmsg`` per queue)
* ``UplinkAssembler(decoder, decode_fn, silence_byte, chunk_bytes=..., on_chunk=...)``: one call's
  uplink (flood bucket, reorder window, Opus decode with FEC/PLC or G.711 passthrough, chunking);
  the worker's ICE port's ``MuxReceiver`` feeds the compiled one from C
* ``COMPILED: bool``
"""

from __future__ import annotations

import os

NO_EXTENSIONS: bool = os.environ.get("RELAY_NO_EXTENSIONS", "") == "1"

if NO_EXTENSIONS:
    from relay._fast.g711_py import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
    from relay._fast.opusbatch_py import encode_batch
    from relay._fast.pcm_py import (
        SILENCE_DBFS,
        audio_level_dbov,
        gain,
        mono_to_stereo,
        peak_abs,
        rms_dbfs,
        stereo_to_mono,
    )
    from relay._fast.playout_py import PlayoutBuffer
    from relay._fast.resample_py import Resampler
    from relay._fast.rtpin_py import StreamStats, parse_rtp
    from relay._fast.rtpsend_py import RtpStream, SendQueue
    from relay._fast.udpbatch_py import BatchReceiver, MuxReceiver, send_batch
    from relay._fast.uplinkasm_py import UplinkAssembler

    COMPILED = False
else:
    try:
        from relay._fast.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
        from relay._fast.opusbatch import encode_batch
        from relay._fast.pcm import (
            SILENCE_DBFS,
            audio_level_dbov,
            gain,
            mono_to_stereo,
            peak_abs,
            rms_dbfs,
            stereo_to_mono,
        )
        from relay._fast.playout import PlayoutBuffer
        from relay._fast.resample import Resampler
        from relay._fast.rtpin import StreamStats, parse_rtp
        from relay._fast.rtpsend import RtpStream, SendQueue
        from relay._fast.udpbatch import BatchReceiver, MuxReceiver, send_batch
        from relay._fast.uplinkasm import UplinkAssembler
    except ImportError as exc:
        raise ImportError(
            "relay._fast: the compiled Cython kernels are not built or failed to load "
            f"({exc}). Build them with `python setup.py build_ext --inplace` "
            "(or `pip install -e .`), or set RELAY_NO_EXTENSIONS=1 to run the pure-Python twins."
        ) from exc

    COMPILED = True

__all__ = [
    "BatchReceiver",
    "MuxReceiver",
    "COMPILED",
    "NO_EXTENSIONS",
    "PlayoutBuffer",
    "Resampler",
    "RtpStream",
    "SILENCE_DBFS",
    "SendQueue",
    "StreamStats",
    "UplinkAssembler",
    "alaw_decode",
    "alaw_encode",
    "audio_level_dbov",
    "encode_batch",
    "gain",
    "mono_to_stereo",
    "parse_rtp",
    "peak_abs",
    "send_batch",
    "rms_dbfs",
    "stereo_to_mono",
    "ulaw_decode",
    "ulaw_encode",
]
