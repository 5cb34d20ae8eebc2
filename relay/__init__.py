"""relay: a low-latency, high-concurrency WebRTC <-> Realtime media relay for voice assistants."""

__version__ = "0.1.0"
