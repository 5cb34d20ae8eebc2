"""relay._fast exports the compiled kernels (or the twins when RELAY_NO_EXTENSIONS=1) and never falls back silently."""

from __future__ import annotations

import subprocess
import sys

import relay._fast as fast
from relay._fast import g711, g711_py, pcm, pcm_py, playout, playout_py, resample, resample_py, uplinkasm, uplinkasm_py

COMPILED_MODULES = (g711, pcm, playout, resample, uplinkasm)
TWINS = (g711_py, pcm_py, playout_py, resample_py, uplinkasm_py)


def test_compiled_modules_are_extensions() -> None:
    for mod in COMPILED_MODULES:
        assert mod.__file__ is not None and mod.__file__.endswith(".so"), mod.__file__
    for mod in TWINS:
        assert mod.__file__ is not None and mod.__file__.endswith(".py"), mod.__file__


def test_package_exports_the_selected_implementation() -> None:
    if fast.NO_EXTENSIONS:
        assert fast.COMPILED is False
        assert fast.Resampler is resample_py.Resampler
        assert fast.PlayoutBuffer is playout_py.PlayoutBuffer
        assert fast.ulaw_encode is g711_py.ulaw_encode
        assert fast.audio_level_dbov is pcm_py.audio_level_dbov
        assert fast.UplinkAssembler is uplinkasm_py.UplinkAssembler
    else:
        assert fast.COMPILED is True
        assert fast.Resampler is resample.Resampler
        assert fast.PlayoutBuffer is playout.PlayoutBuffer
        assert fast.ulaw_encode is g711.ulaw_encode
        assert fast.alaw_decode is g711.alaw_decode
        assert fast.audio_level_dbov is pcm.audio_level_dbov
        assert fast.gain is pcm.gain
        assert fast.UplinkAssembler is uplinkasm.UplinkAssembler


API = {
    "resample": ("Resampler",),
    "playout": ("PlayoutBuffer", "HISTORY_ITEMS", "MAX_QUEUED_ITEMS"),
    "g711": ("ulaw_encode", "ulaw_decode", "alaw_encode", "alaw_decode"),
    "uplinkasm": ("UplinkAssembler",),
    "pcm": ("rms_dbfs", "peak_abs", "gain", "stereo_to_mono", "mono_to_stereo", "audio_level_dbov", "SILENCE_DBFS"),
}
METHODS = {
    "UplinkAssembler": ("push", "push_direct", "__call__", "take_counts", "close"),
    "Resampler": ("process", "flush", "reset", "delay_up", "latency_in_samples", "in_rate_hz", "out_rate_hz"),
    "PlayoutBuffer": (
        "push",
        "finish",
        "pop_frame",
        "clear",
        "played_ms",
        "received_ms",
        "current_item",
        "buffered_ms",
        "buffered_bytes",
        "overflow_bytes",
        "frame_ms",
        "frame_bytes",
        "bytes_per_ms",
    ),
}


def test_public_names_have_the_same_api_in_both() -> None:
    for name in fast.__all__:
        assert hasattr(fast, name), name
    for comp, twin in zip(COMPILED_MODULES, TWINS, strict=True):
        for name in API[twin.__name__.rsplit(".", 1)[1].removesuffix("_py")]:
            a, b = getattr(comp, name), getattr(twin, name)
            if isinstance(b, (int, float)):
                assert a == b, name
            for method in METHODS.get(name, ()):
                assert hasattr(a, method) and hasattr(b, method), (name, method)


def _run(code: str, env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(p for p in sys.path if p)}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def test_missing_extension_fails_loudly() -> None:
    # make the compiled module unimportable, as if the build had failed
    code = "import sys; sys.modules['relay._fast.resample'] = None; import relay._fast"
    proc = _run(code, {})
    assert proc.returncode != 0
    assert "ImportError" in proc.stderr
    assert "build_ext --inplace" in proc.stderr
    assert "RELAY_NO_EXTENSIONS=1" in proc.stderr


def test_switch_selects_the_twins_even_without_extensions() -> None:
    code = (
        "import sys; sys.modules['relay._fast.resample'] = None; import relay._fast as f; "
        "assert f.COMPILED is False; assert f.Resampler.__module__ == 'relay._fast.resample_py'; print('twins')"
    )
    proc = _run(code, {"RELAY_NO_EXTENSIONS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "twins"
