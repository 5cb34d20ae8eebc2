"""Input normalisation shared by the pure-Python twins (mirrors ``_buffer.pxd``)."""

from __future__ import annotations


def as_bytes(data: object) -> bytes:
    """``data`` itself when it is ``bytes``, else a copy of any bytes-like object; TypeError otherwise."""
    if type(data) is bytes:
        return data
    return bytes(memoryview(data))  # type: ignore[arg-type]
