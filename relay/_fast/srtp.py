"""libsrtp from compiled kernels: the library pylibsrtp already loads, reached through its cffi module.

aiortc keys its SRTP sessions with pylibsrtp (``pylibsrtp.Session``: one ``srtp_t`` each, one replay
window per stream). A compiled kernel that protects or unprotects *the same* sessions must call the
very libsrtp those sessions were made by -- pylibsrtp's bundled copy, not a second libsrtp linked
from the system (its ``srtp_t`` layout and its global state are its own) -- so a kernel takes two
plain addresses from here:

- ``unprotect_address()``: ``srtp_unprotect(srtp_t, void *packet, int *len)`` (libsrtp 2 API);
- ``session_address(session)``: a ``pylibsrtp.Session``'s ``srtp_t``. The kernel must keep a
  reference to the ``Session`` while it uses the address (its ``srtp_t`` is freed with it).

The names reached past pylibsrtp's public API (``pylibsrtp._binding``, ``Session._srtp``) are
checked by ``check()``, which raises ``RuntimeError`` naming what is missing.
"""

from __future__ import annotations

from typing import Any

import pylibsrtp
from pylibsrtp import _binding

_SIGNATURE = "srtp_err_status_t(*)(struct srtp_ctx_t_ *, void *, int *)"


def _function_address(name: str) -> int:
    ffi, lib = _binding.ffi, _binding.lib
    fn = ffi.addressof(lib, name)
    if ffi.getctype(ffi.typeof(fn)) != _SIGNATURE:
        raise RuntimeError(f"pylibsrtp's {name} is {ffi.getctype(ffi.typeof(fn))}, not {_SIGNATURE} (libsrtp 2)")
    return int(ffi.cast("uintptr_t", fn))


def unprotect_address() -> int:
    return _function_address("srtp_unprotect")


def protect_address() -> int:
    return _function_address("srtp_protect")


def session_address(session: Any) -> int:
    if not isinstance(session, pylibsrtp.Session):
        raise TypeError("a pylibsrtp.Session is needed")
    return int(_binding.ffi.cast("uintptr_t", session._srtp[0]))


def check() -> None:
    """Every pylibsrtp internal used here is where it is expected (``RuntimeError`` otherwise)."""
    unprotect_address()
    protect_address()
    session_address(pylibsrtp.Session())
