"""Operations: Prometheus exposition (``GET /metrics``), the HTTP/auth counters behind it, /proc readers.

The HTTP edge of it is ``relay.web.metrics``; user docs in ``docs/ops.md``.
"""
