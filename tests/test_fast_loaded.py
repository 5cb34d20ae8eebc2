"""Every Cython kernel under relay/_fast/ is built, discovered by setup.py, and loaded compiled.

A broken build must not hide behind the pure-Python twins: unless the debugging switch
``RELAY_NO_EXTENSIONS=1`` is set, each ``relay._fast.<name>`` must be an extension module
(``__file__`` ends in the platform's extension suffix) and ``relay._fast.COMPILED`` is True.
"""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FAST = ROOT / "relay" / "_fast"
PYX = sorted(FAST.glob("*.pyx"))
NO_EXTENSIONS = os.environ.get("RELAY_NO_EXTENSIONS", "") == "1"


def test_setup_py_compiles_every_pyx() -> None:
    """setup.py globs relay/_fast/*.pyx into Extensions named relay._fast.<stem> and cythonizes them."""
    source = (ROOT / "setup.py").read_text()
    ast.parse(source)
    assert "cythonize(" in source and "Extension(" in source
    assert 'glob("*.pyx")' in source and 'f"relay._fast.{pyx.stem}"' in source
    assert PYX, "relay/_fast has no .pyx kernel"


def test_every_kernel_has_a_pure_python_twin() -> None:
    for pyx in PYX:
        if pyx.stem.startswith("_"):
            continue
        assert (FAST / f"{pyx.stem}_py.py").exists(), f"{pyx.name} has no {pyx.stem}_py.py twin"


@pytest.mark.parametrize("pyx", PYX, ids=[p.stem for p in PYX])
def test_kernel_loaded_compiled(pyx: Path) -> None:
    """Importable as an extension module (even with the switch set, the build must exist)."""
    module = importlib.import_module(f"relay._fast.{pyx.stem}")
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    assert module.__file__ and module.__file__.endswith(suffixes), f"{module.__name__} is {module.__file__}"
    assert isinstance(module.__loader__, importlib.machinery.ExtensionFileLoader)


def test_package_selected_compiled() -> None:
    """relay._fast uses the compiled kernels, unless RELAY_NO_EXTENSIONS=1 asked for the twins."""
    import relay._fast

    assert relay._fast.COMPILED is (not NO_EXTENSIONS)
    if not NO_EXTENSIONS:
        suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
        assert relay._fast.Resampler.__module__ == "relay._fast.resample"
        assert importlib.import_module(relay._fast.Resampler.__module__).__file__.endswith(suffixes)
