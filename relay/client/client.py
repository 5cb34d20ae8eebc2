"""``RelayClient``: a device's side of relay's Realtime API (seed 001's flow, in Python).

    client = RelayClient("http://127.0.0.1:8080", client_id, client_secret)
    session = await client.create_session(["text", "audio"])       # optional
    await client.connect(audio_source="hello.wav", on_event=print,
                         tools={"set_device_volume": lambda args: {"volume": args["volume_level"]}})
    await client.send_text("hello")
    ...
    await client.hangup()

HTTP errors raise :class:`relay.client.errors.RelayError` carrying seed 000's
error JSON. Everything the client starts (peer connection, HTTP session, event
queue) is released by :meth:`hangup` (also via ``async with``).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamTrack

from relay.client.errors import ConnectError, RelayError, parse_error
from relay.client.ice import host_addresses
from relay.client.receiver import AudioReceiver, OnAudio
from relay.client.sources import OpusPacketTrack, silence_track, wav_track
from relay.media.compat.sdk import negotiate_sctp

log = logging.getLogger("relay.client")

EventCallback = Callable[[dict[str, Any]], Any]
ToolCallback = Callable[[dict[str, Any]], Any]  # args -> dict (or awaitable of dict)

MAX_EVENT_QUEUE = 1000
MAX_EVENT_BYTES = 1024 * 1024


@dataclass
class Timings:
    """Milliseconds spent in each setup step (None: step not done)."""

    session_ms: float | None = None  # POST /v1/realtime/sessions
    offer_ms: float | None = None  # createOffer + full ICE gathering
    sdp_ms: float | None = None  # POST /v1/realtime round trip
    connect_ms: float | None = None  # answer set -> ICE+DTLS connected
    datachannel_ms: float | None = None  # answer set -> data channel open

    def as_dict(self) -> dict[str, float | None]:
        return {k: (round(v, 3) if v is not None else None) for k, v in self.__dict__.items()}


def _rtpmap(sdp: str) -> dict[int, str]:
    """payload type -> codec name of the first audio section of an SDP."""
    out: dict[int, str] = {}
    in_audio = False
    for line in sdp.splitlines():
        if line.startswith("m="):
            in_audio = line.startswith("m=audio")
        elif in_audio:
            m = re.match(r"a=rtpmap:(\d+) ([^/]+)/", line)
            if m:
                out[int(m.group(1))] = m.group(2)
    return out


def ice_servers_from_session(servers: Any) -> list[RTCIceServer]:
    """The session's ``iceServers`` (seed 000 shape) as aiortc objects; bad entries are skipped."""
    out: list[RTCIceServer] = []
    for entry in servers or []:
        if not isinstance(entry, dict) or "urls" not in entry:
            continue
        out.append(RTCIceServer(urls=entry["urls"], username=entry.get("username"), credential=entry.get("credential")))
    return out


