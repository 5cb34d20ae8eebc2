"""Engine, pool and storage failures as app API errors."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from relay.app_api.services import ClientBusy
from relay.storage import StorageError
from relay.tts.engine import TtsError
from relay.tts.pool import TtsBusy, WorkerCrashed
from relay.web.errors import AppApiError

log = logging.getLogger("relay.app_api")


@contextmanager
def service_errors(failed_code: str = "TTS_FAILED") -> Iterator[None]:
    try:
        yield
    except TtsError as exc:
        log.warning("%s: %s", exc.code, exc.message)
        raise AppApiError(exc.status, exc.message, exc.code) from None
    except ClientBusy:
        raise AppApiError(429, "Too many text-to-speech requests from this device at once", "RATE_LIMITED",
                          headers={"Retry-After": "2"}) from None
    except TtsBusy:
        raise AppApiError(503, "Text-to-speech is busy; retry shortly", "TTS_BUSY",
                          headers={"Retry-After": "2"}) from None
    except WorkerCrashed:
        raise AppApiError(502, "The TTS worker failed", failed_code) from None
    except StorageError as exc:
        log.error("storage error: %s", exc)
        raise AppApiError(500, "Could not store the audio", "STORAGE_ERROR") from None
