"""Operator management of the WebSocket edge's API tokens: ``relay admin tokens`` (the HTTP routes under
``/admin/v1/tokens`` are ``relay.web.token_admin``).

    relay admin tokens create --workspace W [--assistant A] [--name N] [--dialect beta|ga]   # prints it once
    relay admin tokens list [--workspace W]
    relay admin tokens revoke <id>
"""

from __future__ import annotations

import argparse
from typing import Any

from relay.store import tokens as tokens_repo
from relay.store.db import Executor

COLUMNS = {"token": ["id", "name", "workspace_id", "assistant_id", "created_at", "last_used_at", "revoked"]}


# --- CLI -------------------------------------------------------------------------

def add_parsers(things: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    tk = things.add_parser("tokens", help="API tokens of the WebSocket edge (server clients)").add_subparsers(
        dest="op", required=True)
    p = tk.add_parser("create", help="create an API token (printed once)")
    p.add_argument("--workspace", default="default")
    p.add_argument("--assistant", help="assistant id of that workspace (default: the workspace's default)")
    p.add_argument("--name", default="")
    p.add_argument("--dialect", choices=("beta", "ga"),
                   help="its clients' event dialect when their handshake does not say (default: the handshake decides)")
    p = tk.add_parser("list", help="list API tokens")
    p.add_argument("--workspace")
    tk.add_parser("show", help="show one API token").add_argument("id")
    tk.add_parser("revoke", help="revoke an API token").add_argument("id")


async def run(args: argparse.Namespace, db: Executor) -> tuple[str, Any]:
    """(kind, result) like ``relay.admin.cli._run``."""
    op = args.op
    if op == "create":
        token, plain = await tokens_repo.create(db, args.workspace, assistant_id=args.assistant, name=args.name,
                                                client_dialect=args.dialect)
        return "token", {**token.public_json(), "token": plain}
    if op == "list":
        return "token", [t.public_json() for t in await tokens_repo.list_all(db, args.workspace)]
    if op == "show":
        return "token", (await tokens_repo.get(db, args.id)).public_json()
    if op == "revoke":
        return "token", (await tokens_repo.revoke(db, args.id)).public_json()
    raise ValueError(f"unknown admin command tokens {op}")
