"""relay's settings: one frozen object, read in this module only.

Precedence, lowest first: the defaults below, a TOML file (``--config``), then
``RELAY_*`` environment variables. Every field documents itself through its
metadata (``env``, ``doc``); ``relay config --markdown`` renders the README
table from it, so the table cannot drift from the code.

Adding a setting: add one field with ``_f(default, "doc")``. The environment
name is ``RELAY_`` + the upper-cased field name. Nothing else in the codebase
reads ``os.environ`` for configuration; everything receives a ``Settings``.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ENV_PREFIX = "RELAY_"


def _f(default: Any, doc: str, *, secret: bool = False) -> Any:
    meta = {"doc": doc, "secret": secret}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


class SettingsError(ValueError):
    """A setting has a value that cannot be used."""


@dataclass(frozen=True)
class Settings:
    # --- server -----------------------------------------------------------
    host: str = _f("127.0.0.1", "Address the HTTP server binds to.")
    port: int = _f(8080, "TCP port of the HTTP server.")
    data_dir: str = _f(
        "",
        "Directory for the embedded SQLite database and local files. Empty: `$XDG_DATA_HOME/relay` "
        "(`~/.local/share/relay` when unset), the same from any working directory; a relative path is taken "
        "from the working directory.",
    )
    database_url: str = _f(
        "",
        "`sqlite:///path.db` or `postgresql://user:pass@host/db`. Empty: SQLite at `<data_dir>/relay.db`.",
        secret=True,
    )
    log_level: str = _f("info", "debug, info, warning or error.")
    log_format: str = _f("auto", "`json`, `text`, or `auto` (JSON when stderr is not a terminal).")
    cors_origins: list[str] = _f(["*"], "Allowed CORS origins, comma-separated; `*` allows any (no cookies are used).")
    workers: str = _f(
        "1",
        "Worker processes of `relay serve` on this node (`--workers`): a number, or `auto` for one per core. "
        "They share the HTTP port; each has its own event loop, media clock and ICE UDP port (`ice_udp_port + i`; with `ice_mux` off a slice of the ICE port range).",
    )
    shutdown_timeout_s: float = _f(10.0, "Graceful drain time on SIGTERM/SIGINT before live calls are closed.")
    public_base_url: str = _f("", "External base URL (for signed links); empty: derived from the request.")

    # --- request limits ---------------------------------------------------
    max_json_body_bytes: int = _f(64 * 1024, "Largest accepted JSON request body.")
    max_sdp_bytes: int = _f(32 * 1024, "Largest accepted SDP offer.")
    max_upload_bytes: int = _f(10 * 1024 * 1024, "Largest accepted file upload (voice clone audio).")
    max_header_bytes: int = _f(8190, "Largest accepted request line / header field.")
    http_header_timeout_s: float = _f(10.0, "A connection that has not sent a whole request line and headers this long after it opened (or after the first byte of its next request) is closed.")
    http_body_timeout_s: float = _f(10.0, "A request body that makes no progress for this long is abandoned and its connection closed.")
    http_keepalive_timeout_s: float = _f(30.0, "An idle keep-alive connection (between requests) is closed after this long.")
    http_pending_per_address_max: int = _f(1000, "Connections one address may hold open that have not delivered a whole request yet; beyond it new ones are closed at once (WebSocket calls and connections between requests do not count).")

    # --- device authentication -------------------------------------------
    demo_mode: bool = _f(False, "Honour `X-Demo-Mode: true` (bypasses client validation). Off by default.")
    demo_max_call_s: int = _f(600, "Maximum length of a demo call, seconds.")
    console_link: bool = _f(
        True,
        "`relay serve` gives the `default` workspace a key and self-enrolment on first run (plain key in "
        "`<data_dir>/workspace-key`, mode 0600) and prints the console link carrying it to stdout (never logged). "
        "Off: neither.",
    )
    auth_fail_limit: int = _f(5, "Failed secrets allowed per client id (and per address x10) per window before 429; counted across every worker and node sharing the database.")
    auth_known_address_s: float = _f(7 * 86400.0, "An address where a client id (or API token) authenticated stays known this long: from there its secret is checked even while that id is over its failure budget, so attacks elsewhere cannot lock it out.")
    auth_fail_window_s: int = _f(60, "Window of the failed-secret throttle, seconds.")
    admin_token: str = _f("", "Bearer token of the admin HTTP API under `/admin/v1/`; empty disables it.", secret=True)
    metrics_token: str = _f("", "Bearer token for `GET /metrics` (Prometheus scrapes); empty: the admin token; both empty: 404.", secret=True)
    trust_forwarded_for: bool = _f(
        False, "Take the client address from the last `X-Forwarded-For` hop (only behind your own proxy/ingress)."
    )
    session_retention_s: int = _f(30 * 86400, "How long expired session records are kept before being purged.")

    # --- default assistant / upstream -------------------------------------
    upstream_url: str = _f("", "Realtime WebSocket URL of the default assistant; empty: the built-in local assistant.")
    upstream_api_key: str = _f("", "API key for `upstream_url` (sent as Bearer, or `api-key` for Azure).", secret=True)
    upstream_provider: str = _f("openai", "`openai`, `azure` or `compatible`: how the key is sent.")
    upstream_dialect: str = _f("beta", "Event dialect of the default assistant's upstream: `beta` or `ga`.")
    upstream_model: str = _f("gpt-4o-mini-realtime-preview", "Model of the default assistant.")
    upstream_voice: str = _f("alloy", "Voice of the default assistant.")
    upstream_instructions: str = _f("You are a helpful voice assistant.", "Instructions of the default assistant.")
    max_call_s: int = _f(3600, "Operator-set maximum call length, seconds.")
    # --- bridge (upstream client, call core, tools) ------------------------
    upstream_connect_timeout_s: float = _f(10.0, "Timeout for opening the upstream Realtime WebSocket.")
    usage_checkpoint_s: float = _f(10.0, "Every this many seconds each live call's usage row is written (one row per call, upserted; a crash loses at most this much of a call); 0: only at the call's end.")
    upstream_heartbeat_s: float = _f(3.0, "After this long without a frame from the upstream relay pings it; no pong within half of it: the call ends `upstream_timeout` (a frozen upstream is found within 1.5x this).")
    upstream_slow_notice_s: float = _f(2.0, "An upstream handshake still pending after this long: the device gets an `upstream_slow` error event while relay keeps trying up to `upstream_connect_timeout_s`.")
    upstream_send_queue_max: int = _f(512, "Events waiting per call for the upstream socket (sends are written at once while it keeps up) before sends are refused; at least 1.")
    upstream_recycle_s: int = _f(3300, "Replace a call's upstream session after this long (OpenAI expires them at 60 min).")
    device_event_max_bytes: int = _f(256 * 1024, "Largest data-channel message accepted from a device (the answer's a=max-message-size; refused while SCTP reassembles it, 3 refusals end the call).")
    tool_timeout_s: float = _f(10.0, "Timeout of a server-side tool's webhook POST.")
    tool_max_response_bytes: int = _f(64 * 1024, "Largest accepted webhook response body.")
    tool_allow_private: bool = _f(False, "Allow tool webhooks on private/loopback addresses (off: refused).")
    local_assistant_session_s: int = _f(3600, "Session lifetime of the built-in local assistant (it closes expired sessions).")

    # --- TURN / ICE -------------------------------------------------------
    turn_secret: list[str] = _f([], "coturn `static-auth-secret`s, comma-separated; the first signs, all verify.", secret=True)
    turn_urls: list[str] = _f([], "TURN URIs handed to devices, comma-separated (udp, tcp, `turns:...:443`).")
    turn_ttl_s: int = _f(3600, "Lifetime of issued TURN credentials, seconds.")
    stun_urls: list[str] = _f([], "STUN URIs handed to devices, comma-separated.")
    ice_host_addresses: list[str] = _f(
        [], "Local addresses relay's ICE agent may gather/advertise, comma-separated; empty: all interfaces."
    )
    # --- media plane (WebRTC edge) -----------------------------------------
    max_calls: int = _f(200, "Live calls per worker process; `POST /v1/realtime` answers 503 beyond it.")
    max_calls_per_client: int = _f(
        10,
        "Live calls one client id (or API token's client) may hold across the whole fleet -- every worker of "
        "every node sharing the database (429 beyond it); 0: no limit (load tests with one id).",
    )
    max_calls_per_workspace: int = _f(0, "Live calls one workspace's devices may hold across the fleet (429 "
                                         "beyond it); 0: no limit.")
    call_lease_s: float = _f(30.0, "Lease of a live call in the fleet's live-call registry: its worker renews "
                                   "it every third of this; a crashed worker's or node's calls stop counting "
                                   "against the caps this long after it died, and an operator's end request "
                                   "takes up to a third of it.")
    node_name: str = _f("", "This node's name in the live-call registry; empty: the host name.")
    max_half_open_calls: int = _f(150, "WebRTC calls per worker answered but not connected yet (each holds a slot up to `ice_connect_timeout_s`); beyond: 503 `capacity_exceeded`; 0: `max_calls`.")
    max_half_open_calls_per_address: int = _f(100, "WebRTC calls from one address answered but not connected yet, whatever their client ids; beyond: 429 `too_many_pending_calls`; 0: no limit.")
    uplink_chunk_ms: int = _f(40, "Length of each `input_audio_buffer.append` sent upstream, ms (latency first).")
    opus_complexity: int = _f(4, "libopus encoder complexity for the downlink, 0 (cheapest) .. 10 (see docs/media.md).")
    opus_adaptive: bool = _f(True, "Lower the downlink Opus complexity (`opus_complexity` -> 1 -> 0) while the worker's media clock is overloaded (its ticks finish past 60 % of the 20 ms period for 2 s), and raise it again after 5 s below 25 % (docs/media.md \"Load-adaptive complexity\").")
    opus_complexity_min: int = _f(0, "The lowest complexity `opus_adaptive` steps down to, 0 .. `opus_complexity`.")
    playout_trim_above_ms: int = _f(20, "When the assistant streams audio at real time (not faster) and the playout backlog stayed above this for a whole second (delay a stall left behind), inaudible frames in pauses are skipped until it is back to this, ms; speech is never dropped; 0: off (docs/media.md).")
    opus_bitrate_bps: int = _f(32000, "Downlink Opus bitrate, bits per second (mono voice).")
    ice_connect_timeout_s: float = _f(15.0, "A call whose device has not connected (ICE+DTLS) by then is dropped.")
    device_liveness_timeout_s: float = _f(4.0, "A connected WebRTC device from which nothing (RTP, RTCP or SCTP; a muted device still sends RTCP about once a second) arrived for this long is gone: the call ends `device_lost`, billed to the last packet; 0: off.")
    datachannel_queue_max: int = _f(256, "Events kept for the device while its data channel is not open yet.")
    datachannel_max_buffered_bytes: int = _f(1 << 20, "Events to a device not reading its data channel are dropped past this backlog.")
    device_events_per_s: float = _f(50.0, "Data-channel events a device may send per second (burst the same); beyond: an error event, dropped.")
    ice_public_ip: str = _f("", "Public address advertised in relay's ICE host candidates behind a 1:1 NAT; empty: the gathered addresses.")
    ice_port_min: int = _f(0, "Lowest UDP port for relay's ICE host candidates (with `ice_port_max`); 0: any port.")
    ice_port_max: int = _f(0, "Highest UDP port for relay's ICE host candidates; one port per call is used (with `ice_mux` off).")
    ice_mux: bool = _f(True, "One UDP port per worker (`ice_udp_port`) carries every call's ICE, DTLS, SRTP and SCTP, routed by ICE username then address; off: one port per call (`ice_port_min`..`ice_port_max`). See docs/ops.md.")
    ice_udp_port: int = _f(0, "The worker's one ICE UDP port with `ice_mux` on (worker i of a node: this + i); 0: a free port chosen at start (logged; tests).")
    dtls_cert_rotate_s: float = _f(86400.0, "Each worker answers calls with one DTLS certificate, replaced after this many seconds (and at start); live calls keep theirs. Max 25 days.")
    dtls_min_rsa_bits: int = _f(2048, "Smallest RSA key a device's DTLS certificate may have (1024..16384); smaller keys, and EC keys on curves other than P-256/P-384/P-521, fail the handshake (the call ends `dtls_failed`, counted as reason `weak_device_key` in `relay_dtls_failures_total`). 1024 admits libpeer (ESP32) builds with 1024-bit keys (docs/media.md).")
    downlink_dtx: bool = _f(False, "Discontinuous transmission: while the assistant is silent send one frame per 400 ms instead of 50/s (saves CPU and bandwidth; devices must tolerate RTP gaps, as browsers do).")

    # --- WebSocket edge for server clients (seed 003) -------------------------
    ws_heartbeat_s: float = _f(3.0, "After this long without a frame from a WebSocket client relay pings it; no pong within half of it: the call ends `client_timeout`, billed to the last frame.")
    ws_events_per_s: float = _f(200.0, "Events a WebSocket client (`GET /v1/realtime`) may send per second, audio appends included (burst the same); beyond: an error event, dropped.")
    ws_bytes_per_s: int = _f(1 << 20, "Bytes a WebSocket client may send per second (burst: the same or one largest event); beyond: an error event, dropped.")
    ws_send_backlog_bytes: int = _f(8 << 20, "Events queued to a WebSocket client that does not read; past it the call ends (`client_too_slow`).")

    # --- app REST API: TTS, voices, stories, file storage (#6) --------------
    tts_engine: str = _f("espeak", "`espeak` (embedded espeak-ng) or `qwen3` (the Qwen3-TTS adapter at `tts_adapter_url`).")
    tts_adapter_url: str = _f("", "Base URL of the Qwen3-TTS adapter service (protocol in docs/app_api.md).")
    tts_adapter_key: str = _f("", "Bearer token sent to the Qwen3-TTS adapter.", secret=True)
    tts_adapter_timeout_s: float = _f(120.0, "Timeout of one call to the Qwen3-TTS adapter, seconds.")
    tts_workers: int = _f(1, "TTS worker processes (synthesis, decoding, MP3, speech recognition); never the event loop.")
    tts_queue_limit: int = _f(4, "TTS requests allowed to wait for a worker; beyond it the app API answers 503 TTS_BUSY.")
    tts_per_client: int = _f(2, "TTS requests one device may have running at once; beyond it 429 RATE_LIMITED.")
    tts_output_retention_s: int = _f(3600, "Synthesised files are deleted this long after creation (their URLs expire sooner).")
    transcription_url: str = _f("", "OpenAI-compatible base URL for `/v1/audio/transcriptions` (clone transcripts); empty: embedded pocketsphinx.")
    transcription_api_key: str = _f("", "Bearer token for `transcription_url`.", secret=True)
    transcription_model: str = _f("whisper-1", "Model name sent to `transcription_url`.")
    url_signing_key: str = _f("", "HMAC key of signed file URLs (every node of a fleet must have the same one); empty: generated once and kept in the database on PostgreSQL (shared by the nodes), in `<data_dir>/url_signing.key` on SQLite.", secret=True)
    file_storage: str = _f("auto", "Where app API files (synthesised speech, voice references) live: `local` (`<data_dir>/files`, one node), `database` (the shared database: any node serves any signed link), `auto` (`database` on PostgreSQL, else `local`).")
    signed_url_ttl_s: int = _f(300, "Lifetime of signed audio/preview URLs, seconds.")

    @classmethod
    def field_specs(cls) -> list[tuple[str, str, Any, str, bool]]:
        """(name, env var, default, doc, secret) for every setting."""
        out = []
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                raise TypeError(f"setting {f.name} has no default")
            out.append((f.name, ENV_PREFIX + f.name.upper(), default, f.metadata["doc"], f.metadata["secret"]))
        return out

    @property
    def data_path(self) -> Path:
        """The data directory, absolute (``load_settings`` resolves it; a bare ``Settings()`` too)."""
        return Path(self.data_dir).absolute() if self.data_dir else default_data_dir(os.environ)

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_path / 'relay.db'}"

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite database file, or None when the database is PostgreSQL."""
        url = self.effective_database_url
        if url.startswith("sqlite:///"):
            return Path(url[len("sqlite:///"):])
        return None

    @property
    def database_display(self) -> str:
        """The database for messages: the SQLite path, or the PostgreSQL URL without its password."""
        path = self.sqlite_path
        if path is not None:
            return f"SQLite {path}"
        parts = urlsplit(self.effective_database_url)
        user = f"{parts.username}@" if parts.username else ""
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{user}{host}{port}{parts.path}"

    def redacted(self) -> dict[str, Any]:
        """Settings as a dict with secrets masked, safe to log."""
        out: dict[str, Any] = {}
        for name, _env, _default, _doc, secret in self.field_specs():
            value = getattr(self, name)
            out[name] = ("***" if value else "") if secret else value
        return out


