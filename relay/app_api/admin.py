"""Admin operations of the app API: stories and workspace voices.

Plain async functions over a ``Database`` and ``AppServices``, shared by the
admin HTTP API (``relay.web.app_api.admin``, mounted under ``/admin/v1/``)
and the CLI (``relay.admin.app_api``: ``relay admin stories ...``, ``relay admin voices ...``). They
raise ``AdminError`` (status, message, code); callers render it in their shape.
"""

from __future__ import annotations

import logging
from typing import Any

from relay.app_api.errors import AppError
from relay.app_api.services import AppServices
from relay.app_api.voices import make_clone, make_design, reference_key
from relay.errors import DomainError
from relay.files import StorageError
from relay.store import app_stories as stories_repo
from relay.store import app_voices as voices_repo
from relay.store import workspaces as workspaces_repo
from relay.store.app_stories import StoryRow
from relay.store.app_voices import VoiceRow
from relay.store.db import Database
from relay.store.errors import Conflict, NotFound

log = logging.getLogger("relay.app_api")


class AdminError(DomainError):
    """A refused admin operation: ``code`` lower case, as the admin API documents its codes."""


async def _workspace(db: Database, workspace_id: str) -> None:
    if await workspaces_repo.find(db, workspace_id) is None:
        raise AdminError(404, f"workspace {workspace_id} not found", "workspace_not_found")


async def _check_default_voice(db: Database, workspace_id: str, fields: dict[str, Any]) -> None:
    vid = fields.get("default_voice_id")
    if vid:
        voice = await voices_repo.find_in_workspace(db, workspace_id, str(vid).lower())
        if voice is None:
            raise AdminError(404, "default_voice_id is not a voice of this workspace", "voice_not_found")
        fields["default_voice_id"] = voice.id


# --- stories ---------------------------------------------------------------

async def create_story(db: Database, workspace_id: str, fields: dict[str, Any]) -> StoryRow:
    await _workspace(db, workspace_id)
    fields = dict(fields)
    await _check_default_voice(db, workspace_id, fields)
    try:
        return await stories_repo.create(db, workspace_id, **fields)
    except ValueError as exc:
        if isinstance(exc, Conflict):
            raise AdminError(409, str(exc), "slug_taken") from None
        raise AdminError(400, str(exc), "invalid_story") from None


async def update_story(db: Database, story_id: str, fields: dict[str, Any]) -> StoryRow:
    try:
        story = await stories_repo.get(db, story_id)
        fields = dict(fields)
        await _check_default_voice(db, story.workspace_id, fields)
        return await stories_repo.update(db, story_id, **fields)
    except NotFound as exc:
        raise AdminError(404, str(exc), "story_not_found") from None
    except ValueError as exc:
        if isinstance(exc, Conflict):
            raise AdminError(409, str(exc), "slug_taken") from None
        raise AdminError(400, str(exc), "invalid_story") from None


async def delete_story(db: Database, story_id: str) -> None:
    try:
        await stories_repo.delete(db, story_id)
    except NotFound as exc:
        raise AdminError(404, str(exc), "story_not_found") from None


async def get_story(db: Database, story_id: str) -> StoryRow:
    try:
        return await stories_repo.get(db, story_id)
    except NotFound as exc:
        raise AdminError(404, str(exc), "story_not_found") from None


async def list_stories(db: Database, workspace_id: str | None = None) -> list[StoryRow]:
    return await stories_repo.list_all(db, workspace_id)


# --- workspace voices --------------------------------------------------------

def _from_app_error(exc: AppError) -> AdminError:
    return AdminError(exc.status, exc.message, exc.code.lower())


async def create_workspace_voice(db: Database, services: AppServices, workspace_id: str, *, name: str,
                                 design_prompt: str = "", audio: bytes | None = None, description: str = "",
                                 language: str = "en") -> VoiceRow:
    """A workspace voice (visible to every device of the workspace) from a design prompt or a 10-30 s recording."""
    await _workspace(db, workspace_id)
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise AdminError(400, "name must be 1-200 characters", "invalid_voice")
    design_prompt = (design_prompt or "").strip()  # a blank prompt is no prompt
    if bool(design_prompt) == bool(audio):
        raise AdminError(400, "give exactly one of design_prompt or audio", "invalid_voice")
    voice_id = voices_repo.new_id()
    transcript = ""
    try:
        if audio:
            wav, transcript, reg = await make_clone(services, name, audio, language)
            kind = "clone"
        else:
            if len(design_prompt) > 1000:
                raise AdminError(400, "design_prompt must be at most 1000 characters", "invalid_voice")
            reg = await make_design(services, name, design_prompt, language)
            wav = reg.reference_wav or b""
            kind = "design"
    except AppError as exc:
        raise _from_app_error(exc) from None
    key = reference_key(voice_id) if wav else None
    if key:
        try:
            await services.storage.put(key, wav)
        except StorageError as exc:
            raise AdminError(500, str(exc), "storage_error") from None
    return await voices_repo.create(db, voice_id=voice_id, workspace_id=workspace_id, category="workspace",
                                    kind=kind, name=name, description=description, language=language,
                                    design_prompt=design_prompt, transcript=transcript, params=reg.params,
                                    engine_ref=reg.engine_ref, reference_key=key, status=reg.status)


async def list_voices(db: Database, workspace_id: str) -> list[VoiceRow]:
    await _workspace(db, workspace_id)
    return await voices_repo.list_workspace(db, workspace_id)


async def update_voice(db: Database, voice_id: str, fields: dict[str, Any]) -> VoiceRow:
    try:
        return await voices_repo.update(db, voice_id, **fields)
    except NotFound as exc:
        raise AdminError(404, str(exc), "voice_not_found") from None
    except ValueError as exc:
        raise AdminError(400, str(exc), "invalid_voice") from None


async def delete_voice(db: Database, services: AppServices, voice_id: str) -> None:
    try:
        voice = await voices_repo.delete(db, voice_id)
    except NotFound as exc:
        raise AdminError(404, str(exc), "voice_not_found") from None
    if voice.reference_key:
        try:
            await services.storage.delete(voice.reference_key)
        except StorageError as exc:  # the row is gone; an orphaned file is harmless, but say so
            log.warning("could not delete the reference audio of voice %s: %s", voice_id, exc)
