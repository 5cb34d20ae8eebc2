"""relay's value objects: what the store holds and what authentication resolves.

Plain frozen dataclasses, no I/O. The store's repositories build them from rows;
the media plane reads ``Assistant``; ``authenticate()`` returns a ``Device``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Provider = Literal["local", "openai", "azure", "compatible"]
Dialect = Literal["beta", "ga"]
ToolSide = Literal["client", "server"]
ClientStatus = Literal["active", "disabled"]

PROVIDERS: tuple[str, ...] = ("local", "openai", "azure", "compatible")
DIALECTS: tuple[str, ...] = ("beta", "ga")
AUDIO_FORMATS: tuple[str, ...] = ("pcm16", "g711_ulaw", "g711_alaw")
# Session fields a device may be allowed to change with its own session.update
# (an allow entry is a field, or ``field.sub`` for one key of an object field).
DEVICE_UPDATABLE_FIELDS: tuple[str, ...] = (
    "instructions", "voice", "modalities", "turn_detection", "input_audio_transcription",
    "temperature", "max_response_output_tokens", "tools", "tool_choice",
    "input_audio_format", "output_audio_format",
    "model",  # on the WebSocket edge: the client's ?model= is honoured only when allowed
)
# What a device may change unless the assistant says otherwise: nothing of the operator's
# configuration (instructions, voice, tools stay server-side), only conversational knobs.
DEFAULT_DEVICE_UPDATE_ALLOW: tuple[str, ...] = (
    "modalities", "turn_detection", "input_audio_transcription", "temperature", "max_response_output_tokens",
)


@dataclass(frozen=True)
class Tool:
    """A function tool of an assistant.

    ``side == "client"``: forwarded to the device, which executes it (seed 000).
    ``side == "server"``: executed by relay by POSTing the arguments to ``webhook_url``.
    """

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    side: ToolSide = "client"
    webhook_url: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "parameters": self.parameters,
                "side": self.side, "webhook_url": self.webhook_url}

    def to_realtime(self) -> dict[str, Any]:
        """The tool as the Realtime protocol's session.tools entry (no relay-only fields)."""
        return {"type": "function", "name": self.name, "description": self.description,
                "parameters": self.parameters}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Tool:
        if not isinstance(doc, dict) or not isinstance(doc.get("name"), str) or not doc["name"]:
            raise ValueError("a tool needs a non-empty string 'name'")
        side = doc.get("side", "client")
        if side not in ("client", "server"):
            raise ValueError(f"tool {doc['name']}: side must be 'client' or 'server'")
        webhook_url = doc.get("webhook_url")
        if webhook_url is None:
            webhook_url = ""
        if not isinstance(webhook_url, str):
            raise ValueError(f"tool {doc['name']}: webhook_url must be a string")
        if side == "server" and not webhook_url:
            raise ValueError(f"tool {doc['name']}: a server-side tool needs a webhook_url")
        if webhook_url and not str(webhook_url).startswith(("http://", "https://")):
            raise ValueError(f"tool {doc['name']}: webhook_url must be http(s)")
        params = doc.get("parameters")
        if params is None or params == {}:
            params = {"type": "object", "properties": {}}
        if not isinstance(params, dict):
            raise ValueError(f"tool {doc['name']}: parameters must be a JSON object")
        desc = doc.get("description")
        if desc is None:
            desc = ""
        if not isinstance(desc, str):
            raise ValueError(f"tool {doc['name']}: description must be a string")
        return cls(name=doc["name"], description=desc, parameters=params, side=side, webhook_url=webhook_url)


#: the four client-side device tools of the Realtime device API (``Assistant.all_tools``)
DEVICE_TOOLS: tuple[Tool, ...] = (
    Tool(
        name="adjust_device_volume",
        description="Increase or decrease the device volume by 10%.",
        parameters={"type": "object", "properties": {"action": {"type": "string", "enum": ["increase", "decrease"]}},
                    "required": ["action"]},
    ),
    Tool(
        name="set_device_volume",
        description="Set the device volume to a specific level (percent).",
        parameters={"type": "object",
                    "properties": {"volume_level": {"type": "integer", "minimum": 0, "maximum": 100}},
                    "required": ["volume_level"]},
    ),
    Tool(name="quiet_device", description="Mute the device audio (set volume to 0%)."),
    Tool(name="stop_audio", description="Stop the audio or music currently playing (does not mute)."),
)


