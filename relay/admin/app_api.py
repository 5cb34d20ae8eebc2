"""``relay admin stories ...`` and ``relay admin voices ...`` (hooked into ``relay.admin.cli``; the operations are
``relay.app_api.admin``).

    relay admin stories create --workspace default --name "The fox" --slug the-fox --file fox.txt --sort-order 1
    relay admin stories update <id> --excerpt "A fox by the river" --default-voice <voice id>
    relay admin stories list [--workspace ID]
    relay admin stories show|delete <id>
    relay admin voices create --workspace default --name Narrator --design-prompt "calm bedtime voice"
    relay admin voices create --workspace default --name Grandma --audio grandma.m4a
    relay admin voices list [--workspace ID]
    relay admin voices delete <id>
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from relay.app_api import admin
from relay.app_api.services import build_services
from relay.settings import load_settings
from relay.store.db import Database

COLUMNS = {
    "story": ["story_id", "slug", "name", "sort_order", "age_group", "default_voice_id"],
    "voice": ["voice_id", "name", "category", "kind", "language", "status"],
}
_STORY_OPTS = ("name", "slug", "excerpt", "age_group", "illustration_url", "illustration_alt")


def add_parsers(things: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    st = things.add_parser("stories", help="app API stories").add_subparsers(dest="op", required=True)
    for op in ("create", "update"):
        p = st.add_parser(op, help=f"{op} a story")
        if op == "create":
            p.add_argument("--workspace", default="default")
        else:
            p.add_argument("id")
        for name in _STORY_OPTS:
            p.add_argument(f"--{name.replace('_', '-')}", dest=name)
        p.add_argument("--transcript", help="the transcript text")
        p.add_argument("--file", help="read the transcript from this UTF-8 text file")
        p.add_argument("--sort-order", type=int, dest="sort_order")
        p.add_argument("--default-voice", dest="default_voice_id", help="voice id ('none' to clear)")
    p = st.add_parser("list", help="list stories")
    p.add_argument("--workspace")
    for op in ("show", "delete"):
        st.add_parser(op, help=f"{op} a story").add_argument("id")

    vo = things.add_parser("voices", help="app API workspace voices").add_subparsers(dest="op", required=True)
    p = vo.add_parser("create", help="create a workspace voice from a design prompt or a 10-30 s recording")
    p.add_argument("--workspace", default="default")
    p.add_argument("--name", required=True)
    p.add_argument("--design-prompt", dest="design_prompt", default="")
    p.add_argument("--audio", help="reference recording (any common format)")
    p.add_argument("--language", default="en")
    p.add_argument("--description", default="")
    p = vo.add_parser("list", help="list a workspace's voices")
    p.add_argument("--workspace", default="default")
    vo.add_parser("delete", help="delete a voice").add_argument("id")


def _story_fields(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {n: getattr(args, n) for n in _STORY_OPTS if getattr(args, n) is not None}
    if args.file:
        fields["transcript"] = Path(args.file).read_text(encoding="utf-8")
    elif args.transcript is not None:
        fields["transcript"] = args.transcript
    if args.sort_order is not None:
        fields["sort_order"] = args.sort_order
    if args.default_voice_id is not None:
        fields["default_voice_id"] = None if args.default_voice_id == "none" else args.default_voice_id
    return fields


async def run(args: argparse.Namespace, db: Database) -> tuple[str, Any]:
    """(kind, result) like ``relay.admin.cli._run``; ``AdminError`` becomes ``ValueError`` (exit 1 + message)."""
    try:
        return await _run(args, db)
    except admin.AdminError as exc:
        raise ValueError(exc.message) from None


async def _run(args: argparse.Namespace, db: Database) -> tuple[str, Any]:
    op = args.op
    if args.thing == "stories":
        if op == "create":
            return "story", (await admin.create_story(db, args.workspace, _story_fields(args))).admin_json()
        if op == "update":
            return "story", (await admin.update_story(db, args.id, _story_fields(args))).admin_json()
        if op == "list":
            return "story", [s.admin_json() for s in await admin.list_stories(db, args.workspace)]
        if op == "show":
            return "story", (await admin.get_story(db, args.id)).admin_json()
        if op == "delete":
            await admin.delete_story(db, args.id)
            return "story", {"id": args.id, "deleted": True}
    if args.thing == "voices":
        if op == "list":
            return "voice", [v.admin_json() for v in await admin.list_voices(db, args.workspace)]
        services = await build_services(load_settings(getattr(args, "config", None)), db)
        try:
            if op == "create":
                audio = await asyncio.to_thread(Path(args.audio).read_bytes) if args.audio else None
                voice = await admin.create_workspace_voice(
                    db, services, args.workspace, name=args.name, design_prompt=args.design_prompt, audio=audio,
                    description=args.description, language=args.language)
                return "voice", voice.admin_json()
            if op == "delete":
                await admin.delete_voice(db, services, args.id)
                return "voice", {"id": args.id, "deleted": True}
        finally:
            await services.close()
    raise ValueError(f"unknown admin command {args.thing} {op}")