class RelayClient:
    """One device talking to relay. Not reusable after :meth:`hangup`.

    ``host_addresses``: the local addresses ICE may gather (e.g. ``["127.0.0.1"]``
    for loopback tests); ``None`` = aioice's default (every interface but loopback).
    ``use_session_ice_servers``: use the ``iceServers`` returned by
    :meth:`create_session`; off by default, so nothing but the relay is contacted
    (aiortc would otherwise fall back to a public STUN server when given none).
    """

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str | None = None,
        *,
        demo: bool = False,
        assistant_id: str | None = None,
        host_addresses: Sequence[str] | None = None,
        use_session_ice_servers: bool = False,
        http_timeout_s: float = 10.0,
        http_session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.demo = demo
        self.assistant_id = assistant_id
        self.host_addresses = list(host_addresses) if host_addresses is not None else None
        self.use_session_ice_servers = use_session_ice_servers
        self.http_timeout_s = http_timeout_s
        self._http = http_session
        self._own_http = http_session is None
        self.session: dict[str, Any] | None = None
        self.timings = Timings()
        self.pc: RTCPeerConnection | None = None
        self.channel: Any = None
        self.track: MediaStreamTrack | None = None
        self.receiver: AudioReceiver | None = None
        self.answer_sdp: str | None = None
        self.events_received = 0
        self.events_dropped = 0
        self.events_sent = 0
        self.tool_calls = 0
        self._on_event: EventCallback | None = None
        self._tools: dict[str, ToolCallback] = {}
        self._events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=MAX_EVENT_QUEUE)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._connected = asyncio.Event()
        self._channel_open = asyncio.Event()
        self._failed: str | None = None
        self._closed = False
        self._t_answer = 0.0

    # ---- HTTP --------------------------------------------------------------
    def headers(self, content_type: str) -> dict[str, str]:
        h = {"Content-Type": content_type, "X-Client-Id": self.client_id}
        if self.client_secret is not None:
            h["X-Client-Secret"] = self.client_secret
        if self.demo:
            h["X-Demo-Mode"] = "true"
        if self.assistant_id:
            h["X-Assistant-Id"] = self.assistant_id
        return h

    def _http_session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.http_timeout_s))
        return self._http

    async def _post(self, path: str, body: bytes, content_type: str) -> tuple[bytes, str]:
        async with self._http_session().post(
            self.base_url + path, data=body, headers=self.headers(content_type)
        ) as resp:
            data = await resp.read()
            if resp.status >= 400:
                raise parse_error(resp.status, data, resp.content_type)
            return data, resp.content_type

    async def create_session(self, modalities: Sequence[str] = ("text", "audio")) -> dict[str, Any]:
        """``POST /v1/realtime/sessions``; returns ``{"id", "iceServers", ...}``."""
        t0 = time.perf_counter()
        data, _ = await self._post(
            "/v1/realtime/sessions", orjson.dumps({"modalities": list(modalities)}), "application/json"
        )
        self.timings.session_ms = (time.perf_counter() - t0) * 1000
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise RelayError(502, "session response is not JSON", "invalid_response", "invalid_response") from None
        if not isinstance(doc, dict) or "id" not in doc:
            raise RelayError(502, "session response has no id", "invalid_response", "invalid_response", body=doc)
        self.session = doc
        return doc

    # ---- WebRTC ------------------------------------------------------------
    def _make_track(self, audio_source: Any) -> MediaStreamTrack:
        if audio_source is None:
            return silence_track()
        if isinstance(audio_source, MediaStreamTrack):
            return audio_source
        if isinstance(audio_source, (str, Path)):
            return wav_track(audio_source)
        if isinstance(audio_source, (list, tuple)) and all(isinstance(p, bytes) for p in audio_source):
            return OpusPacketTrack(audio_source)
        raise TypeError(
            "audio_source: a WAV path, a list of Opus packets, a MediaStreamTrack "
            "(e.g. relay.client.PcmGeneratorTrack) or None"
        )

    def build_peer(
        self,
        *,
        audio_source: Any = None,
        datachannel_label: str = "messages",
        late_datachannel: bool = False,
        codecs: Sequence[str] = ("opus",),
        ice_servers: Sequence[RTCIceServer] | None = None,
    ) -> RTCPeerConnection:
        """Create the peer connection, audio transceiver and (unless late) the data channel."""
        if ice_servers is None:
            ice_servers = (
                ice_servers_from_session(self.session.get("iceServers"))
                if self.use_session_ice_servers and self.session
                else []
            )
        pc = RTCPeerConnection(RTCConfiguration(iceServers=list(ice_servers)))
        self.pc = pc
        self.track = self._make_track(audio_source)
        transceiver = pc.addTransceiver(self.track, direction="sendrecv")
        wanted = [c.lower() for c in codecs]
        caps = RTCRtpSender.getCapabilities("audio").codecs
        prefs = [c for w in wanted for c in caps if c.mimeType.lower() == f"audio/{w}"]
        if not prefs:
            raise ValueError(f"no supported codec among {list(codecs)}")
        transceiver.setCodecPreferences(prefs)
        if self.receiver is not None:
            self.receiver.attach(transceiver.receiver)

        @pc.on("connectionstatechange")
        def _state() -> None:
            if pc.connectionState == "connected":
                if self.timings.connect_ms is None and self._t_answer:
                    self.timings.connect_ms = (time.perf_counter() - self._t_answer) * 1000
                self._connected.set()
            elif pc.connectionState in ("failed", "closed"):
                self._failed = pc.connectionState
                self._connected.set()
                self._channel_open.set()

        if late_datachannel:
            # negotiate SCTP in the offer, open the channel later (ESP32 style)
            negotiate_sctp(pc)  # aiortc has no public way to do this
            self._late_label = datachannel_label
        else:
            self._attach_channel(pc.createDataChannel(datachannel_label, ordered=True))
        return pc

    def open_datachannel(self, label: str | None = None) -> Any:
        """Open the data channel now (after :meth:`connect` with ``late_datachannel=True``)."""
        if self.pc is None:
            raise RuntimeError("not connected")
        channel = self.pc.createDataChannel(label or getattr(self, "_late_label", "messages"), ordered=True)
        self._attach_channel(channel)
        return channel

    def _attach_channel(self, channel: Any) -> None:
        self.channel = channel

        @channel.on("open")
        def _open() -> None:
            if self.timings.datachannel_ms is None and self._t_answer:
                self.timings.datachannel_ms = (time.perf_counter() - self._t_answer) * 1000
            self._channel_open.set()

        @channel.on("message")
        def _message(message: Any) -> None:
            self._handle_message(message)

        if channel.readyState == "open":
            self._channel_open.set()

    async def connect(
        self,
        *,
        audio_source: Any = None,
        on_event: EventCallback | None = None,
        tools: dict[str, ToolCallback] | None = None,
        on_audio: OnAudio | None = None,
        decode_audio: bool = True,
        audio_rate_hz: int = 48000,
        audio_queue_frames: int = 0,
        datachannel_label: str = "messages",
        late_datachannel: bool = False,
        codecs: Sequence[str] = ("opus",),
        ice_servers: Sequence[RTCIceServer] | None = None,
        wait: bool = True,
        timeout_s: float = 10.0,
    ) -> str:
        """Build the offer, gather ICE fully, ``POST /v1/realtime``, set the answer.

        ``audio_source``: a WAV path, a list of pre-encoded 20 ms Opus packets, any
        aiortc ``MediaStreamTrack`` (e.g. :class:`relay.client.PcmGeneratorTrack`),
        or None (silence). Received audio: ``on_audio(pcm16, rate_hz, arrival_s)``
        and/or ``self.receiver.queue`` (``audio_queue_frames`` > 0), packet stats in
        ``self.receiver.stats``. With ``wait`` it returns once ICE/DTLS is connected
        and (unless late) the data channel is open. Returns the answer SDP.
        """
        if self._closed or self.pc is not None:
            raise RuntimeError("RelayClient.connect() may be called once")
        self._on_event = on_event
        self._tools = dict(tools or {})
        self.receiver = AudioReceiver(
            decode=decode_audio, rate_hz=audio_rate_hz, on_audio=on_audio, queue_frames=audio_queue_frames
        )
        try:
            pc = self.build_peer(
                audio_source=audio_source,
                datachannel_label=datachannel_label,
                late_datachannel=late_datachannel,
                codecs=codecs,
                ice_servers=ice_servers,
            )
            t0 = time.perf_counter()
            with host_addresses(self.host_addresses):
                await pc.setLocalDescription(await pc.createOffer())
            self.timings.offer_ms = (time.perf_counter() - t0) * 1000
            t1 = time.perf_counter()
            answer, _ = await self._post("/v1/realtime", pc.localDescription.sdp.encode(), "application/sdp")
            self.timings.sdp_ms = (time.perf_counter() - t1) * 1000
            self.answer_sdp = answer.decode("utf-8", "replace")
            self.receiver.set_payload_types(_rtpmap(self.answer_sdp))
            self._t_answer = time.perf_counter()
            await pc.setRemoteDescription(RTCSessionDescription(sdp=self.answer_sdp, type="answer"))
            if wait:
                await self.wait_connected(timeout_s, datachannel=not late_datachannel)
        except BaseException:
            await self.hangup()
            raise
        return self.answer_sdp

    async def wait_connected(self, timeout_s: float = 10.0, *, datachannel: bool = True) -> None:
        """Wait for ICE+DTLS (and the data channel); raises :class:`ConnectError`."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._connected.wait()
                if datachannel and not self._failed:
                    await self._channel_open.wait()
        except TimeoutError:
            raise ConnectError(
                f"not connected after {timeout_s} s (state {self.pc.connectionState if self.pc else 'none'})"
            ) from None
        if self._failed:
            raise ConnectError(f"connection {self._failed}")

    @property
    def connected(self) -> bool:
        return self.pc is not None and self.pc.connectionState == "connected"

    # ---- events ------------------------------------------------------------
    def _handle_message(self, message: Any) -> None:
        if isinstance(message, bytes):
            message = message.decode("utf-8", "replace")
        if len(message) > MAX_EVENT_BYTES:
            self.events_dropped += 1
            return
        try:
            event = orjson.loads(message)
        except orjson.JSONDecodeError:
            self.events_dropped += 1
            log.warning("non-JSON data-channel message dropped")
            return
        if not isinstance(event, dict):
            self.events_dropped += 1
            return
        self.events_received += 1
        if self._events.full():
            self._events.get_nowait()  # keep the newest; the caller is not reading
            self.events_dropped += 1
        self._events.put_nowait(event)
        if self._on_event is not None:
            try:
                result = self._on_event(event)
            except Exception:  # a broken callback must not break the data channel
                log.exception("on_event callback failed")
                result = None
            if inspect.isawaitable(result):
                self._spawn(result)
        item = event.get("item")
        if (
            event.get("type") == "response.output_item.done"
            and isinstance(item, dict)
            and item.get("type") == "function_call"
            and item.get("name") in self._tools
        ):
            self._spawn(self._run_tool(item))

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("client callback failed", exc_info=task.exception())

    async def _run_tool(self, item: dict[str, Any]) -> None:
        """Answer a client-side tool call exactly as seed 000's snippet does."""
        self.tool_calls += 1
        try:
            params = orjson.loads(item.get("arguments") or "{}")
        except orjson.JSONDecodeError:
            params = {}
        try:
            result = self._tools[item["name"]](params if isinstance(params, dict) else {})
            if inspect.isawaitable(result):
                result = await result
            output = {"success": True, **(result or {})}
        except Exception as exc:  # the assistant still gets an answer, so the turn is not left hanging
            log.exception("device tool %s failed", item.get("name"))
            output = {"success": False, "error": f"{type(exc).__name__}: {exc}"[:200]}
        self.send_event(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "function_call_output",
                    "call_id": item.get("call_id"),
                    "output": orjson.dumps(output).decode(),
                },
            }
        )
        self.send_event({"type": "response.create"})

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Data-channel events as they arrive (bounded buffer: the oldest are dropped if unread)."""
        while True:
            event = await self._events.get()
            if event is None:
                return
            yield event

    async def next_event(self, type_: str | None = None, timeout_s: float = 10.0) -> dict[str, Any]:
        """The next event (of ``type_`` if given); raises ``TimeoutError``."""
        async with asyncio.timeout(timeout_s):
            while True:
                event = await self._events.get()
                if event is None:
                    raise ConnectError("connection closed")
                if type_ is None or event.get("type") == type_:
                    return event

    def send_event(self, event: dict[str, Any]) -> None:
        """Send one JSON event on the data channel (must be open)."""
        if self.channel is None or self.channel.readyState != "open":
            raise ConnectError("data channel is not open")
        self.channel.send(orjson.dumps(event).decode())
        self.events_sent += 1

    def send_text(self, text: str, *, respond: bool = True) -> None:
        """A user text message (``conversation.item.create``), then ``response.create``."""
        self.send_event(
            {
                "type": "conversation.item.create",
                "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]},
            }
        )
        if respond:
            self.send_event({"type": "response.create"})

    # ---- teardown ----------------------------------------------------------
    async def hangup(self) -> None:
        """Close the peer connection and HTTP session; idempotent."""
        if self._closed:
            return
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.pc is not None:
            await self.pc.close()
        if self.track is not None:
            self.track.stop()
        if self._own_http and self._http is not None:
            await self._http.close()
        if self._events.full():
            self._events.get_nowait()
        self._events.put_nowait(None)

    async def __aenter__(self) -> RelayClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.hangup()
