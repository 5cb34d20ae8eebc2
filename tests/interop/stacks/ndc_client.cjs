// A device on node-datachannel (libdatachannel: libjuice ICE, OpenSSL DTLS, usrsctp), npm.
//   NODE_PATH=<cache>/node_modules node ndc_client.cjs OFFER_URL HEADERS_JSON OUT_PREFIX PACKETS_FILE
// Same protocol as werift_client.cjs; RTP is built here (no media handler: the track carries raw RTP).
const ndc = require("node-datachannel");
const { runDevice } = require("./device_common.cjs");

const SSRC = 0x1234567;
if (process.env.NDC_LOG) ndc.initLogger(process.env.NDC_LOG, (level, msg) => console.error(level, msg));

runDevice("node-datachannel " + ndc.getLibraryVersion(), async (ctx) => {
  const pc = new ndc.PeerConnection("device", { iceServers: [], bindAddress: "127.0.0.1", enableIceUdpMux: false, disableAutoNegotiation: true });
  ctx.onClose(() => { pc.close(); ndc.cleanup(); });
  const audio = new ndc.Audio("0", "SendRecv");
  audio.addOpusCodec(111);
  audio.addSSRC(SSRC, "device", "stream", "audio");
  const track = pc.addTrack(audio);
  track.onMessage((msg) => {
    const b = Buffer.from(msg);
    if (b.length < 12 || (b[1] >= 200 && b[1] <= 206)) return; // RTCP
    const cc = b[0] & 0x0f;
    let off = 12 + 4 * cc;
    if (b[0] & 0x10) off += 4 + 4 * b.readUInt16BE(off + 2);
    let end = b.length;
    if (b[0] & 0x20) end -= b[b.length - 1];
    ctx.received(b.readUInt16BE(2), b.subarray(off, end));
  });
  const dc = pc.createDataChannel("oai-events");
  dc.onOpen(() => { ctx.report.datachannel_open = true; dc.sendMessage('{"type":"session.update","session":{}}'); });
  pc.setLocalDescription();
  await ctx.until(() => pc.gatheringState() === "complete", 10000);
  const answer = await ctx.post(pc.localDescription().sdp);
  ctx.report.answer_setup = (answer.match(/a=setup:(\w+)/) || [])[1];
  pc.setRemoteDescription(answer, "answer");
  ctx.report.answer_accepted = true;
  await ctx.until(() => pc.state() === "connected" || pc.state() === "failed", 10000);
  ctx.report.dtls = pc.state(); // libdatachannel's "connected": ICE and DTLS up
  ctx.report.dtls_connected_ms = ctx.elapsedMs();
  let seq = 2000, ts = 0;
  await ctx.sendPaced((payload) => {
    const head = Buffer.alloc(12);
    head[0] = 0x80; head[1] = 111;
    head.writeUInt16BE(seq++ & 0xffff, 2);
    head.writeUInt32BE(ts >>> 0, 4);
    head.writeUInt32BE(SSRC, 8);
    ts += 960;
    track.sendMessageBinary(Buffer.concat([head, payload]));
  });
});
