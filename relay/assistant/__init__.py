"""relay's built-in local assistant: a simulated Realtime upstream (both dialects), a real WebSocket server."""

from relay.assistant.server import create_assistant_app, main, start_local_assistant

__all__ = ["create_assistant_app", "main", "start_local_assistant"]
