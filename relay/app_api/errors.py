"""The app API's domain error, and engine, pool and storage failures as that error.

Operations of the app API (``relay.app_api``) raise ``AppError(status, message, code, headers)``; they know
no HTTP. The web layer (``relay.web.app_api.common.recorded``) answers it in the app API's error shape,
``{"detail": {"error": message, "code": code}}`` with ``status`` and ``headers``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from relay.app_api.services import ClientBusy
from relay.errors import DomainError
from relay.files import StorageError
from relay.tts.engine import TtsError
from relay.tts.pool import TtsBusy, WorkerCrashed

log = logging.getLogger("relay.app_api")


class AppError(DomainError):
    """An app API operation refused or failed: ``status`` (HTTP-like), ``message``, ``code`` (upper case, as the
    app API documents them), ``headers`` (``Retry-After``)."""


@contextmanager
def service_errors(failed_code: str = "TTS_FAILED") -> Iterator[None]:
    try:
        yield
    except TtsError as exc:
        log.warning("%s: %s", exc.code, exc.message)
        raise AppError(exc.status, exc.message, exc.code) from None
    except ClientBusy:
        raise AppError(429, "Too many text-to-speech requests from this device at once", "RATE_LIMITED",
                       headers={"Retry-After": "2"}) from None
    except TtsBusy:
        raise AppError(503, "Text-to-speech is busy; retry shortly", "TTS_BUSY",
                       headers={"Retry-After": "2"}) from None
    except WorkerCrashed:
        raise AppError(502, "The TTS worker failed", failed_code) from None
    except StorageError as exc:
        log.error("storage error: %s", exc)
        raise AppError(500, "Could not store the audio", "STORAGE_ERROR") from None
