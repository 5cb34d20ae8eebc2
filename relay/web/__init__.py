"""relay's HTTP layer (aiohttp): the application (``app.create_app``), its middlewares and error shapes, and
the handlers of each API -- the Realtime device API, the WebSocket edge, the admin API, the app API
(``relay.web.app_api``), the console, ``/metrics``. Handlers call the domain modules outside this package
and map their domain errors (``relay.errors.DomainError``) to the API's error shape; nothing outside it
imports it but ``relay/cli.py`` and ``relay/__main__.py`` (docs/ARCHITECTURE.md "Import rules")."""
