"""``relay admin ...``: workspaces, assistants and clients, straight on the store.

Uses the same repositories as the admin HTTP API. Output is a readable table,
or JSON with ``--json``. Examples::

    relay admin workspaces create "Acme" --self-enrol --with-key
    relay admin assistants create --workspace default --name Helper --file helper.toml
    relay admin clients create --workspace default --assistant <id>
    relay admin clients list
    relay admin clients reset-secret <client id>
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import tomllib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

from relay.admin.output import readable
from relay.settings import Settings, load_settings
from relay.store import assistants as assistants_repo
from relay.store import clients as clients_repo
from relay.store import usage as usage_repo
from relay.store import workspaces as workspaces_repo
from relay.store.db import Database, DatabaseError
from relay.store.errors import Conflict, NotFound

_ASSISTANT_FLAGS = ("provider", "upstream_url", "api_key", "model", "voice", "instructions", "dialect",
                    "input_audio_format", "output_audio_format")


def _bool_flag(p: argparse.ArgumentParser, name: str, help_: str) -> None:
    p.add_argument(f"--{name}", dest=name.replace("-", "_"), action=argparse.BooleanOptionalAction, default=None,
                   help=help_)


def add_admin_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    admin = sub.add_parser("admin", help="manage workspaces, assistants and clients (directly on the database)")
    admin.add_argument("--config", help="TOML settings file (for the database URL)")
    admin.add_argument("--json", action="store_true", help="print JSON instead of a table")
    admin.add_argument("-v", "--verbose", action="store_true", help="name the database used (on stderr)")
    things = admin.add_subparsers(dest="thing", required=True)

    ws = things.add_parser("workspaces", help="workspaces").add_subparsers(dest="op", required=True)
    p = ws.add_parser("create", help="create a workspace")
    p.add_argument("name")
    _bool_flag(p, "self-enrol", "devices with the workspace key may enrol themselves")
    _bool_flag(p, "secretless", "devices of this workspace may omit X-Client-Secret")
    p.add_argument("--with-key", action="store_true", help="issue a workspace key (printed once)")
    ws.add_parser("list", help="list workspaces")
    p = ws.add_parser("show", help="show one workspace")
    p.add_argument("id")
    p = ws.add_parser("update", help="change a workspace")
    p.add_argument("id")
    p.add_argument("--name")
    _bool_flag(p, "self-enrol", "allow self-enrolment")
    _bool_flag(p, "secretless", "allow secretless clients")
    p.add_argument("--default-assistant", help="assistant id used by clients with none (or 'none')")
    p = ws.add_parser("rotate-key", help="issue a new workspace key (the old one stops working)")
    p.add_argument("id")
    p = ws.add_parser("delete", help="delete a workspace and everything in it")
    p.add_argument("id")

    asst = things.add_parser("assistants", help="assistants").add_subparsers(dest="op", required=True)
    for op in ("create", "update"):
        p = asst.add_parser(op, help=f"{op} an assistant (flags and/or --file)")
        if op == "create":
            p.add_argument("--workspace", default="default", help="workspace id (default: default)")
            p.add_argument("--name", help="name (or in --file)")
        else:
            p.add_argument("id")
            p.add_argument("--name")
        p.add_argument("--file", help="JSON or TOML file with assistant fields (flags override it)")
        for flag in _ASSISTANT_FLAGS:
            p.add_argument("--" + flag.replace("_", "-"), dest=flag)
        _bool_flag(p, "device-tools", "enable the four client-side device tools")
        _bool_flag(p, "allow-g711", "relay G.711 devices without transcoding")
    p = asst.add_parser("list", help="list assistants")
    p.add_argument("--workspace")
    p = asst.add_parser("show", help="show one assistant")
    p.add_argument("id")
    p = asst.add_parser("delete", help="delete an assistant")
    p.add_argument("id")

    cl = things.add_parser("clients", help="clients (devices)").add_subparsers(dest="op", required=True)
    p = cl.add_parser("create", help="create a client (prints its id)")
    p.add_argument("--workspace", default="default")
    p.add_argument("--assistant")
    p.add_argument("--name", default="")
    p.add_argument("--id", help="use this UUID instead of a fresh one")
    p = cl.add_parser("list", help="list clients")
    p.add_argument("--workspace")
    for op, help_ in (("show", "show one client"), ("disable", "disable a client (404 to its requests)"),
                      ("enable", "enable a client again"), ("reset-secret", "clear the enrolled secret (TOFU again)"),
                      ("delete", "delete a client")):
        p = cl.add_parser(op, help=help_)
        p.add_argument("id")
    p = cl.add_parser("set-assistant", help="assign an assistant ('none' to clear)")
    p.add_argument("id")
    p.add_argument("assistant")

    p = things.add_parser("usage", help="calls, tokens and audio per workspace, client and UTC day")
    p.add_argument("--workspace", help="only this workspace (id or name)")
    p.add_argument("--client", help="only this client id")
    p.add_argument("--days", type=int, default=30, help="the last N days (default 30)")
    p.set_defaults(op="report")
    p = things.add_parser("calls", help="live calls of a running server (admin HTTP API)").add_subparsers(
        dest="op", required=True)
    for op, help_ in (("list", "list the live calls"), ("end", "end one live call")):
        q = p.add_parser(op, help=help_)
        if op == "end":
            q.add_argument("id", help="the call id (X-Session-Id of its answer)")
        q.add_argument("--url", help="the server's base URL (default: http://<host>:<port> from the settings)")

    from relay.admin.app_api import add_parsers as add_app_parsers  # stories, workspace voices (#6)

    add_app_parsers(things)

    from relay.wsedge.token_cli import add_parsers as add_token_parsers  # API tokens (WebSocket edge, seed 003)

    add_token_parsers(things)
    _json_on_every_command(admin)


def _json_on_every_command(parser: argparse.ArgumentParser) -> None:
    """``--json`` also after the command (``relay admin clients list --json``), not only before it.

    The leaf parsers default it to SUPPRESS, so a ``--json`` given before the command survives.
    """
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in set(action.choices.values()):
                _json_on_every_command(child)
            return
    if "--json" not in parser._option_string_actions:
        parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                            help="print JSON instead of a table")


async def resolve_workspace(db: Database, value: str) -> str:
    """A workspace id from its id or its name (the name must be unique)."""
    if await workspaces_repo.find(db, value) is not None:
        return value
    matches = [w.id for w in await workspaces_repo.list_all(db) if w.name == value]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise Conflict(f"{len(matches)} workspaces are named {value!r}: give the id ({', '.join(matches)})")
    raise NotFound(f"no workspace with the id or name {value!r}")


def load_fields_file(path: str) -> dict[str, Any]:
    """Assistant fields from a ``.json`` or ``.toml`` file."""
    raw = Path(path).read_bytes()
    doc = tomllib.loads(raw.decode("utf-8")) if path.endswith(".toml") else orjson.loads(raw)
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected an object of assistant fields")
    return doc


def _assistant_fields(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = load_fields_file(args.file) if args.file else {}
    for name in (*_ASSISTANT_FLAGS, "name", "device_tools", "allow_g711"):
        value = getattr(args, name, None)
        if value is not None:
            fields[name] = value
    return fields


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    def cell(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, bool):
            return "yes" if v else "no"
        text = str(v)
        return text if len(text) <= 48 else text[:45] + "..."

    cells = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


_EMPTY = {"usage": "(no calls in that time)", "call": "(no live calls)"}

_COLUMNS = {
    "workspace": ["id", "name", "allow_self_enrol", "allow_secretless", "default_assistant_id", "has_key"],
    "assistant": ["id", "name", "workspace_id", "provider", "model", "voice", "dialect"],
    "client": ["id", "name", "workspace_id", "assistant_id", "status", "enrolled", "last_seen_at"],
    "usage": ["day", "workspace_id", "client_id", "calls", "input_tokens", "output_tokens", "seconds"],
    "call": ["id", "client_id", "workspace_id", "assistant_id", "kind", "started_at", "duration_s"],
}


async def _run(args: argparse.Namespace, db: Database) -> tuple[str, Any]:
    """(kind, result) where result is a dict or a list of dicts."""
    op = args.op
    if getattr(args, "workspace", None):
        args.workspace = await resolve_workspace(db, args.workspace)
    if args.thing == "workspaces" and op in ("show", "update", "rotate-key", "delete"):
        args.id = await resolve_workspace(db, args.id)
    if args.thing == "usage":
        if args.days < 1:
            raise ValueError("--days must be at least 1")
        since = (dt.datetime.now(dt.UTC) - dt.timedelta(days=args.days - 1)).replace(
            hour=0, minute=0, second=0, microsecond=0).timestamp()
        return "usage", await usage_repo.daily(db, since=since, workspace_id=args.workspace, client_id=args.client)
    if args.thing in ("stories", "voices"):
        from relay.admin.app_api import run as run_app

        return await run_app(args, db)
    if args.thing == "tokens":
        from relay.wsedge.token_cli import run as run_tokens

        return await run_tokens(args, db)
    if args.thing == "workspaces":
        if op == "create":
            ws, key = await workspaces_repo.create(db, args.name, allow_self_enrol=bool(args.self_enrol),
                                                   allow_secretless=bool(args.secretless), with_key=args.with_key)
            return "workspace", {**ws.public_json(), **({"key": key} if key else {})}
        if op == "list":
            return "workspace", [w.public_json() for w in await workspaces_repo.list_all(db)]
        if op == "show":
            return "workspace", (await workspaces_repo.get(db, args.id)).public_json()
        if op == "update":
            changes: dict[str, Any] = {}
            if args.name is not None:
                changes["name"] = args.name
            if args.self_enrol is not None:
                changes["allow_self_enrol"] = args.self_enrol
            if args.secretless is not None:
                changes["allow_secretless"] = args.secretless
            if args.default_assistant is not None:
                aid = None if args.default_assistant == "none" else args.default_assistant
                if aid is not None:
                    a = await assistants_repo.get(db, aid)
                    if a.workspace_id != args.id:
                        raise Conflict("the assistant belongs to another workspace")
                changes["default_assistant_id"] = aid
            return "workspace", (await workspaces_repo.update(db, args.id, **changes)).public_json()
        if op == "rotate-key":
            key = await workspaces_repo.rotate_key(db, args.id)
            return "workspace", {**(await workspaces_repo.get(db, args.id)).public_json(), "key": key}
        if op == "delete":
            await workspaces_repo.delete(db, args.id)
            return "workspace", {"id": args.id, "deleted": True}
    if args.thing == "assistants":
        if op == "create":
            fields = _assistant_fields(args)
            name = fields.pop("name", None)
            if not name:
                raise ValueError("an assistant needs a name (--name or in --file)")
            await workspaces_repo.get(db, args.workspace)
            return "assistant", (await assistants_repo.create(db, args.workspace, name, **fields)).public_json()
        if op == "update":
            return "assistant", (await assistants_repo.update(db, args.id, **_assistant_fields(args))).public_json()
        if op == "list":
            return "assistant", [a.public_json() for a in await assistants_repo.list_all(db, args.workspace)]
        if op == "show":
            return "assistant", (await assistants_repo.get(db, args.id)).public_json()
        if op == "delete":
            await assistants_repo.delete(db, args.id)
            return "assistant", {"id": args.id, "deleted": True}
    if args.thing == "clients":
        if op == "create":
            c = await clients_repo.create(db, args.workspace, client_id=args.id, assistant_id=args.assistant,
                                          name=args.name)
            return "client", c.public_json()
        if op == "list":
            return "client", [c.public_json() for c in await clients_repo.list_all(db, args.workspace)]
        if op == "show":
            return "client", (await clients_repo.get(db, args.id)).public_json()
        if op in ("disable", "enable"):
            status = "disabled" if op == "disable" else "active"
            return "client", (await clients_repo.set_status(db, args.id, status)).public_json()
        if op == "reset-secret":
            return "client", (await clients_repo.reset_secret(db, args.id)).public_json()
        if op == "set-assistant":
            aid = None if args.assistant == "none" else args.assistant
            return "client", (await clients_repo.set_assistant(db, args.id, aid)).public_json()
        if op == "delete":
            await clients_repo.delete(db, args.id)
            return "client", {"id": args.id, "deleted": True}
    raise ValueError(f"unknown admin command {args.thing} {op}")


class NoDatabase(Exception):
    """The configured place holds no relay database (admin commands never create one)."""


async def open_existing(settings: Settings, chosen_by: str) -> Database:
    """The database ``relay serve`` uses with these settings; ``NoDatabase`` (naming the place and the
    setting that chose it) when there is none: an admin command never creates one."""
    hint = f"({chosen_by}): run `relay serve` once with these settings first, or use the server's settings"
    path = settings.sqlite_path
    if path is not None and not path.is_file():
        raise NoDatabase(f"no relay database at {path} {hint}")
    db = await Database.connect(settings.effective_database_url)
    try:
        if not await db.has_schema():
            raise NoDatabase(f"no relay tables in {settings.database_display} {hint}")
        await db.migrate()  # a newer relay's admin on an older server's database: bring it up to date
    except BaseException:
        await db.close()
        raise
    return db


async def live_calls(args: argparse.Namespace, settings: Settings) -> tuple[str, Any]:
    """``relay admin calls list|end``: the admin HTTP API of the running server (live calls are in its memory)."""
    import aiohttp

    if not settings.admin_token:
        raise ValueError("live calls are read from the running server's admin HTTP API: set RELAY_ADMIN_TOKEN "
                         "(admin_token) to the server's token")
    host = "127.0.0.1" if settings.host in ("", "0.0.0.0", "::") else settings.host  # noqa: S104 (a comparison)
    base = (args.url or f"http://{'[' + host + ']' if ':' in host else host}:{settings.port}").rstrip("/")
    headers = {"Authorization": f"Bearer {settings.admin_token}"}
    method, path = ("GET", "/admin/v1/calls") if args.op == "list" else ("POST", f"/admin/v1/calls/{args.id}/end")
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http, \
                http.request(method, base + path, headers=headers) as resp:
            body = await resp.read()
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError:
                doc = None
            if resp.status >= 400:
                err = doc.get("error") if isinstance(doc, dict) else None
                if isinstance(err, dict):
                    raise ValueError(f"{base}: {resp.status} {err.get('code')}: {err.get('message')}")
                raise ValueError(f"{base}: HTTP {resp.status} (is that a relay server with the admin API on?)")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ValueError(f"cannot reach the server at {base} ({exc or type(exc).__name__}); --url chooses it") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{base}: the answer is not a JSON object")
    return "call", doc.get("data", []) if args.op == "list" else doc


async def _main(args: argparse.Namespace) -> int:
    from relay.settings import origin

    settings = load_settings(args.config)
    if args.thing == "calls":
        kind, result = await live_calls(args, settings)
    else:
        chosen_by = origin("database_url" if settings.database_url else "data_dir", args.config)
        if args.verbose:
            print(f"relay admin: database {settings.database_display} ({chosen_by})", file=sys.stderr)
        db = await open_existing(settings, chosen_by)
        try:
            kind, result = await _run(args, db)
        finally:
            await db.close()
    result = readable(result)
    if args.json:
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    elif isinstance(result, list):
        from relay.admin.app_api import COLUMNS as APP_COLUMNS
        from relay.wsedge.token_cli import COLUMNS as TOKEN_COLUMNS

        print(_table(result, {**_COLUMNS, **APP_COLUMNS, **TOKEN_COLUMNS}[kind]) if result else _EMPTY.get(kind, f"(no {kind}s)"))
    else:
        width = max(len(k) for k in result)
        for k, v in result.items():
            shown = orjson.dumps(v).decode() if isinstance(v, (dict, list)) else v
            print(f"{k.ljust(width)}  {'-' if shown is None else shown}")
        if result.get("key"):
            print("\nThe workspace key is shown only now: store it safely.", file=sys.stderr)
        if result.get("token"):
            print("\nThe API token is shown only now: store it safely.", file=sys.stderr)
    try:  # after printing: a failed write must not lose the new key
        key_file = _rewrite_console_key_file(args, settings, result)
    except OSError as exc:
        print(f"relay admin: could not write the console's key file: {exc}", file=sys.stderr)
        return 1
    if key_file is not None:
        print(f"The new key was also written to {key_file} (0600): relay serve prints the console link from it.",
              file=sys.stderr)
    return 0


def _rewrite_console_key_file(args: argparse.Namespace, settings: Settings, result: Any) -> Path | None:
    """After ``workspaces rotate-key default``: rewrite ``<data_dir>/workspace-key`` (relay.console_link).

    Only with ``console_link`` on and an existing data directory (never a stray secret elsewhere).
    """
    from relay.console_link import WORKSPACE_ID, key_path, write_key_file

    if not (args.thing == "workspaces" and args.op == "rotate-key" and args.id == WORKSPACE_ID):
        return None
    if not settings.console_link or not settings.data_path.is_dir() or not isinstance(result, dict):
        return None
    path = key_path(settings.data_path)
    write_key_file(path, result["key"])
    return path


def run_admin(args: argparse.Namespace, runner: Callable[[Awaitable[int]], int] = asyncio.run) -> int:
    try:
        return runner(_main(args))
    except (NotFound, Conflict, ValueError, DatabaseError, OSError, NoDatabase) as exc:
        print(f"relay admin: {exc}", file=sys.stderr)
        return 1
