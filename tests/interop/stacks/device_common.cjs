// What every Node device script shares: arguments, the POST, pacing, the report and recordings.
const fs = require("fs");

function readPackets(path) {
  const buf = fs.readFileSync(path);
  const out = [];
  for (let i = 0; i + 2 <= buf.length;) {
    const n = buf.readUInt16BE(i);
    out.push(buf.subarray(i + 2, i + 2 + n));
    i += 2 + n;
  }
  return out;
}

async function runDevice(stack, body) {
  const [url, headersJson, out, packetsPath] = process.argv.slice(2);
  const t0 = Date.now();
  const report = { stack, answer_accepted: false, dtls: null, datachannel_open: false };
  const chunks = [];
  const closers = [];
  const ctx = {
    report,
    elapsedMs: () => Date.now() - t0,
    onClose: (f) => closers.push(f),
    received: (seq, payload) => {
      const head = Buffer.alloc(4);
      head.writeUInt16BE(seq & 0xffff, 0);
      head.writeUInt16BE(payload.length, 2);
      chunks.push(head, Buffer.from(payload));
    },
    post: async (sdp) => {
      const resp = await fetch(url, { method: "POST", body: sdp, headers: { ...JSON.parse(headersJson), "Content-Type": "application/sdp" } });
      const text = await resp.text();
      if (resp.status !== 201 && resp.status !== 200) throw new Error(`POST ${resp.status}: ${text}`);
      return text;
    },
    until: async (pred, timeoutMs) => {
      const end = Date.now() + timeoutMs;
      while (!pred() && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
      return pred();
    },
    sendPaced: async (send) => {
      const packets = readPackets(packetsPath);
      const start = Date.now();
      for (let i = 0; i < packets.length; i++) {
        const wait = start + i * 20 - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        send(packets[i]);
      }
      await new Promise((r) => setTimeout(r, 300));
    },
  };
  let code = 0;
  try {
    await body(ctx);
  } catch (e) {
    report.error = String(e && e.stack || e);
    code = 1;
  }
  fs.writeFileSync(out + ".rtp", Buffer.concat(chunks));
  fs.writeFileSync(out + ".json", JSON.stringify(report));
  for (const f of closers) { try { await f(); } catch (e) { /* closing */ } }
  process.exit(code);
}

module.exports = { runDevice };
