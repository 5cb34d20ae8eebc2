"""The app API's services (worker pool, TTS engine, transcriber, storage) and their lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

from relay.settings import Settings
from relay.storage import LocalStorage, Storage, StorageError, UrlSigner, load_signing_key
from relay.store import app_requests
from relay.store.db import Database
from relay.tts.adapter import AdapterEngine
from relay.tts.engine import TtsEngine, TtsError
from relay.tts.espeak import EspeakEngine
from relay.tts.pool import WorkerPool
from relay.tts.transcribe import OpenAITranscriber, PocketsphinxTranscriber, Transcriber
from relay.web import keys

log = logging.getLogger("relay.app_api")
TTS_OUTPUT_PREFIX = "tts"
ANALYTICS_RETENTION_S = 90 * 86400


class ClientBusy(RuntimeError):
    """This client already has ``tts_per_client`` TTS requests running."""


@dataclass
class AppServices:
    settings: Settings
    pool: WorkerPool
    engine: TtsEngine | None          # None: tts_engine=qwen3 without tts_adapter_url
    espeak: EspeakEngine              # always there (timing passes, stories when no adapter)
    transcriber: Transcriber
    storage: Storage

    per_client: dict[str, int] = field(default_factory=dict)
    client_busy_rejections: int = 0  # requests refused because their device had tts_per_client running

    @asynccontextmanager
    async def admit(self, client_id: str | None) -> AsyncIterator[None]:
        """A TTS slot for one request: per client at most ``tts_per_client``, overall the pool's capacity."""
        if client_id is not None:
            if self.per_client.get(client_id, 0) >= self.settings.tts_per_client:
                self.client_busy_rejections += 1
                raise ClientBusy(client_id)
            self.per_client[client_id] = self.per_client.get(client_id, 0) + 1
        try:
            async with self.pool.admit():
                yield
        finally:
            if client_id is not None:
                left = self.per_client[client_id] - 1
                if left:
                    self.per_client[client_id] = left
                else:
                    del self.per_client[client_id]

    def require_engine(self) -> TtsEngine:
        if self.engine is None:
            raise TtsError(503, "ADAPTER_NOT_CONFIGURED",
                           "The TTS adapter is selected (tts_engine=qwen3) but tts_adapter_url is not set")
        return self.engine

    async def close(self) -> None:
        if self.engine is not None and self.engine is not self.espeak:
            await self.engine.close()
        await self.transcriber.close()
        await asyncio.to_thread(self.pool.close)


SERVICES = web.AppKey("app_services", AppServices)


def build_services(settings: Settings) -> AppServices:
    pool = WorkerPool(settings.tts_workers, settings.tts_queue_limit)
    espeak = EspeakEngine(pool)
    engine: TtsEngine | None = espeak
    if settings.tts_engine == "qwen3":
        engine = (AdapterEngine(pool, settings.tts_adapter_url, settings.tts_adapter_key,
                                timeout_s=settings.tts_adapter_timeout_s) if settings.tts_adapter_url else None)
    transcriber: Transcriber
    if settings.transcription_url:
        transcriber = OpenAITranscriber(settings.transcription_url, settings.transcription_api_key,
                                        settings.transcription_model)
    else:
        transcriber = PocketsphinxTranscriber(pool)
    signer = UrlSigner(load_signing_key(settings.url_signing_key, settings.data_path))
    storage = LocalStorage(settings.data_path / "files", signer)
    return AppServices(settings, pool, engine, espeak, transcriber, storage)


async def _janitor(services: AppServices, db: Database) -> None:
    """Delete synthesised files older than ``tts_output_retention_s`` (their signed URLs expired long ago)
    and analytics rows older than ``ANALYTICS_RETENTION_S``."""
    retention = services.settings.tts_output_retention_s
    period = max(5.0, min(600.0, retention / 4))
    while True:
        await asyncio.sleep(period)
        try:
            removed = await services.storage.cleanup(TTS_OUTPUT_PREFIX, retention)
            if removed:
                log.info("deleted %d expired synthesised files", removed)
            await app_requests.delete_older_than(db, time.time() - ANALYTICS_RETENTION_S)
        except StorageError as exc:
            log.warning("storage cleanup failed: %s", exc)
        except Exception:  # a database hiccup must not end the loop: log it, try again next period
            log.exception("app API cleanup failed")


async def services_ctx(app: web.Application) -> AsyncIterator[None]:
    services = build_services(app[keys.SETTINGS])
    app[SERVICES] = services
    janitor = asyncio.create_task(_janitor(services, app[keys.DB]), name="app-api-janitor")
    try:
        yield
    finally:
        janitor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await janitor
        await services.close()
