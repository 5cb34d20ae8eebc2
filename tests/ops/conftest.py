"""Ops tests reuse the end-to-end fixtures: a real relay app on 127.0.0.1 with its built-in local
assistant, real aiortc devices from relay.client, and the e2e leak check."""

from tests.e2e.conftest import relay, relay_factory  # noqa: F401  (pytest fixtures)
