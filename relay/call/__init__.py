"""The call layer: what both call edges (WebRTC, ``relay.media``; WebSocket, ``relay.wsedge``) share.

It sits between the sans-I/O core (``relay.bridge``, ``relay.upstream.dialect``/``session``) and
the edges; it imports neither edge (the edges import it). Modules, one job each:

- ``driver``    -- ``CallDriver``: drives one ``CallCore`` over asyncio (upstream loop, actions, timer, tools).
- ``registry``  -- ``CallRegistry``: the worker's live calls of both edges (typed on ``LiveCall``) and limits.
- ``metrics``   -- ``MediaMetrics``: the worker's call counters and latency samples (both edges, ``/metrics``).
- ``ratelimit`` -- ``TokenBucket`` (sans-I/O), for device events and bytes on both edges.
- ``upstream``  -- ``UpstreamClient``: the upstream Realtime WebSocket and ``connect_request`` per provider.
- ``tools``     -- server-side tools: the webhook POST with its private-address guard.
"""
