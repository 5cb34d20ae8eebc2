// Runs inside headless Firefox (script.callFunction over WebDriver BiDi) on a page of relay's origin.
// The microphone is Firefox's fake device (media.navigator.streams.fake): a steady tone, switched on for
// toneMs by track.enabled. Both the sent track and the received one are recorded with MediaRecorder
// (headless Firefox has no AudioContext without a sound device); the recordings come back as base64.
async (url, headers, toneMs, recordMs) => {
  const report = { stack: navigator.userAgent, answer_accepted: false, dtls: null, datachannel_open: false };
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  const mic = stream.getAudioTracks()[0];
  mic.enabled = false;
  const pc = new RTCPeerConnection({ iceServers: [] });
  pc.addTrack(mic, stream);
  const dc = pc.createDataChannel("oai-events");
  dc.onopen = () => { report.datachannel_open = true; dc.send('{"type":"session.update","session":{}}'); };
  const remote = new Promise((resolve) => { pc.ontrack = (e) => resolve(e.streams[0] || new MediaStream([e.track])); });
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && resolve();
  });
  const resp = await fetch(url, { method: "POST", body: pc.localDescription.sdp, headers: { ...headers, "Content-Type": "application/sdp" } });
  const answer = await resp.text();
  if (resp.status !== 201) { report.error = `POST ${resp.status}: ${answer}`; return report; }
  await pc.setRemoteDescription({ type: "answer", sdp: answer });
  report.answer_accepted = true;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  for (let i = 0; i < 500 && !(pc.connectionState === "connected" && report.datachannel_open); i++) await sleep(20);
  report.dtls = pc.sctp && pc.sctp.transport ? pc.sctp.transport.state : pc.connectionState;
  report.connection = pc.connectionState;
  if (pc.connectionState !== "connected") return report;
  const record = (s) => {
    const rec = new MediaRecorder(s, { mimeType: "audio/ogg; codecs=opus" });
    const chunks = [];
    rec.ondataavailable = (e) => chunks.push(e.data);
    const done = new Promise((r) => { rec.onstop = () => r(new Blob(chunks)); });
    rec.start();
    return { rec, done };
  };
  const sent = record(new MediaStream([mic]));
  const got = record(await remote);
  await sleep(200);
  mic.enabled = true;
  await sleep(toneMs);
  mic.enabled = false;
  await sleep(recordMs);
  sent.rec.stop();
  got.rec.stop();
  const b64 = async (blob) => {
    const bytes = new Uint8Array(await blob.arrayBuffer());
    let s = "";
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return btoa(s);
  };
  report.sent_ogg = await b64(await sent.done);
  report.received_ogg = await b64(await got.done);
  pc.close();
  return report;
}
