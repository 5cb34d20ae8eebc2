"""The package docs of the call layer and both edges list every module of their package, one line each
(docs/ARCHITECTURE.md points newcomers there)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

RELAY = Path(__file__).resolve().parents[2] / "relay"


@pytest.mark.parametrize("package", ["call", "media", "wsedge"])
def test_package_doc_lists_every_module(package: str) -> None:
    folder = RELAY / package
    doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text())) or ""
    listed = re.findall(r"^- ``(\w+)``\s+--", doc, re.M)
    modules = sorted([p.stem for p in folder.glob("*.py") if p.stem != "__init__"]
                     + [p.name for p in folder.iterdir() if (p / "__init__.py").is_file()])  # subpackages
    assert sorted(listed) == modules
    assert len(listed) == len(set(listed))
