"""The WebSocket edge for server clients (seed 003): the call (``call.WsCall``) and token admin
(``admin``). The HTTP route is ``relay.web.ws_edge``; tokens are stored by ``relay.store.tokens``."""