@dataclass(frozen=True)
class Assistant:
    """Everything the media plane needs to configure an upstream Realtime session.

    ``provider == "local"`` means relay's built-in local assistant (model ``relay-echo``).
    ``tools`` are the assistant's own tools; when ``device_tools`` is set the four
    client-side device tools of seed 000 are enabled as well (see ``all_tools``).
    """

    id: str
    name: str
    workspace_id: str | None = None
    provider: Provider = "local"
    upstream_url: str = ""
    api_key: str = field(default="", repr=False)  # secret: never logged, never returned by the API
    model: str = "relay-echo"
    voice: str = "alloy"
    instructions: str = ""
    tools: tuple[Tool, ...] = ()
    device_tools: bool = True
    turn_detection: dict[str, Any] | None = field(default_factory=lambda: {"type": "server_vad"})
    transcription: dict[str, Any] | None = None
    input_audio_format: str = "pcm16"
    output_audio_format: str = "pcm16"
    dialect: Dialect = "beta"
    allow_g711: bool = True
    device_update_allow: tuple[str, ...] = DEFAULT_DEVICE_UPDATE_ALLOW
    created_at: float = 0.0

    @property
    def all_tools(self) -> tuple[Tool, ...]:
        """The assistant's tools plus, when enabled, the four device tools (own tools win on name clash)."""
        if not self.device_tools:
            return self.tools
        own = {t.name for t in self.tools}
        return self.tools + tuple(t for t in DEVICE_TOOLS if t.name not in own)

    def public_json(self) -> dict[str, Any]:
        """The assistant as the admin API shows it (the upstream API key is never shown)."""
        return {
            "id": self.id, "name": self.name, "workspace_id": self.workspace_id, "provider": self.provider,
            "upstream_url": self.upstream_url, "has_api_key": bool(self.api_key), "model": self.model,
            "voice": self.voice, "instructions": self.instructions, "tools": [t.to_json() for t in self.tools],
            "device_tools": self.device_tools, "turn_detection": self.turn_detection,
            "transcription": self.transcription, "input_audio_format": self.input_audio_format,
            "output_audio_format": self.output_audio_format, "dialect": self.dialect,
            "allow_g711": self.allow_g711, "device_update_allow": list(self.device_update_allow),
            "created_at": self.created_at,
        }


@dataclass(frozen=True)
class Workspace:
    id: str
    name: str
    allow_self_enrol: bool = False
    allow_secretless: bool = False
    default_assistant_id: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    has_key: bool = False
    created_at: float = 0.0

    def public_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "allow_self_enrol": self.allow_self_enrol,
                "allow_secretless": self.allow_secretless, "default_assistant_id": self.default_assistant_id,
                "settings": self.settings, "has_key": self.has_key, "created_at": self.created_at}


@dataclass(frozen=True)
class ClientRecord:
    """A registered device of a workspace (a row of ``clients``, the ``X-Client-Id`` devices send).

    Not relay's Python device SDK (``relay.client.RelayClient``) nor the upstream socket
    (``relay.upstream.client.UpstreamClient``)."""

    id: str  # UUID
    workspace_id: str
    assistant_id: str | None = None
    name: str = ""
    status: ClientStatus = "active"
    enrolled_at: float | None = None
    last_seen_at: float | None = None
    created_at: float = 0.0
    # The stored secret hash (hex) and its salt; None while not enrolled.
    secret_hash: str | None = field(default=None, repr=False)
    secret_salt: str | None = field(default=None, repr=False)

    @property
    def enrolled(self) -> bool:
        return self.secret_hash is not None

    def public_json(self) -> dict[str, Any]:
        return {"id": self.id, "workspace_id": self.workspace_id, "assistant_id": self.assistant_id,
                "name": self.name, "status": self.status, "enrolled": self.enrolled,
                "enrolled_at": self.enrolled_at, "last_seen_at": self.last_seen_at, "created_at": self.created_at}


@dataclass(frozen=True)
class SessionRecord:
    id: str  # "session_..."
    client_id: str | None
    workspace_id: str | None
    assistant_id: str | None
    demo: bool
    created_at: float
    expires_at: float
    ice_servers: list[dict[str, Any]] = field(default_factory=list)
    modalities: list[str] = field(default_factory=lambda: ["text", "audio"])


@dataclass(frozen=True)
class Device:
    """An authenticated caller, as ``relay.auth.authenticate`` resolves it."""

    client_id: str
    workspace_id: str | None
    assistant: Assistant
    demo: bool
    max_call_s: int
    enrolled_now: bool = False  # this request enrolled the secret (TOFU) or the client (self-enrol)
