"""Conformance fixtures: the WebSocket edge's relay on 127.0.0.1 (``tests/ws_edge``'s fixtures)."""

from ws_edge.conftest import Edge, edge_factory  # noqa: F401 -- fixtures shared with the WebSocket edge's tests
