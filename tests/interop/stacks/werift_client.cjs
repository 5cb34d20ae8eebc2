// A device on werift (pure TypeScript WebRTC, npm). Run with NODE_PATH=<cache>/node_modules:
//   node werift_client.cjs OFFER_URL HEADERS_JSON OUT_PREFIX PACKETS_FILE
// Offers Opus sendrecv + a data channel (ICE on 127.0.0.1 only, no STUN), POSTs the offer, sends
// the pre-encoded 20 ms Opus packets of PACKETS_FILE (2-byte length + payload each) paced at 20 ms
// once DTLS is up, records every RTP payload it receives (2-byte seq + 2-byte length + payload) to
// OUT_PREFIX.rtp and what happened to OUT_PREFIX.json.
const fs = require("fs");
const { RTCPeerConnection, MediaStreamTrack, RtpPacket, RtpHeader } = require("werift");
const { runDevice } = require("./device_common.cjs");

const version = JSON.parse(fs.readFileSync(require.resolve("werift").split("/lib/")[0] + "/package.json")).version;

runDevice("werift " + version, async (ctx) => {
  const pc = new RTCPeerConnection({
    iceServers: [],
    iceInterfaceAddresses: { udp4: "127.0.0.1" },
    iceUseIpv6: false,
  });
  ctx.onClose(() => pc.close());
  const track = new MediaStreamTrack({ kind: "audio" });
  pc.addTransceiver(track, { direction: "sendrecv" });
  pc.onTrack.subscribe((remote) => remote.onReceiveRtp.subscribe((rtp) => ctx.received(rtp.header.sequenceNumber, rtp.payload)));
  const dc = pc.createDataChannel("oai-events");
  dc.stateChanged.subscribe((s) => { if (s === "open") { ctx.report.datachannel_open = true; dc.send('{"type":"session.update","session":{}}'); } });
  await pc.setLocalDescription(await pc.createOffer());
  if (pc.iceGatheringState !== "complete") await pc.iceGatheringStateChange.watch((s) => s === "complete");
  const answer = await ctx.post(pc.localDescription.sdp);
  await pc.setRemoteDescription({ type: "answer", sdp: answer });
  ctx.report.answer_accepted = true;
  const dtls = pc.dtlsTransports[0];
  await ctx.until(() => dtls.state === "connected" || dtls.state === "failed", 10000);
  ctx.report.dtls = dtls.state;
  ctx.report.dtls_connected_ms = ctx.elapsedMs();
  let seq = 1000, ts = 0;
  await ctx.sendPaced((payload) => {
    track.writeRtp(new RtpPacket(new RtpHeader({ payloadType: 111, sequenceNumber: seq++ & 0xffff, timestamp: ts, marker: false }), payload));
    ts += 960;
  });
});
