"""The default assistant: the one used when neither the device nor its workspace names one.

``resolve_default_assistant(settings)`` builds the assistant used by demo calls and
by clients with no assistant of their own, from settings alone: with
``upstream_url`` empty it is relay's built-in local assistant (provider ``local``,
model ``relay-echo``), so a fresh ``relay serve`` works with no API key. There,
``upstream_model`` is honoured only when it names a local mode (``relay-*``, e.g.
``RELAY_UPSTREAM_MODEL=relay-loopback``); any other model name (the OpenAI default)
keeps ``relay-echo``.
"""

from __future__ import annotations

from relay.models import Assistant
from relay.settings import Settings

DEFAULT_ASSISTANT_ID = "default"
LOCAL_MODEL = "relay-echo"
LOCAL_MODEL_PREFIX = "relay-"


def resolve_default_assistant(settings: Settings) -> Assistant:
    """The operator's default assistant, built from the ``upstream_*`` settings."""
    if not settings.upstream_url:
        model = settings.upstream_model if settings.upstream_model.startswith(LOCAL_MODEL_PREFIX) else LOCAL_MODEL
        return Assistant(
            id=DEFAULT_ASSISTANT_ID, name="Default (built-in local assistant)", provider="local",
            model=model, voice=settings.upstream_voice, instructions=settings.upstream_instructions,
            device_tools=True, dialect=settings.upstream_dialect,  # type: ignore[arg-type]
        )
    return Assistant(
        id=DEFAULT_ASSISTANT_ID, name="Default", provider=settings.upstream_provider,  # type: ignore[arg-type]
        upstream_url=settings.upstream_url, api_key=settings.upstream_api_key, model=settings.upstream_model,
        voice=settings.upstream_voice, instructions=settings.upstream_instructions, device_tools=True,
        dialect=settings.upstream_dialect,  # type: ignore[arg-type]
    )
