"""Audio helpers of the local assistant: wire formats <-> pcm16, and a voice for text replies."""

from __future__ import annotations

import asyncio
import logging
import math
import shutil
from array import array

from relay._fast import Resampler, alaw_decode, alaw_encode, ulaw_decode, ulaw_encode

log = logging.getLogger("relay.assistant")

RATE_HZ = {"pcm16": 24000, "g711_ulaw": 8000, "g711_alaw": 8000}
BYTES_PER_MS = {"pcm16": 48, "g711_ulaw": 8, "g711_alaw": 8}
ESPEAK_MAX_CHARS = 400
ESPEAK_TIMEOUT_S = 5.0
ESPEAK_RATE_HZ = 22050


def to_pcm16(data: bytes, fmt: str) -> bytes:
    """Wire audio -> pcm16 at the format's own rate (24 kHz or 8 kHz)."""
    if fmt == "g711_ulaw":
        return ulaw_decode(data)
    if fmt == "g711_alaw":
        return alaw_decode(data)
    return data


def convert(data: bytes, src: str, dst: str) -> bytes:
    """Whole-buffer conversion between wire formats (pcm16 24 kHz, G.711 8 kHz)."""
    if src == dst:
        return data
    pcm = to_pcm16(data, src)
    if RATE_HZ[src] != RATE_HZ[dst]:
        r = Resampler(RATE_HZ[src], RATE_HZ[dst])
        pcm = r.process(pcm) + r.flush()
    if dst == "g711_ulaw":
        return ulaw_encode(pcm)
    if dst == "g711_alaw":
        return alaw_encode(pcm)
    return pcm


def duration_ms(data: bytes, fmt: str) -> int:
    return len(data) // BYTES_PER_MS[fmt]


CHIME_ONSET_HZ = 1100.0  # the chime's first 20 ms: what a device checks it heard
CHIME_BODY_HZ = 1600.0
CHIME_ONSET_MS = 20
CHIME_MS = 120
CHIME_AMPLITUDE = 0.4  # of full scale


def chime(rate_hz: int = 24000) -> bytes:
    """relay-short's response: 20 ms at ``CHIME_ONSET_HZ`` then 100 ms at ``CHIME_BODY_HZ``, pcm16 at
    ``rate_hz`` (24 kHz: the pcm16 output format). Loud and tonal, so a device can tell whether it
    heard the first frame of the response or only its body (the frame a quiet gate or an encoder
    reset would eat)."""
    n_on = rate_hz * CHIME_ONSET_MS // 1000
    n = rate_hz * CHIME_MS // 1000
    ramp = rate_hz * 2 // 1000
    out = array("h", bytes(2 * n))
    phase = 0.0
    for i in range(n):
        freq = CHIME_ONSET_HZ if i < n_on else CHIME_BODY_HZ
        phase += 2 * math.pi * freq / rate_hz
        fade = min(1.0, (i + 1) / ramp, (n - i) / ramp)
        out[i] = int(32767 * CHIME_AMPLITUDE * fade * math.sin(phase))
    return out.tobytes()


def tone(text: str, *, rate_hz: int = 24000) -> bytes:
    """A short two-tone chirp whose length follows the text (60 ms per word, 0.3-3 s): the voice
    when espeak-ng is not available."""
    words = max(1, len(text.split()))
    n = int(rate_hz * min(3.0, max(0.3, 0.06 * words)))
    out = array("h", bytes(2 * n))
    for i in range(n):
        f = 330.0 if (i * 8 // rate_hz) % 2 == 0 else 440.0
        fade = min(1.0, i / (0.01 * rate_hz), (n - i) / (0.01 * rate_hz))
        out[i] = int(6000 * fade * math.sin(2 * math.pi * f * i / rate_hz))
    return out.tobytes()


def _resample_linear(pcm16: bytes, src_hz: int, dst_hz: int) -> bytes:
    src = array("h", pcm16)
    if not src:
        return b""
    n = int(len(src) * dst_hz / src_hz)
    step = src_hz / dst_hz
    last = len(src) - 1
    out = array("h", bytes(2 * n))
    for i in range(n):
        pos = i * step
        j = int(pos)
        frac = pos - j
        a = src[j]
        b = src[j + 1] if j < last else a
        out[i] = int(a + (b - a) * frac)
    return out.tobytes()


async def speak(text: str, *, voice: str = "en") -> bytes:
    """pcm16 24 kHz speech for ``text``: espeak-ng when installed, else a tone."""
    text = " ".join(text.split())[:ESPEAK_MAX_CHARS]
    exe = shutil.which("espeak-ng")
    if exe and text:
        try:
            proc = await asyncio.create_subprocess_exec(
                exe, "--stdout", "-v", "en", "-s", "175", "--", text,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        except OSError as exc:
            log.warning("espeak-ng failed to start: %s", exc)
        else:
            try:
                async with asyncio.timeout(ESPEAK_TIMEOUT_S):
                    wav, _ = await proc.communicate()
            except TimeoutError:
                proc.kill()
                await proc.wait()
                log.warning("espeak-ng timed out")
            else:
                pcm = _wav_pcm(wav)
                if pcm:
                    return _resample_linear(pcm, ESPEAK_RATE_HZ, 24000)
    return tone(text)


def _wav_pcm(wav: bytes) -> bytes:
    """The data chunk of a mono pcm16 WAV (espeak-ng writes a streaming header with bogus sizes)."""
    if len(wav) < 44 or wav[:4] != b"RIFF" or wav[8:12] != b"WAVE":
        return b""
    i = 12
    while i + 8 <= len(wav):
        cid, size = wav[i:i + 4], int.from_bytes(wav[i + 4:i + 8], "little")
        if cid == b"data":
            data = wav[i + 8:]
            return data[: len(data) - len(data) % 2]
        i += 8 + size + (size & 1)
    return b""
