"""Small local fakes of the services relay talks to: a Qwen3-TTS adapter and an OpenAI-compatible
transcription endpoint. aiohttp servers on 127.0.0.1; they implement the protocol in docs/app_api.md."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from typing import Any

import av
from aiohttp import web
from aiohttp.test_utils import TestServer

from relay.tts import jobs
from relay.tts.audio import encode_wav

ADAPTER_KEY = "adapter-test-key-0123456789"
LEAD_SILENCE_MS = 300


def _wav_seconds(data: bytes) -> float:
    with av.open(io.BytesIO(data)) as c:
        return sum(f.samples for f in c.decode(c.streams.audio[0])) / c.streams.audio[0].rate


@dataclass
class FakeAdapter:
    """The adapter: clone -> profile_id, design -> voice_clone_prompt + audio, tts -> WAV."""

    key: str = ADAPTER_KEY
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    prompts: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    fail_tts: bool = False
    server: TestServer | None = None

    def _auth(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"Bearer {self.key}":
            return web.json_response({"error": {"code": "unauthorized", "message": "bad key"}}, status=401)
        return None

    async def clone(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        form = await request.post()
        audio = form["audio"].file.read()  # type: ignore[union-attr]
        seconds = _wav_seconds(audio)
        if seconds < 1 or not form.get("transcript"):
            return web.json_response({"error": {"code": "bad_reference", "message": "need audio+transcript"}},
                                     status=422)
        pid = f"prof_{len(self.profiles) + 1}"
        self.profiles[pid] = {"name": form["name"], "transcript": form["transcript"], "seconds": seconds}
        self.calls.append(("clone", {"name": form["name"], "transcript": form["transcript"], "seconds": seconds}))
        return web.json_response({"profile_id": pid}, status=201)

    async def design(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        body = await request.json()
        if not body.get("prompt"):
            return web.json_response({"error": {"code": "missing_prompt", "message": "prompt"}}, status=400)
        vcp = f"prompts/{len(self.prompts) + 1}.pt"
        self.prompts[vcp] = body
        self.calls.append(("design", body))
        pcm, rate, _ = jobs.speak("This is the designed voice speaking.", {"variant": "f1", "pitch": 70})
        return web.json_response({"voice_clone_prompt": vcp,
                                  "audio_b64": base64.b64encode(encode_wav(pcm, rate)).decode()}, status=201)

    async def tts(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        body = await request.json()
        self.calls.append(("tts", body))
        if self.fail_tts:
            return web.json_response({"error": {"code": "gpu_oom", "message": "out of memory"}}, status=500)
        known = body.get("profile_id") in self.profiles or body.get("voice_clone_prompt") in self.prompts
        if not known:
            return web.json_response({"error": {"code": "unknown_voice", "message": "no such voice"}}, status=404)
        # "Qwen3" speaks slower than espeak's default and with leading silence, at 24 kHz:
        pcm, rate, _ = jobs.speak(body["text"], {"variant": "m7", "rate_wpm": int(120 * body.get("speed", 1.0))})
        from relay.tts.audio import resample_pcm16

        pcm24 = resample_pcm16(pcm, rate, 24000)
        lead = b"\0\0" * (24000 * LEAD_SILENCE_MS // 1000)
        return web.Response(body=encode_wav(lead + pcm24 + lead, 24000), content_type="audio/wav")

    def app(self) -> web.Application:
        app = web.Application(client_max_size=20 * 1024 * 1024)
        app.router.add_post("/v1/voices/clone", self.clone)
        app.router.add_post("/v1/voices/design", self.design)
        app.router.add_post("/v1/tts", self.tts)
        return app

    async def start(self) -> str:
        self.server = TestServer(self.app(), host="127.0.0.1")
        await self.server.start_server()
        return str(self.server.make_url("")).rstrip("/")

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.close()


@dataclass
class FakeTranscriber:
    """``POST /v1/audio/transcriptions`` like OpenAI's: multipart file + model -> {"text"}."""

    text: str = "hello this is my voice"
    status: int = 200
    calls: list[dict[str, Any]] = field(default_factory=list)
    server: TestServer | None = None

    async def transcriptions(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.calls.append({"model": form.get("model"), "auth": request.headers.get("Authorization"),
                           "seconds": _wav_seconds(form["file"].file.read())})  # type: ignore[union-attr]
        if self.status != 200:
            return web.json_response({"error": {"message": "boom"}}, status=self.status)
        return web.json_response({"text": self.text})

    async def start(self) -> str:
        app = web.Application(client_max_size=20 * 1024 * 1024)
        app.router.add_post("/v1/audio/transcriptions", self.transcriptions)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        return str(self.server.make_url("")).rstrip("/")

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.close()
