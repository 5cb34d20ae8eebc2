"""Fixtures for the _fast kernels: every behaviour test runs against both implementations.

``impl`` is parametrized over the compiled Cython modules and their pure-Python
twins (like aiohttp and websockets test their C and Python paths). The
compiled modules are imported directly so both are always exercised; which one
``relay._fast`` exports is checked in test_select.py.
"""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import pytest

KERNELS = ("resample", "playout", "g711", "pcm")


def load(kind: str) -> SimpleNamespace:
    suffix = "" if kind == "compiled" else "_py"
    mods = {name: importlib.import_module(f"relay._fast.{name}{suffix}") for name in KERNELS}
    ns = SimpleNamespace(kind=kind, modules=mods)
    ns.Resampler = mods["resample"].Resampler
    ns.PlayoutBuffer = mods["playout"].PlayoutBuffer
    for fn in ("ulaw_encode", "ulaw_decode", "alaw_encode", "alaw_decode"):
        setattr(ns, fn, getattr(mods["g711"], fn))
    for fn in ("rms_dbfs", "peak_abs", "gain", "stereo_to_mono", "mono_to_stereo", "audio_level_dbov", "SILENCE_DBFS"):
        setattr(ns, fn, getattr(mods["pcm"], fn))
    return ns


COMPILED = load("compiled")
PYTHON = load("python")


@pytest.fixture(scope="session", params=[COMPILED, PYTHON], ids=["compiled", "python"])
def impl(request: pytest.FixtureRequest) -> SimpleNamespace:
    return request.param
