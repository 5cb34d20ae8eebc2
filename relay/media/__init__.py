"""The media plane's WebRTC edge: aiortc peers, the per-worker media clock, codecs, ICE.

Modules, one job each:

- ``ice``      -- ICE configuration (no public STUN, host-address allowlist).
- ``codecs``   -- codec choice from an offer, Opus encode/decode at the upstream rate.
- ``uplink``   -- RTP payloads -> PCM16/G.711 chunks, inline (no decoder thread).
- ``downlink`` -- the pre-encoded ``av.Packet`` track aiortc sends from.
- ``clock``    -- one media clock per worker process pacing every call's downlink.
- ``peer``     -- the aiortc peer wrapper (SDP, data channel, teardown).
- ``call``     -- one call: peer + bridge core + upstream socket, and its lifecycle.
- ``registry`` -- the per-worker set of live calls with its limits.
"""
