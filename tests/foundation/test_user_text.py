"""User-facing text names the APIs (the Realtime device API, the app API, the WebSocket edge),
never the internal document numbers ("seed 000"): docs, the console page, the OpenAPI
document and every ``--help`` of the CLI."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import orjson

from relay.cli import _parser
from relay.web.app import AREAS
from relay.web.openapi import build_document

ROOT = Path(__file__).resolve().parents[2]
SEED = re.compile(r"\bseeds?[ -]?0\d\d|\bseeds? \d{3}/", re.I)


def _helps(parser: argparse.ArgumentParser) -> list[str]:
    out = [parser.format_help()]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                out += _helps(child)
    return out


def test_docs_and_console_page_name_the_apis() -> None:
    files = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "relay" / "static").glob("*.*")]
    hits = [f"{f.relative_to(ROOT)}:{n}" for f in files if f.suffix in (".md", ".html", ".js", ".css")
            for n, line in enumerate(f.read_text().splitlines(), 1) if SEED.search(line)]
    assert not hits, hits


def test_cli_help_and_openapi_name_the_apis() -> None:
    helps = _helps(_parser())
    assert len(helps) > 30  # every command and subcommand
    assert not [h.splitlines()[0] for h in helps if SEED.search(h)]
    assert not SEED.search(orjson.dumps(build_document(AREAS)).decode())