_TYPES = typing.get_type_hints(Settings)


def default_data_dir(environ: Mapping[str, str]) -> Path:
    """``$XDG_DATA_HOME/relay``, else ``~/.local/share/relay`` (XDG Base Directory): one place per user,
    whatever the working directory, so ``relay serve`` and ``relay admin`` find the same database."""
    xdg = environ.get("XDG_DATA_HOME", "")
    if xdg and Path(xdg).is_absolute():  # the spec: relative values are invalid, ignore them
        return Path(xdg) / "relay"
    home = environ.get("HOME") or str(Path.home())
    return Path(home) / ".local" / "share" / "relay"


def origin(name: str, config_path: str | os.PathLike[str] | None = None,
           environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None,
           override_label: str | None = None) -> str:
    """Which source chose setting ``name``, for messages: ``data_dir: RELAY_DATA_DIR in the environment``,
    ``port: --port``, ``port: port in relay.toml``, or the default and how to change it."""
    environ = os.environ if environ is None else environ
    if overrides and overrides.get(name) is not None:
        return f"{name}: {override_label or 'given by the caller'}"
    env = ENV_PREFIX + name.upper()
    if env in environ:
        return f"{name}: {env} in the environment"
    if config_path:
        try:
            with open(config_path, "rb") as fh:
                if name in tomllib.load(fh):
                    return f"{name}: {name} in {config_path}"
        except (OSError, tomllib.TOMLDecodeError):
            pass
    return f"{name}: the default; set {env} or {name} in the --config file"


