"""The call layer: what both call edges (WebRTC, ``relay.media``; WebSocket, ``relay.wsedge``) share.

It sits between the sans-I/O core (``relay.bridge``, ``relay.upstream``) and the edges, and imports
neither edge nor ``relay.web`` (the edges import it; tests/foundation/test_import_rules.py). Modules,
one job each:

- ``plane``     -- ``CallPlane``: the worker's services both edges use (registry, counters, admission, upstream, tools, usage, fleet).
- ``driver``    -- ``CallDriver``: drives one ``CallCore`` over asyncio (upstream loop, actions, timer, tool tasks).
- ``registry``  -- ``CallRegistry``: the worker's live calls of both edges (typed on ``LiveCall``) and its limits.
- ``usage``     -- ``CallUsage``, ``AudioMeter`` (audio seconds, counted one way), ``UsageBook`` (usage rows, checkpoints).
- ``metrics``   -- ``MediaMetrics``: the worker's call counters and latency samples (``/v1/realtime/stats``, ``/metrics``).
- ``ratelimit`` -- ``TokenBucket`` (sans-I/O): device events and bytes per second on both edges.
- ``upstream``  -- ``UpstreamClient``: the upstream Realtime WebSocket; ``connect_request`` per provider.
- ``tools``     -- server-side tools: the webhook POST, with its private-address guard.
"""
