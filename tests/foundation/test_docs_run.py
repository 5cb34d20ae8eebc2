"""Docs that run as written: every shell and Python block of README.md and docs/*.md runs.

Each file's blocks run in order against one live ``relay serve`` (a real process on
127.0.0.1, a free port, a temporary data dir), in a fresh working directory per file.
Shell blocks run in bash with ``set -euo pipefail``; the variables a block sets are
visible to the file's later blocks (shell and Python), as in a reader's terminal.
What the test provides, exactly as a reader who started the server would have it:

- the server's environment (``RELAY_DATA_DIR``, ``RELAY_ADMIN_TOKEN``, ``RELAY_PORT``...),
  so ``relay admin ...`` and ``$RELAY_ADMIN_TOKEN`` name the same server;
- ``127.0.0.1:8080`` in a block is rewritten to the server's free port.

A block may be skipped only with a marker on the line(s) before its fence::

    <!-- not-run: needs an OpenAI API key -->

and only for what this machine cannot have (OpenAI, a Kubernetes cluster, a Docker
engine, a public address) or because it starts a server or the test suite. Every fence
must name its language, so a shell block cannot hide as plain text. ``curl`` fails a
block on an HTTP error (``--fail-with-body``) unless the block is marked
``<!-- expect: http-error -->`` (an example of an error answer). The test prints how
many blocks ran and how many were marked.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.foundation.live_relay import ROOT, LiveRelay, live_relay

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN_LANGS = {"sh": "sh", "bash": "sh", "shell": "sh", "python": "python", "py": "python"}
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.S | re.M)
MARKER = re.compile(r"<!--\s*not-run:\s*(.+?)\s*-->")
EXPECT_HTTP_ERROR = "<!-- expect: http-error -->"
CURL_FAILS = 'curl() { command curl --fail-with-body "$@"; }\n'
ALLOWED_REASONS = ("openai", "azure", "kubernetes", "docker", "public address", "starts a server", "starts the server",
                   "test suite", "starts relay", "a browser")
ADMIN_TOKEN = "docs-admin-token-" + "d" * 24
BLOCK_TIMEOUT_S = 120
SHELL_VARS = re.compile(r"^(BASH.*|BASHOPTS|EUID|PPID|SHELLOPTS|UID|GROUPS|FUNCNAME|PIPESTATUS|DIRSTACK|SECONDS|"
                        r"RANDOM|SRANDOM|LINENO|HISTCMD|EPOCHSECONDS|EPOCHREALTIME|COLUMNS|LINES|_|OPTIND|OPTERR|"
                        r"IFS|PS4|PWD|OLDPWD|SHLVL|HOSTNAME|HOSTTYPE|MACHTYPE|OSTYPE|__.*)$")


@dataclass
class Block:
    path: Path
    line: int
    lang: str  # the fence's info string
    code: str
    not_run: str | None  # the marker's reason
    http_error_expected: bool = False

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks_of(path: Path) -> list[Block]:
    text = path.read_text()
    out = []
    for m in FENCE.finditer(text):
        before = text[: m.start()].rstrip().rsplit("\n", 1)[-1]
        marker = MARKER.search(before)
        out.append(Block(path, text[: m.start()].count("\n") + 1, m.group(1).strip(), m.group(2),
                         marker.group(1) if marker else None, EXPECT_HTTP_ERROR in before))
    return out


def test_every_fence_names_its_language_and_every_marker_a_permitted_reason() -> None:
    untagged = [b.where for p in DOCS for b in blocks_of(p) if not b.lang]
    assert not untagged, f"fences without a language (use sh, python, text, http, ...): {untagged}"
    for p in DOCS:
        for b in blocks_of(p):
            if b.not_run is not None:
                assert b.lang in RUN_LANGS, f"{b.where}: a not-run marker on a {b.lang!r} block"
                assert any(r in b.not_run.lower() for r in ALLOWED_REASONS), f"{b.where}: {b.not_run!r}"


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("docs-relay")
    with live_relay(tmp, RELAY_ADMIN_TOKEN=ADMIN_TOKEN) as server:
        yield server


SUMMARY: dict[str, tuple[int, int]] = {}


def _shell(block: Block, code: str, cwd: Path, env: dict[str, str], state: Path) -> subprocess.CompletedProcess:
    prelude = "" if block.http_error_expected else CURL_FAILS
    script = (f"source {state} 2>/dev/null || true\nset -euo pipefail\n{prelude}{code}\n"
              f"declare -p $(compgen -v | grep -Ev '{SHELL_VARS.pattern}') > {state} 2>/dev/null\n")
    return subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=BLOCK_TIMEOUT_S)


def _exported(env: dict[str, str], state: Path, cwd: Path) -> dict[str, str]:
    """The environment plus the variables the file's blocks exported so far (as a reader's shell has them)."""
    res = subprocess.run(["bash", "-c", f"source {state} 2>/dev/null; env -0"],
                         cwd=cwd, env=env, capture_output=True, timeout=30)
    pairs = [item.split(b"=", 1) for item in res.stdout.split(b"\0") if b"=" in item]
    return {k.decode(): v.decode("utf-8", "replace") for k, v in pairs}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_doc_blocks_run(doc: Path, relay: LiveRelay, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = {**relay.env, "PATH": os.path.dirname(sys.executable) + os.pathsep + relay.env.get("PATH", "")}
    state = tmp_path / ".docs-shell-state"
    state.touch()
    ran = marked = 0
    for block in blocks_of(doc):
        kind = RUN_LANGS.get(block.lang)
        if kind is None:
            continue
        if block.not_run is not None:
            marked += 1
            continue
        code = block.code.replace("127.0.0.1:8080", f"127.0.0.1:{relay.port}")
        if kind == "sh":
            res = _shell(block, code, tmp_path, env, state)
        else:
            script = tmp_path / f"block_{block.line}.py"
            script.write_text(code)
            res = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=_exported(env, state, tmp_path),
                                 capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)
        assert res.returncode == 0, (f"{block.where} ({block.lang}) failed with {res.returncode}:\n{block.code}\n"
                                     f"--- stdout\n{res.stdout[-3000:]}\n--- stderr\n{res.stderr[-3000:]}")
        assert "Traceback" not in res.stderr, f"{block.where}:\n{res.stderr[-3000:]}"
        if os.environ.get("RELAY_DOCS_VERBOSE"):  # show what each block printed
            with capsys.disabled():
                print(f"\n--- {block.where}\n{res.stdout[-1500:]}{res.stderr[-800:]}")
        ran += 1
    SUMMARY[str(doc.relative_to(ROOT))] = (ran, marked)
    with capsys.disabled():
        print(f"\n{doc.relative_to(ROOT)}: {ran} block(s) ran, {marked} marked not-run")
    if len(SUMMARY) == len(DOCS):
        with capsys.disabled():
            print(f"docs: {sum(r for r, _ in SUMMARY.values())} block(s) ran, "
                  f"{sum(m for _, m in SUMMARY.values())} marked not-run, in {len(DOCS)} files")
