"""The app API's part of ``/openapi.json`` (merged by ``relay.web.openapi`` from ``relay.web.app_api.routes.OPENAPI``)."""

from __future__ import annotations

from typing import Any

from relay.store.app_stories import MAX_TRANSCRIPT_CHARS, SORT_ORDER_MAX, SORT_ORDER_MIN
from relay.web.app_api.tts import MAX_TEXT_CHARS
from relay.web.app_api.voices import MAX_DESCRIPTION_CHARS, MAX_NAME_CHARS, MAX_PROMPT_CHARS
from relay.web.openapi import CLIENT_ID_HEADER

_STR = {"type": "string"}
_STR_N = {"type": ["string", "null"]}
_NONBLANK = {"type": "string", "minLength": 1, "pattern": r"\S"}  # surrounding blanks are ignored


def _opt(max_chars: int) -> dict[str, Any]:
    """An optional string field of the app API: null means absent."""
    return {"type": ["string", "null"], "maxLength": max_chars}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): {"$ref": f"#/components/responses/AppE{c}"} for c in codes}


def _admin_errors(*codes: int) -> dict[str, Any]:
    return {str(c): {"$ref": f"#/components/responses/E{c}"} for c in codes}


APP_HEADERS = [
    {"name": "X-Workspace-Key", "in": "header", "required": True, "schema": _STR},
    {"name": "X-Client-Id", "in": "header", "required": True, "schema": CLIENT_ID_HEADER},
    {"name": "X-Client-Secret", "in": "header", "required": True,
     "schema": {"type": "string", "minLength": 32, "maxLength": 512}},
    {"name": "X-App-Source", "in": "header", "required": False, "schema": {"type": "string"},
     "description": "Recorded for analytics: its first 64 printable characters (a longer value is cut, not refused)."},
]
_SEC = [{"WorkspaceKey": [], "ClientId": [], "ClientSecret": []}]
_ADMIN = [{"AdminToken": []}]
_VOICE_ID = {"name": "voice_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
_VOICE_NAME = {**_NONBLANK, "maxLength": 200}
_SLUG = {"name": "slug", "in": "path", "required": True, "schema": _STR}
_ID = {"name": "id", "in": "path", "required": True, "schema": _STR}

#: a story's fields (relay.store.app_stories.validate)
_STORY_FIELDS: dict[str, Any] = {
    "slug": {"type": ["string", "null"], "description": "lower-cased; empty or null: none (not listed to devices)",
             "pattern": r"^\s*([A-Za-z0-9]([A-Za-z0-9-]{0,98}[A-Za-z0-9])?)?\s*$"},
    "name": {**_NONBLANK, "maxLength": 200}, "transcript": {"type": "string", "maxLength": MAX_TRANSCRIPT_CHARS},
    "excerpt": _opt(2000), "age_group": _opt(2000), "illustration_url": _opt(2000), "illustration_alt": _opt(2000),
    "sort_order": {"type": "integer", "minimum": SORT_ORDER_MIN, "maximum": SORT_ORDER_MAX},
    "default_voice_id": {"type": ["string", "null"], "description": "a voice of the story's workspace"},
}

SCHEMAS: dict[str, Any] = {
    "AppVoice": {"type": "object", "required": ["voice_id", "name", "category"], "additionalProperties": False,
                 "properties": {"voice_id": _STR, "name": _STR, "category": {"enum": ["cloned", "workspace"]},
                                "preview_url": _STR}},
    "AppCloneResponse": {"type": "object", "required": ["voice_id", "name", "status"], "additionalProperties": False,
                         "properties": {"voice_id": _STR, "name": _STR, "status": _STR, "preview_url": _STR_N}},
    "AppDesignRequest": {"type": "object", "required": ["design_prompt"], "properties": {
        "name": _opt(MAX_NAME_CHARS), "design_prompt": {**_NONBLANK, "maxLength": MAX_PROMPT_CHARS},
        "language": _opt(16), "description": _opt(MAX_DESCRIPTION_CHARS)}},
    "AppTtsRequest": {"type": "object", "required": ["text"], "properties": {
        "text": {**_NONBLANK, "maxLength": MAX_TEXT_CHARS},
        "output_format": {**_opt(64), "description": "containing `mp3`: MP3, else WAV; null: mp3_44100_128"},
        "speed": {"type": ["number", "null"], "minimum": 0.25, "maximum": 4.0, "description": "null: 1.0"},
        "stability": {"type": ["number", "null"], "minimum": 0, "maximum": 1, "description": "null: 0.75"}}},
    "AppTtsResponse": {"type": "object", "additionalProperties": False,
                       "required": ["audio_url", "expires_in", "duration_seconds", "timestamps", "full_text"],
                       "properties": {
                           "audio_url": _STR, "expires_in": {"type": "integer"}, "duration_seconds": {"type": "number"},
                           "full_text": _STR,
                           "timestamps": {"type": "array", "items": {
                               "type": "object", "required": ["word", "start_ms", "end_ms"],
                               "additionalProperties": False,
                               "properties": {"word": _STR, "start_ms": {"type": "integer"},
                                              "end_ms": {"type": "integer"}}}}}},
    "AppStoryCard": {"type": "object", "additionalProperties": False,
                     "required": ["story_id", "slug", "name", "sort_order"],
                     "properties": {"story_id": _STR, "slug": _STR, "name": _STR, "excerpt": _STR_N,
                                    "age_group": _STR_N, "illustration_url": _STR_N, "illustration_alt": _STR_N,
                                    "sort_order": {"type": "integer"}}},
    "AppStory": {"type": "object", "additionalProperties": False,
                 "required": ["story_id", "slug", "name", "transcript", "estimated_reading_time_seconds"],
                 "properties": {"story_id": _STR, "slug": _STR, "name": _STR, "transcript": _STR,
                                "excerpt": _STR_N, "age_group": _STR_N, "illustration_url": _STR_N,
                                "illustration_alt": _STR_N, "estimated_reading_time_seconds": {"type": "integer"}}},
    "AppReadRequest": {"type": "object", "properties": {"voice_id": {"type": "string", "format": "uuid"}}},
    "AdminStory": {"type": "object", "required": ["story_id", "workspace_id", "name", "sort_order"], "properties": {
        "story_id": _STR, "workspace_id": _STR, "slug": _STR_N, "name": _STR, "transcript": _STR,
        "excerpt": _STR_N, "age_group": _STR_N, "illustration_url": _STR_N, "illustration_alt": _STR_N,
        "sort_order": {"type": "integer"}, "default_voice_id": _STR_N,
        "created_at": {"type": "string", "format": "date-time"}, "updated_at": {"type": "string", "format": "date-time"}, "estimated_reading_time_seconds": {"type": "integer"}}},
    "AdminStoryFields": {"type": "object", "additionalProperties": False, "properties": _STORY_FIELDS},
    "AdminStoryCreate": {"type": "object", "required": ["name"], "additionalProperties": False, "properties": {
        **_STORY_FIELDS, "workspace_id": {"type": ["string", "null"], "description": "null: `default`"}}},
    "AdminVoice": {"type": "object", "required": ["voice_id", "workspace_id", "category", "kind", "name"],
                   "properties": {"voice_id": _STR, "workspace_id": _STR, "client_id": _STR_N,
                                  "category": {"enum": ["cloned", "workspace"]},
                                  "kind": {"enum": ["clone", "design"]}, "name": _STR, "description": _STR,
                                  "language": _STR, "design_prompt": _STR, "transcript": _STR,
                                  "params": {"type": "object"}, "synced_to_adapter": {"type": "boolean"},
                                  "status": _STR, "created_at": {"type": "string", "format": "date-time"}}},
    "Deleted": {"type": "object", "required": ["id", "deleted"], "properties": {"id": _STR,
                                                                             "deleted": {"const": True}}},
}


def _app_op(summary: str, ok: str, ok_body: dict[str, Any], errors: tuple[int, ...], **extra: Any) -> dict[str, Any]:
    params = APP_HEADERS + extra.pop("params", [])
    return {"summary": summary, "tags": ["app"], "security": _SEC, "parameters": params,
            "responses": {ok: ok_body, **_errors(*errors)}, **extra}


_COMMON = (400, 401, 404, 429, 500)

PATHS: dict[str, Any] = {
    "/v1/app/voices": {"get": _app_op("Voices this device may use", "200", _json(
        {"type": "object", "required": ["voices"], "properties": {"voices": {"type": "array",
                                                                              "items": _ref("AppVoice")}}}),
        _COMMON + (403,))},
    "/v1/app/voices/clone": {"post": _app_op(
        "Clone a voice from a 10-30 s recording (any common format)", "201",
        _json(_ref("AppCloneResponse"), "Created"), _COMMON + (403, 409, 413, 415, 422, 502, 503),
        requestBody={"required": True, "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["name", "audio_file"],
            "properties": {"name": {**_NONBLANK, "maxLength": MAX_NAME_CHARS}, "description": _STR,
                           "audio_file": {"type": "string", "contentMediaType": "application/octet-stream"}}}}}})},
    "/v1/app/voices/design": {"post": _app_op(
        "Design a voice from a description", "201", _json(_ref("AppCloneResponse"), "Created"),
        _COMMON + (403, 409, 413, 415, 502, 503),
        requestBody={"required": True, "content": {"application/json": {"schema": _ref("AppDesignRequest")}}})},
    "/v1/app/text-to-speech/{voice_id}/with-timestamps": {"post": _app_op(
        "Speech with word timestamps (signed audio URL)", "200", _json(_ref("AppTtsResponse")),
        _COMMON + (403, 413, 415, 502, 503), params=[_VOICE_ID],
        requestBody={"required": True, "content": {"application/json": {"schema": _ref("AppTtsRequest")}}})},
    "/v1/app/stories": {"get": _app_op("Story cards (slugged stories, by sort_order)", "200", _json(
        {"type": "array", "items": _ref("AppStoryCard")}), _COMMON + (403,))},
    "/v1/app/stories/{slug}": {"get": _app_op("A story with its transcript", "200", _json(_ref("AppStory")),
                                              _COMMON + (403,), params=[_SLUG])},
    "/v1/app/stories/{slug}/read": {"post": _app_op(
        "Narrate the story as WAV", "200",
        {"description": "WAV audio", "content": {"audio/wav": {"schema": {"type": "string",
                                                                          "contentMediaType": "audio/wav"}}}},
        _COMMON + (403, 413, 415, 502, 503), params=[_SLUG],
        requestBody={"required": False, "content": {"application/json": {"schema": _ref("AppReadRequest")}}})},
    "/v1/app/files/{key}": {"get": {
        "summary": "A file behind a signed URL (no headers; the URL is the credential)", "tags": ["app"],
        "parameters": [{"name": "key", "in": "path", "required": True, "schema": _STR},
                       {"name": "expires", "in": "query", "required": True, "schema": _STR},
                       {"name": "sig", "in": "query", "required": True, "schema": _STR}],
        "responses": {"200": {"description": "The file", "content": {
            "audio/mpeg": {"schema": {"type": "string"}}, "audio/wav": {"schema": {"type": "string"}}}},
            "206": {"description": "A byte range of the file (Range request)"},
            **_errors(403, 404, 500)}}},
    "/admin/v1/stories": {
        "get": {"summary": "List stories", "tags": ["admin"], "security": _ADMIN,
                "parameters": [{"name": "workspace_id", "in": "query", "required": False, "schema": _STR}],
                "responses": {"200": _json({"type": "object", "required": ["data"], "properties": {
                    "data": {"type": "array", "items": _ref("AdminStory")}}}), **_admin_errors(401, 404, 429)}},
        "post": {"summary": "Create a story", "tags": ["admin"], "security": _ADMIN,
                 "requestBody": {"required": True, "content": {"application/json": {
                     "schema": _ref("AdminStoryCreate")}}},
                 "responses": {"201": _json(_ref("AdminStory"), "Created"),
                               **_admin_errors(400, 401, 404, 409, 413, 415, 429)}}},
    "/admin/v1/stories/{id}": {
        "get": {"summary": "A story", "tags": ["admin"], "security": _ADMIN, "parameters": [_ID],
                "responses": {"200": _json(_ref("AdminStory")), **_admin_errors(401, 404, 429)}},
        "patch": {"summary": "Change a story", "tags": ["admin"], "security": _ADMIN, "parameters": [_ID],
                  "requestBody": {"required": True, "content": {"application/json": {
                      "schema": _ref("AdminStoryFields")}}},
                  "responses": {"200": _json(_ref("AdminStory")),
                                **_admin_errors(400, 401, 404, 409, 413, 415, 429)}},
        "delete": {"summary": "Delete a story", "tags": ["admin"], "security": _ADMIN, "parameters": [_ID],
                   "responses": {"200": _json(_ref("Deleted")), **_admin_errors(401, 404, 429)}}},
    "/admin/v1/app-usage": {"get": {
        "summary": "App API requests per X-App-Source and endpoint", "tags": ["admin"], "security": _ADMIN,
        "parameters": [{"name": "workspace_id", "in": "query", "required": False, "schema": _STR}],
        "responses": {"200": _json({"type": "object", "required": ["data"], "properties": {"data": {
            "type": "array", "items": {"type": "object", "required": ["app_source", "endpoint", "requests"],
                                       "properties": {"app_source": _STR_N, "endpoint": _STR,
                                                      "requests": {"type": "integer"}}}}}}),
                      **_admin_errors(401, 429)}}},
    "/admin/v1/voices": {
        "get": {"summary": "A workspace's voices", "tags": ["admin"], "security": _ADMIN,
                "parameters": [{"name": "workspace_id", "in": "query", "required": False, "schema": _STR}],
                "responses": {"200": _json({"type": "object", "required": ["data"], "properties": {
                    "data": {"type": "array", "items": _ref("AdminVoice")}}}), **_admin_errors(401, 404, 429)}},
        "post": {"summary": "Create a workspace voice (JSON design, or multipart with audio_file)",
                 "tags": ["admin"], "security": _ADMIN,
                 "requestBody": {"required": True, "content": {
                     "application/json": {"schema": {"type": "object", "required": ["name", "design_prompt"],
                                                     "properties": {"workspace_id": _STR, "name": _VOICE_NAME,
                                                                    "design_prompt": {**_NONBLANK, "maxLength": 1000},
                                                                    "language": _STR, "description": _STR}}},
                     "multipart/form-data": {"schema": {"type": "object", "required": ["name", "audio_file"],
                                                        "properties": {"workspace_id": _STR, "name": _VOICE_NAME,
                                                                       "description": _STR,
                                                                       "audio_file": {"type": "string"}}}}}},
                 "responses": {"201": _json(_ref("AdminVoice"), "Created"),
                               **_admin_errors(400, 401, 404, 413, 415, 429, 500, 503)}}},
    "/admin/v1/voices/{id}": {
        "patch": {"summary": "Rename a voice", "tags": ["admin"], "security": _ADMIN, "parameters": [_ID],
                  "requestBody": {"required": True, "content": {"application/json": {"schema": {
                      "type": "object", "additionalProperties": False,
                      "properties": {"name": _VOICE_NAME, "description": {"type": "string", "maxLength": 2000}}}}}},
                  "responses": {"200": _json(_ref("AdminVoice")), **_admin_errors(400, 401, 404, 413, 415, 429)}},
        "delete": {"summary": "Delete a voice", "tags": ["admin"], "security": _ADMIN, "parameters": [_ID],
                   "responses": {"200": _json(_ref("Deleted")), **_admin_errors(401, 404, 429)}}},
}

_DESCRIPTIONS = {400: "Invalid request (see detail.code)", 401: "Invalid or missing credentials",
                 403: "Not allowed (VOICE_NOT_AVAILABLE, URL_EXPIRED, INVALID_SIGNATURE, ...)",
                 404: "Not found (VOICE_NOT_FOUND, STORY_NOT_FOUND, CLIENT_NOT_FOUND, ...)",
                 409: "Conflict (VOICE_LIMIT_REACHED)", 413: "Request too large", 415: "Unsupported content type",
                 422: "TRANSCRIPTION_FAILED", 429: "Too many requests (see Retry-After)",
                 500: "Server error (STORAGE_ERROR, ...)",
                 502: "Engine/adapter failure (TTS_FAILED, ADAPTER_SYNC_FAILED, DESIGN_FAILED)",
                 503: "TTS_BUSY or ADAPTER_NOT_CONFIGURED"}

OPENAPI: dict[str, Any] = {
    "paths": PATHS,
    "components": {"schemas": SCHEMAS, "responses": {
        f"AppE{c}": {"description": d, "content": {"application/json": {"schema": {
            "$ref": "#/components/schemas/AppError"}}}} for c, d in _DESCRIPTIONS.items()}},
}
