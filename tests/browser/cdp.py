"""A small Chrome DevTools Protocol client: start headless Chromium, drive one page.

Just what the browser tests need (evaluate JavaScript, wait for a condition, navigate,
screenshot), over aiohttp's WebSocket client, so the tests need no browser-driver package.
The browser is started with a fresh profile and the flags that keep it on loopback.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
import os
import shutil
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import aiohttp

log = logging.getLogger("tests.browser.cdp")

CHROMIUM = os.environ.get("CHROMIUM_BIN") or shutil.which("chromium") or "/usr/bin/chromium"

# Loopback only: no background traffic, no mDNS-obfuscated candidates, loopback ICE allowed.
LOOPBACK_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns,MediaRouter,OptimizationHints,Translate",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--no-first-run",
    "--no-default-browser-check",
    "--no-pings",
    "--disable-quic",
    "--metrics-recording-only",
    "--password-store=basic",
    "--use-mock-keychain",
    "--autoplay-policy=no-user-gesture-required",
]


def fake_microphone_flags(wav_path: str | os.PathLike[str], *, loop: bool = False) -> list[str]:
    """A fake microphone playing ``wav_path`` (once, then silence, unless ``loop``)."""
    return [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav_path}{'' if loop else '%noloop'}",
    ]


class CdpError(RuntimeError):
    pass


class Page:
    """One page target, driven over its own DevTools WebSocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.console: list[str] = []  # console messages and uncaught exceptions (bounded)
        self._reader = asyncio.create_task(self._read(), name="cdp-reader")

    async def _read(self) -> None:
        try:
            async for msg in self._ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                if "id" in data:
                    fut = self._pending.pop(data["id"], None)
                    if fut is not None and not fut.done():
                        fut.set_result(data)
                else:
                    self._on_event(data.get("method", ""), data.get("params", {}))
        finally:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(CdpError("DevTools connection closed"))
            self._pending.clear()

    def _on_event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self._remember(f"console.{params.get('type')}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            exc = details.get("exception", {})
            self._remember(f"exception: {exc.get('description') or details.get('text')}")
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            self._remember(f"log.{entry.get('level')}: {entry.get('text')} {entry.get('url', '')}")

    def _remember(self, line: str) -> None:
        self.console.append(line)
        if len(self.console) > 500:
            del self.console[:100]

    async def send(self, method: str, timeout_s: float = 30.0, **params: Any) -> dict[str, Any]:
        msg_id = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        await self._ws.send_str(json.dumps({"id": msg_id, "method": method, "params": params}))
        try:
            reply = await asyncio.wait_for(fut, timeout_s)
        finally:
            self._pending.pop(msg_id, None)
        if "error" in reply:
            raise CdpError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    async def evaluate(self, expression: str, *, timeout_s: float = 30.0) -> Any:
        """Evaluate JavaScript (awaiting promises, as a user gesture) and return its JSON value."""
        result = await self.send(
            "Runtime.evaluate",
            timeout_s=timeout_s,
            expression=expression,
            awaitPromise=True,
            returnByValue=True,
            userGesture=True,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            desc = details.get("exception", {}).get("description") or details.get("text")
            raise CdpError(f"JavaScript error: {desc}")
        return result.get("result", {}).get("value")

    async def wait_for(self, expression: str, *, timeout_s: float = 20.0, interval_s: float = 0.1) -> Any:
        """Poll a JavaScript expression until it is truthy; return its value, or raise with context."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        value: Any = None
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if asyncio.get_running_loop().time() >= deadline:
                raise TimeoutError(
                    f"timed out waiting for {expression!r} (last value {value!r}); console: {self.console[-15:]}"
                )
            await asyncio.sleep(interval_s)

    async def navigate(self, url: str) -> None:
        await self.send("Page.navigate", url=url)
        await self.wait_for("document.readyState === 'complete'")

    async def screenshot(self, path: str | os.PathLike[str]) -> Path:
        result = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=False)
        out = Path(path)
        await asyncio.to_thread(_write_file, out, base64.b64decode(result["data"]))
        return out

    async def close(self) -> None:
        await self._ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _read_port_file(profile: Path) -> tuple[int, str] | None:
    """Chromium writes ``<port>\n<browser target path>`` to DevToolsActivePort once it listens."""
    try:
        lines = (profile / "DevToolsActivePort").read_text().split()
    except FileNotFoundError:
        return None
    return (int(lines[0]), lines[1]) if len(lines) >= 2 else None


def _tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return ""


class Browser:
    """A headless Chromium process with a fresh profile; `page` is its first tab."""

    def __init__(self, proc: asyncio.subprocess.Process, session: aiohttp.ClientSession, page: Page, profile: Path):
        self.proc = proc
        self.page = page
        self._session = session
        self.profile = profile

    @classmethod
    async def launch(
        cls, profile: Path, extra_flags: Sequence[str] = (), *, window: tuple[int, int] = (1440, 1000)
    ) -> Browser:
        args = [
            CHROMIUM,
            *LOOPBACK_FLAGS,
            f"--user-data-dir={profile}",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            f"--window-size={window[0]},{window[1]}",
            *extra_flags,
            "about:blank",
        ]
        log_file = await asyncio.to_thread(_open_log, profile)
        try:
            # Its own session (process group), so teardown can end the browser and its helpers together.
            proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log_file.close()
        try:
            port = await cls._devtools_port(profile, proc)
            session = aiohttp.ClientSession()
            try:
                page_ws_url = await cls._first_page(session, port)
                ws = await session.ws_connect(page_ws_url, max_msg_size=64 * 1024 * 1024)
                page = Page(ws)
                for domain in ("Page", "Runtime", "Log"):
                    await page.send(f"{domain}.enable")
            except BaseException:
                await session.close()
                raise
        except BaseException:
            await cls._kill(proc)
            raise
        return cls(proc, session, page, profile)

    @staticmethod
    async def _devtools_port(profile: Path, proc: asyncio.subprocess.Process) -> int:
        for _ in range(300):  # up to ~30 s on a busy machine
            if proc.returncode is not None:
                tail = await asyncio.to_thread(_tail, profile / "chromium.log")
                raise CdpError(f"chromium exited with {proc.returncode}: {tail}")
            found = await asyncio.to_thread(_read_port_file, profile)
            if found:
                return found[0]
            await asyncio.sleep(0.1)
        raise CdpError("chromium did not open its DevTools port")

    @staticmethod
    async def _first_page(session: aiohttp.ClientSession, port: int) -> str:
        for _ in range(100):
            async with session.get(f"http://127.0.0.1:{port}/json/list") as resp:
                targets = await resp.json()
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
            await asyncio.sleep(0.1)
        raise CdpError("chromium has no page target")

    @staticmethod
    async def _kill(proc: asyncio.subprocess.Process) -> None:
        """End the browser's process group (which we created, by the browser's pid)."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if proc.returncode is not None:
                return
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(proc.wait(), 10)

    async def close(self) -> None:
        try:
            with contextlib.suppress(CdpError, asyncio.TimeoutError, aiohttp.ClientError):
                await self.page.send("Browser.close", timeout_s=5)
            await self.page.close()
        finally:
            await self._session.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 5)
            await self._kill(self.proc)


def _open_log(profile: Path) -> IO[bytes]:
    profile.mkdir(parents=True, exist_ok=True)
    return open(profile / "chromium.log", "wb")  # noqa: SIM115 -- handed to the child, closed by launch()
