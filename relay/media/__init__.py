"""The WebRTC edge: aiortc peers, the per-worker media clock and ICE port, codecs, the direct RTP paths.

It stands on the call layer (``relay.call``: the call driver, the registry, the worker's call plane),
which never imports it. Modules, one job each:

- ``plane``      -- ``MediaPlane``: the worker's call plane plus clock, ICE port and ICE/DTLS set-up (settings checked once).
- ``call``       -- ``Call``: one WebRTC call (peer + call core + upstream socket), a ``relay.call.driver.CallDriver``.
- ``peer``       -- the aiortc peer wrapper: SDP answer, data channel, teardown.
- ``sdp_check``  -- sans-I/O line check of SDP offers before aiortc parses them.
- ``codecs``     -- which audio codec a call uses, from the device's offer (sans-I/O).
- ``opus``       -- libopus through ctypes: mono encode/decode at the upstream's rate.
- ``uplink``     -- ``UplinkSink``: RTP audio payloads -> upstream-format chunks, inline on the loop.
- ``rtp_in``     -- the direct uplink receive path: SRTP audio datagram -> the sink in the socket callback.
- ``downlink``   -- the downlink encoder and ``PacketTrack`` the clock feeds, one payload per 20 ms tick.
- ``rtp_out``    -- the direct downlink send path: RTP built, SRTP-protected and sent in the clock's tick.
- ``clock``      -- ``MediaClock``: one task per worker pacing every call's downlink; one encode batch per tick.
- ``adapt``      -- the load-adaptive Opus complexity controller the clock feeds its tick load (sans-I/O).
- ``mux``        -- ``IceMux``: the worker's one ICE UDP port carrying every call (I/O).
- ``muxtable``   -- ``MuxTable``: which call a datagram on that port belongs to (sans-I/O).
- ``ice``        -- ICE configuration: no public STUN, host-address allowlist, public IP, port range.
- ``dtls``       -- one DTLS certificate per worker (rotated), the cipher suites.
- ``handshake``  -- why a device's ICE/DTLS/SCTP handshake failed; a faster first DTLS flight.
- ``liveness``   -- ``DeviceLiveness``: is anything still arriving from a WebRTC device?
- ``compat``     -- the compatibility room (a package): the table of aiortc/aioice internals relay touches,
  checked and installed once at start-up; the patches, per instance where aiortc has a door (ICE host
  addresses, the DTLS certificate, handshake hooks, the SCTP reassembly limit, the device SDK's tap).
"""
