"""``relay admin ...`` (filled in below)."""

from __future__ import annotations

import argparse


def add_admin_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    admin = sub.add_parser("admin", help="manage workspaces, assistants and clients")
    admin.add_argument("--config", help="TOML settings file")


def run_admin(args: argparse.Namespace) -> int:
    raise SystemExit("relay admin: not implemented yet")
