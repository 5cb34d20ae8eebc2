"""``relay admin tokens`` (relay/wsedge/token_cli.py): create, list, show, revoke against the database
``relay serve`` would use, read back through the CLI's own JSON output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import create_database


def _tokens(data_dir: Path, *args: str) -> Any:
    env = {**os.environ, "RELAY_DATA_DIR": str(data_dir)}
    out = subprocess.run([sys.executable, "-m", "relay", "admin", "--json", "tokens", *args], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_tokens_create_list_show_revoke(tmp_path: Path) -> None:
    data = tmp_path / "data"
    create_database(data)
    created = _tokens(data, "create", "--name", "ci", "--dialect", "ga")
    assert created["token"].startswith("rtk_") and created["name"] == "ci" and created["revoked"] is False
    listed = _tokens(data, "list")
    assert [t["id"] for t in listed] == [created["id"]]
    assert "token" not in listed[0]  # the plain token is shown once, at creation
    assert _tokens(data, "show", created["id"])["workspace_id"] == "default"
    assert _tokens(data, "revoke", created["id"])["revoked"] is True
    assert _tokens(data, "show", created["id"])["revoked"] is True