def _coerce(name: str, raw: Any) -> Any:
    kind = _TYPES[name]
    try:
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(f"not a boolean: {raw!r}")
        if kind is int:
            if isinstance(raw, bool):
                raise ValueError("not an integer")
            return int(raw)
        if kind is float:
            return float(raw)
        if kind == list[str]:
            if isinstance(raw, str):
                return [p.strip() for p in raw.split(",") if p.strip()]
            if isinstance(raw, list) and all(isinstance(p, str) for p in raw):
                return list(raw)
            raise ValueError("expected a list of strings or a comma-separated string")
        if kind is str:
            if not isinstance(raw, (str, int, float)):
                raise ValueError("expected a string")
            return str(raw)
    except ValueError as exc:
        raise SettingsError(f"setting {name} ({ENV_PREFIX}{name.upper()}): {exc}") from None
    raise SettingsError(f"setting {name}: unsupported type {kind}")


_CHOICES = {
    "upstream_dialect": ("beta", "ga"),
    "upstream_provider": ("openai", "azure", "compatible"),
    "log_format": ("auto", "json", "text"),
    "log_level": ("debug", "info", "warning", "error"),
    "tts_engine": ("espeak", "qwen3"),
    "file_storage": ("auto", "local", "database"),
}


def load_settings(
    config_path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build the settings: defaults <- TOML file <- RELAY_* environment <- overrides."""
    environ = os.environ if environ is None else environ
    names = {f.name for f in dataclasses.fields(Settings)}
    values: dict[str, Any] = {}
    if config_path:
        try:
            with open(config_path, "rb") as fh:
                doc = tomllib.load(fh)
        except OSError as exc:
            raise SettingsError(f"cannot read the settings file {config_path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"the settings file {config_path} is not valid TOML: {exc}") from None
        unknown = sorted(set(doc) - names)
        if unknown:
            raise SettingsError(f"unknown settings in {config_path}: {', '.join(unknown)}")
        values.update({k: _coerce(k, v) for k, v in doc.items()})
    for name in names:
        env = ENV_PREFIX + name.upper()
        if env in environ:
            values[name] = _coerce(name, environ[env])
    for name, value in overrides.items():
        if name not in names:
            raise SettingsError(f"unknown setting {name}")
        values[name] = value
    if values.get("data_dir"):  # absolute now: every later message and child process sees the same place
        values["data_dir"] = str(Path(values["data_dir"]).expanduser().absolute())
    else:
        values["data_dir"] = str(default_data_dir(environ))
    settings = Settings(**values)
    for name, allowed in _CHOICES.items():
        if getattr(settings, name) not in allowed:
            raise SettingsError(f"setting {name} must be one of {', '.join(allowed)}")
    for name in ("port",):
        if not 0 <= getattr(settings, name) <= 65535:
            raise SettingsError(f"setting {name} out of range")
    for name in _POSITIVE:
        if not getattr(settings, name) > 0:
            raise SettingsError(f"setting {name} must be positive")
    for name in _NOT_NEGATIVE:
        if getattr(settings, name) < 0:
            raise SettingsError(f"setting {name} must not be negative")
    return settings


# limits and timeouts where 0 or less would switch protection off by accident or break it
_POSITIVE = ("http_header_timeout_s", "http_body_timeout_s", "http_keepalive_timeout_s",
             "http_pending_per_address_max", "upstream_heartbeat_s", "ws_heartbeat_s", "upstream_slow_notice_s",
             "auth_known_address_s", "upstream_send_queue_max")
# 0 documented as "off" / "no limit"
_NOT_NEGATIVE = ("usage_checkpoint_s", "device_liveness_timeout_s", "max_half_open_calls",
                 "max_half_open_calls_per_address")
def worker_count(value: str | int, cores: int | None = None) -> int:
    """The number of worker processes the ``workers`` setting asks for (``SettingsError`` when invalid)."""
    text = str(value).strip().lower()
    if text == "auto":
        return max(1, cores if cores is not None else len(os.sched_getaffinity(0)))
    try:
        count = int(text)
    except ValueError:
        raise SettingsError(f"setting workers must be a number or auto, not {value!r}") from None
    if not 1 <= count <= 256:
        raise SettingsError("setting workers must be between 1 and 256 (or auto)")
    return count


def markdown_table() -> str:
    """The README's configuration table."""
    rows = ["| setting | environment variable | default | meaning |", "|---|---|---|---|"]
    for name, env, default, doc, _secret in Settings.field_specs():
        if isinstance(default, list):
            shown = ",".join(default)
        elif isinstance(default, bool):
            shown = str(default).lower()
        else:
            shown = str(default)
        rows.append(f"| `{name}` | `{env}` | `{shown}` | {doc} |" if shown else f"| `{name}` | `{env}` | | {doc} |")
    return "\n".join(rows)
