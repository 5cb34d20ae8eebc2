"""The WebSocket edge for server clients (the Realtime API over WebSocket). Modules, one job each:

- ``wscall``    -- ``WsCall``: one call over a server client's WebSocket (a ``relay.call.driver.CallDriver``).
- ``token_cli`` -- ``relay admin tokens``: the operator's commands for the edge's API tokens.

The HTTP route is ``relay.web.ws_edge`` (its token admin routes ``relay.web.token_admin``); tokens are
stored by ``relay.store.tokens``. The edge imports the call layer (``relay.call``), never the WebRTC
edge (``relay.media``).
"""
