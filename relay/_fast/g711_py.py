"""ITU-T G.711 mu-law and A-law, pure-Python reference twin of ``g711.pyx``.

Bit-exact with CPython's ``audioop.lin2ulaw/ulaw2lin/lin2alaw/alaw2lin`` at
width 2 (the Sun reference implementation: mu-law encodes the 14 most
significant bits, A-law the 13 most significant bits). PCM16 is mono
little-endian; encoding an odd number of bytes raises ``ValueError``.
"""

from __future__ import annotations

from array import array
from sys import byteorder

from relay._fast._bytes import as_bytes

_SWAP = byteorder != "little"
_SEG_UEND = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_SEG_AEND = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _segment(value: int, ends: tuple[int, ...]) -> int:
    for i, end in enumerate(ends):
        if value <= end:
            return i
    return len(ends)


def ulaw_encode_sample(sample: int) -> int:
    """One int16 sample -> one mu-law byte (the algorithm the tables are built from)."""
    pcm = sample >> 2
    if pcm < 0:
        pcm = -pcm
        mask = 0x7F
    else:
        mask = 0xFF
    if pcm > 8159:
        pcm = 8159
    pcm += 0x84 >> 2
    seg = _segment(pcm, _SEG_UEND)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((pcm >> (seg + 1)) & 0xF)) ^ mask


def ulaw_decode_sample(code: int) -> int:
    u = ~code & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return (0x84 - t) if (u & 0x80) else (t - 0x84)


def alaw_encode_sample(sample: int) -> int:
    pcm = sample >> 3
    if pcm >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        pcm = -pcm - 1
    seg = _segment(pcm, _SEG_AEND)
    if seg >= 8:
        return 0x7F ^ mask
    aval = seg << 4
    aval |= ((pcm >> 1) if seg < 2 else (pcm >> seg)) & 0x0F
    return aval ^ mask


def alaw_decode_sample(code: int) -> int:
    a = code ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if (a & 0x80) else -t


# encode tables are indexed by the sample's unsigned 16-bit pattern
_ULAW_ENC = bytes(ulaw_encode_sample(s - 65536 if s >= 32768 else s) for s in range(65536))
_ALAW_ENC = bytes(alaw_encode_sample(s - 65536 if s >= 32768 else s) for s in range(65536))
_ULAW_DEC = array("h", [ulaw_decode_sample(c) for c in range(256)])
_ALAW_DEC = array("h", [alaw_decode_sample(c) for c in range(256)])


def _unsigned_samples(pcm16: bytes) -> array:
    pcm16 = as_bytes(pcm16)
    if len(pcm16) % 2:
        raise ValueError(f"pcm16 must hold whole 16-bit samples, got {len(pcm16)} bytes")
    a = array("H")
    a.frombytes(pcm16)
    if _SWAP:
        a.byteswap()
    return a


def _decode(data: bytes, table: array) -> bytes:
    out = array("h", [table[c] for c in as_bytes(data)])
    if _SWAP:
        out.byteswap()
    return out.tobytes()


def ulaw_encode(pcm16: bytes) -> bytes:
    table = _ULAW_ENC
    return bytes([table[s] for s in _unsigned_samples(pcm16)])


def alaw_encode(pcm16: bytes) -> bytes:
    table = _ALAW_ENC
    return bytes([table[s] for s in _unsigned_samples(pcm16)])


def ulaw_decode(data: bytes) -> bytes:
    return _decode(data, _ULAW_DEC)


def alaw_decode(data: bytes) -> bytes:
    return _decode(data, _ALAW_DEC)
