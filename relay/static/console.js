// relay console: the browser flow of the Realtime device API (its quickstart), with its client-side device tools.
//
// The call follows the quickstart step by step: POST /v1/realtime/sessions -> RTCPeerConnection
// with the returned iceServers -> data channel "messages" (ordered) -> getUserMedia (echo
// cancellation, noise suppression) -> addTrack -> createOffer -> setLocalDescription -> wait for
// complete ICE gathering -> POST /v1/realtime (application/sdp) -> setRemoteDescription -> play
// the remote audio. Everything the page knows is also in `window.__relayConsole.state`, a plain
// object tests (and curious users, from the devtools console) can read.

import { CLIENT_TOOLS, DeviceState, functionCallOf, parseArguments, runDeviceTool, toolAnswer, toolFailure } from "./device.js";
import {
  identityWarnings,
  isWorkspaceKeyUsable,
  loadIdentity,
  loadOptions,
  resetIdentity,
  saveIdentity,
  saveOptions,
  takeWorkspaceKeyFromFragment,
} from "./identity.js";

const METER_INTERVAL_MS = 50;
const STATS_INTERVAL_MS = 1000;
const GATHER_TIMEOUT_MS = 10000;
const MAX_EVENT_ROWS = 400;
const MAX_TRANSCRIPT_ITEMS = 200;
const MAX_TOOL_ROWS = 20;
const AUDIO_ENERGY_RMS = 0.01; // remote RMS above this counts as real sound (about -40 dBFS)
const TEXT_MAX_CHARS = 4000;
const MAX_EXPORT_EVENTS = 5000; // the export keeps more than the list shows, still bounded

const STEPS = [
  ["session", "Create session"],
  ["peer", "Peer connection"],
  ["mic", "Microphone"],
  ["offer", "Create offer"],
  ["gather", "ICE gathering"],
  ["sdp", "SDP exchange"],
  ["ice", "ICE connected"],
  ["channel", "Data channel open"],
  ["audio", "Assistant audio heard"],
];

const TRANSCRIPT_DELTA = new Set([
  "response.audio_transcript.delta",
  "response.output_audio_transcript.delta",
  "response.text.delta",
  "response.output_text.delta",
]);
const TRANSCRIPT_DONE = new Set([
  "response.audio_transcript.done",
  "response.output_audio_transcript.done",
  "response.text.done",
  "response.output_text.done",
]);

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------------
// state (plain data, readable by tests)

const device = new DeviceState(50);

// What one call owns; a new call starts from a fresh copy.
function freshCallState() {
  return {
    error: null,
    sessionId: null,
    sessionStatus: null,
    sdpStatus: null,
    iceServerCount: null,
    iceState: null,
    connectionState: null,
    dataChannelState: null,
    dataChannelLabel: null,
    steps: {},
    micLevel: 0,
    micPeak: 0,
    remoteLevel: 0,
    remotePeak: 0,
    remoteEnergyFrames: 0,
    transcript: [],
    toolCalls: [],
    eventCounts: {},
    sentTypes: [],
    stats: {},
    session: { assistant: null, model: null, voice: null, turnDetection: null, tools: [] },
    responseActive: null, // id of the assistant's response in progress (response.created .. response.done)
    interrupts: 0, // typed messages that cancelled a response in progress
    httpFailures: [], // failed HTTP steps: {step, status, code, message}
  };
}

const state = {
  phase: "idle", // idle | connecting | live | ended | error
  ...freshCallState(),
  device: { volumePercent: device.volumePercent, muted: device.muted, playbackStopped: device.playbackStopped },
  calls: 0,
  mic: { deviceId: "", devices: [], muted: false, pushToTalk: false, held: false, trackEnabled: null, label: "" },
};

function resetCallState() {
  Object.assign(state, freshCallState());
}

// ---------------------------------------------------------------------------------------------
// small view helpers

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function formatMs(ms) {
  if (ms === undefined || ms === null) return "";
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

function showBanner(text, kind = "error") {
  const banner = $("banner");
  banner.textContent = text;
  banner.dataset.kind = kind;
  banner.hidden = !text;
}

function setPhase(phase) {
  state.phase = phase;
  const pill = $("status-pill");
  pill.dataset.phase = phase;
  pill.textContent = { idle: "Idle", connecting: "Connecting…", live: "Live", ended: "Call ended", error: "Failed" }[phase];
  const busy = phase === "connecting" || phase === "live";
  $("connect-btn").disabled = busy;
  $("hangup-btn").disabled = !busy;
  const canTalk = phase === "live" && state.dataChannelState === "open";
  $("text-input").disabled = !canTalk;
  $("send-btn").disabled = !canTalk;
  for (const input of $("settings-form").elements) input.disabled = busy;
  document.body.dataset.phase = phase;
}

function renderSteps() {
  const list = $("steps");
  list.replaceChildren(
    ...STEPS.map(([key, label]) => {
      const step = state.steps[key] || { status: "pending" };
      const icon = { pending: "", active: "", done: "✓", failed: "✕" }[step.status];
      return el(
        "li",
        { class: "step", dataset: { status: step.status, step: key } },
        el("span", { class: "step-dot", "aria-hidden": "true" }, icon),
        el("span", { class: "step-label" }, label),
        el("span", { class: "step-time" }, step.status === "done" ? formatMs(step.ms) : step.status === "active" ? "…" : ""),
        el("span", { class: "visually-hidden" }, ` ${step.status}`),
      );
    }),
  );
}

function renderDevice() {
  const playing = Boolean(state.device.playing);
  state.device = { volumePercent: device.volumePercent, muted: device.muted, playbackStopped: device.playbackStopped, playing };
  $("volume").value = String(device.volumePercent);
  $("volume-value").textContent = `${device.volumePercent} %`;
  $("volume").style.setProperty("--fill", `${device.volumePercent}%`);
  const mute = $("mute-state");
  mute.dataset.on = String(device.muted);
  mute.textContent = device.muted ? "Muted" : "Sound on";
  const play = $("play-state");
  play.dataset.on = String(device.playbackStopped);
  play.textContent = device.playbackStopped ? "Audio stopped" : playing ? "Assistant speaking" : "Playback ready";
  const audio = $("remote-audio");
  audio.volume = device.volumePercent / 100;
  audio.muted = device.muted || device.playbackStopped;
}

// ---------------------------------------------------------------------------------------------
// transcript

const transcriptNodes = new Map(); // entry id -> <p> text node holder

function transcriptEntry(id, role, text, final) {
  let entry = state.transcript.find((e) => e.id === id);
  const box = $("transcript");
  box.querySelector(".empty")?.remove();
  if (!entry) {
    entry = { id, role, text: "", final: false };
    state.transcript.push(entry);
    if (state.transcript.length > MAX_TRANSCRIPT_ITEMS) {
      const old = state.transcript.shift();
      transcriptNodes.get(old.id)?.remove();
      transcriptNodes.delete(old.id);
    }
    const who = { user: "You", assistant: "Assistant", system: "relay" }[role] || role;
    const bubble = el("div", { class: `bubble ${role}`, dataset: { id } }, el("span", { class: "who" }, who), el("p", { class: "text" }));
    transcriptNodes.set(id, bubble);
    box.append(bubble);
  }
  entry.text = text;
  entry.final = final;
  const bubble = transcriptNodes.get(id);
  bubble.querySelector(".text").textContent = text || "…";
  bubble.dataset.final = String(final);
  box.scrollTop = box.scrollHeight;
  return entry;
}

function transcriptAppend(id, role, delta) {
  const entry = state.transcript.find((e) => e.id === id);
  transcriptEntry(id, role, (entry ? entry.text : "") + delta, false);
}

let noteSeq = 0;
function transcriptNote(text) {
  noteSeq += 1;
  transcriptEntry(`note-${noteSeq}`, "system", text, true);
}

// ---------------------------------------------------------------------------------------------
// event log

const eventRows = [];
let eventTotal = 0;
const exportLog = []; // {t_ms, direction, event}: what Export downloads
const DIRECTIONS = { in: ["↓", "received"], out: ["↑", "sent"], err: ["✕", "failed HTTP step"] };

function eventVisible(row) {
  const filter = $("event-filter").value.trim().toLowerCase();
  const hideDeltas = $("hide-deltas").checked;
  if (hideDeltas && row.dataset.type.endsWith(".delta")) return false;
  return !filter || row.dataset.type.toLowerCase().includes(filter);
}

function logEvent(direction, message, startedAt) {
  const type = typeof message?.type === "string" ? message.type : "(no type)";
  state.eventCounts[type] = (state.eventCounts[type] || 0) + 1;
  eventTotal += 1;
  $("event-count").textContent = String(eventTotal);
  const t = startedAt ? performance.now() - startedAt : 0;
  exportLog.push({ at: new Date().toISOString(), t_ms: Math.round(t), direction, event: message });
  if (exportLog.length > MAX_EXPORT_EVENTS) exportLog.shift();
  const [arrow, label] = DIRECTIONS[direction] || DIRECTIONS.in;
  const pre = el("pre", { class: "json" });
  const details = el(
    "details",
    {},
    el(
      "summary",
      {},
      el("span", { class: "ev-dir", "aria-label": label }, arrow),
      el("span", { class: "ev-type" }, type),
      el("span", { class: "ev-time" }, `${(t / 1000).toFixed(2)} s`),
    ),
    pre,
  );
  // Pretty-print only when opened: deltas arrive many times a second.
  details.addEventListener("toggle", () => {
    if (details.open && !pre.textContent) pre.textContent = JSON.stringify(message, null, 2);
  });
  const row = el("li", { class: `ev ${direction}`, dataset: { type } }, details);
  row.hidden = !eventVisible(row);
  const list = $("events");
  list.prepend(row);
  eventRows.push(row);
  if (eventRows.length > MAX_EVENT_ROWS) eventRows.shift().remove();
}

// The event log as one JSON document (what Export downloads): every event kept, oldest first.
function exportEvents() {
  return {
    exported_at: new Date().toISOString(),
    session_id: state.sessionId,
    page: window.location.origin,
    events: exportLog.slice(),
  };
}

function downloadEvents() {
  const doc = exportEvents();
  const blob = new Blob([JSON.stringify(doc, null, 2)], { type: "application/json" });
  const link = el("a", { href: URL.createObjectURL(blob), download: `relay-events-${state.sessionId || "no-session"}.json` });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  return doc.events.length;
}

function applyEventFilter() {
  for (const row of eventRows) row.hidden = !eventVisible(row);
}

// ---------------------------------------------------------------------------------------------
// session panel: what relay applies (from the session answer and the session events; never instructions)

function describeTurnDetection(td) {
  if (td === null) return "off (the device commits its turns)";
  if (!td || typeof td !== "object") return "–";
  const parts = [td.type || "?"];
  if (typeof td.threshold === "number") parts.push(`threshold ${td.threshold}`);
  if (typeof td.silence_duration_ms === "number") parts.push(`${td.silence_duration_ms} ms silence`);
  if (typeof td.eagerness === "string") parts.push(`eagerness ${td.eagerness}`);
  return parts.join(", ");
}

function applyAssistant(assistant) {
  if (!assistant || typeof assistant !== "object") return;
  const s = state.session;
  s.assistant = { id: String(assistant.id || ""), name: String(assistant.name || "") };
  if (typeof assistant.model === "string") s.model = assistant.model;
  if (typeof assistant.voice === "string") s.voice = assistant.voice;
  if ("turn_detection" in assistant) s.turnDetection = assistant.turn_detection;
  if (Array.isArray(assistant.tools)) {
    s.tools = assistant.tools.filter((t) => t && typeof t.name === "string").map((t) => ({ name: t.name, side: t.side === "server" ? "server" : "client" }));
  }
  renderSession();
}

function applySessionEvent(session) {
  // session.created / session.updated as relay forwards them (beta or GA shape); instructions are never read.
  if (!session || typeof session !== "object") return;
  const s = state.session;
  if (typeof session.model === "string") s.model = session.model;
  const voice = session.voice ?? session.audio?.output?.voice;
  if (typeof voice === "string") s.voice = voice;
  const td = "turn_detection" in session ? session.turn_detection : session.audio?.input?.turn_detection;
  if (td !== undefined) s.turnDetection = td;
  renderSession();
}

function renderSession() {
  const s = state.session;
  $("s-assistant").textContent = s.assistant ? (s.assistant.name ? `${s.assistant.name} (${s.assistant.id})` : s.assistant.id) : "–";
  $("s-model").textContent = s.model || "–";
  $("s-voice").textContent = s.voice || "–";
  $("s-turn").textContent = s.turnDetection === undefined ? "–" : describeTurnDetection(s.turnDetection);
  $("s-tools").textContent = s.tools.length ? s.tools.map((t) => `${t.name} (${t.side})`).join(", ") : "–";
}

// ---------------------------------------------------------------------------------------------
// audio meters

function rmsOf(analyser, buffer) {
  analyser.getFloatTimeDomainData(buffer);
  let sum = 0;
  for (let i = 0; i < buffer.length; i += 1) sum += buffer[i] * buffer[i];
  return Math.sqrt(sum / buffer.length);
}

function meterPercent(rms) {
  if (rms <= 0) return 0;
  const dbfs = 20 * Math.log10(rms);
  return Math.max(0, Math.min(100, ((dbfs + 60) / 60) * 100));
}

function paintMeter(id, rms) {
  const meter = $(id);
  const percent = meterPercent(rms);
  meter.firstElementChild.style.width = `${percent}%`;
  meter.setAttribute("aria-valuenow", String(Math.round(percent)));
}

// ---------------------------------------------------------------------------------------------
// incoming data-channel events (transcript, device tools, playback state)

function handleMessage(message, send) {
  if (!message || typeof message !== "object") return;
  const type = message.type;
  if (type === "conversation.item.input_audio_transcription.delta") {
    transcriptAppend(`in-${message.item_id}`, "user", message.delta || "");
  } else if (type === "conversation.item.input_audio_transcription.completed") {
    transcriptEntry(`in-${message.item_id || Math.random()}`, "user", message.transcript || "", true);
  } else if (TRANSCRIPT_DELTA.has(type)) {
    transcriptAppend(`out-${message.response_id}-${message.item_id}`, "assistant", message.delta || "");
  } else if (TRANSCRIPT_DONE.has(type)) {
    const text = message.transcript ?? message.text;
    const id = `out-${message.response_id}-${message.item_id}`;
    const prior = state.transcript.find((e) => e.id === id);
    transcriptEntry(id, "assistant", typeof text === "string" ? text : prior?.text || "", true);
  } else if (type === "session.created" || type === "session.updated") {
    applySessionEvent(message.session);
  } else if (type === "response.done") {
    if (!state.responseActive || state.responseActive === message.response?.id) state.responseActive = null;
    // A cancelled response (barge-in) leaves its transcript unfinished: close it, marked as cut off.
    const prefix = `out-${message.response?.id}-`;
    for (const entry of state.transcript.filter((e) => e.id.startsWith(prefix) && !e.final)) {
      entry.interrupted = true;
      transcriptEntry(entry.id, "assistant", `${entry.text}…`, true);
      transcriptNodes.get(entry.id).dataset.interrupted = "true";
    }
  } else if (type === "response.created") {
    state.responseActive = message.response?.id || "response";
    if (device.playbackStopped) {
      device.playbackStopped = false; // a new response plays again; stop_audio stopped the old one
      renderDevice();
    }
  } else if (type === "output_audio_buffer.started") {
    state.device.playing = true;
    renderDevice();
  } else if (type === "output_audio_buffer.stopped" || type === "output_audio_buffer.cleared") {
    state.device.playing = false;
    renderDevice();
  } else if (type === "error") {
    const text = message.error?.message || "error";
    transcriptNote(`Error from relay: ${text}`);
  }
  const call = functionCallOf(message);
  if (call) answerFunctionCall(call, send);
}

function answerFunctionCall(call, send) {
  const { name, call_id: callId } = call;
  if (!CLIENT_TOOLS.includes(name)) return; // server-side function: relay runs it
  const record = { name, callId, arguments: call.arguments || "", ok: false, result: null, error: null };
  let answer;
  try {
    const params = parseArguments(call.arguments);
    const result = runDeviceTool(device, name, params);
    record.ok = true;
    record.result = result;
    answer = toolAnswer(callId, result);
  } catch (err) {
    record.error = String(err.message || err);
    answer = toolFailure(callId, record.error);
  }
  renderDevice();
  state.toolCalls.push(record);
  if (state.toolCalls.length > MAX_TOOL_ROWS) state.toolCalls.shift();
  renderTools();
  for (const m of answer) send(m);
}


// ---------------------------------------------------------------------------------------------
// one call

class ApiFailure extends Error {
  constructor(what, status, body) {
    const detail = body?.error?.message || body?.detail?.error || (typeof body === "string" && body) || "";
    super(`${what} failed: HTTP ${status}${detail ? ` — ${detail}` : ""}`);
    this.status = status;
    this.code = body?.error?.code || body?.detail?.code || null;
  }
}

class CallEnded extends Error {}

// What to do about the relay's refusals (the Realtime device API's error codes), shown after its own message.
const HINTS = {
  client_not_found:
    "This client ID is not known to the relay: open the console link that relay serve printed (it carries a workspace key, so this client enrols itself), paste a Workspace key, paste the ID of a client created by the operator (relay admin clients create), or use Demo mode if the relay allows it (RELAY_DEMO_MODE=true).",
  invalid_workspace_key:
    "The workspace key is wrong, belongs to another workspace than this client's, or was rotated: open the link relay serve printed again, paste the current key, or clear the Workspace key field.",
  demo_mode_disabled: "Demo mode is off on this relay (the operator enables it with RELAY_DEMO_MODE=true).",
  invalid_secret:
    "This client ID is enrolled with another secret: paste the original one, make a New identity, or ask the operator to reset it (relay admin clients reset-secret).",
  missing_secret: "This relay needs a client secret (32+ characters).",
  rate_limited: "Too many failed attempts: wait a minute and try again.",
  capacity_exceeded: "The relay is at its call limit: try again shortly.",
};

async function readBody(response) {
  const text = await response.text();
  try {
    return JSON.parse(text);
  } catch {
    return text.slice(0, 300);
  }
}

function recordHttpFailure(step, detail, startedAt) {
  const error = detail.error && typeof detail.error === "object" ? detail.error : { message: String(detail.error || "") };
  state.httpFailures.push({ step, status: detail.status, code: error.code || null, message: error.message || error.error || "" });
  logEvent("err", { type: "http.error", step, method: detail.method, path: detail.path, status: detail.status, error }, startedAt);
}

// ---------------------------------------------------------------------------------------------
// microphone: picker, mute, push-to-talk (all by track.enabled: the track stays, silence is sent)

function micConstraints(deviceId) {
  const audio = { sampleRate: 48000, channelCount: 1, echoCancellation: true, noiseSuppression: true };
  if (deviceId) audio.deviceId = { exact: deviceId };
  return audio;
}

async function listMicrophones() {
  if (!navigator.mediaDevices?.enumerateDevices) return [];
  const devices = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === "audioinput");
  state.mic.devices = devices.map((d, i) => ({ deviceId: d.deviceId, label: d.label || `Microphone ${i + 1}` }));
  const select = $("mic-select");
  const chosen = state.mic.deviceId;
  select.replaceChildren(
    el("option", { value: "" }, "Default microphone"),
    ...state.mic.devices.filter((d) => d.deviceId && d.deviceId !== "default").map((d) => el("option", { value: d.deviceId }, d.label)),
  );
  select.value = chosen;
  return state.mic.devices;
}

function applyMicGate() {
  const m = state.mic;
  const enabled = !m.muted && (!m.pushToTalk || m.held);
  const track = current?.localStream?.getAudioTracks()[0];
  if (track) {
    track.enabled = enabled;
    m.label = track.label;
  }
  m.trackEnabled = track ? track.enabled : null;
  const flag = $("mic-state");
  flag.dataset.on = String(!enabled);
  flag.textContent = m.muted ? "Mic muted" : m.pushToTalk && !m.held ? "Hold to talk" : "Mic live";
  $("mute-btn").setAttribute("aria-pressed", String(m.muted));
  $("mute-btn").textContent = m.muted ? "Unmute mic" : "Mute mic";
  $("ptt-btn").disabled = !m.pushToTalk;
  $("ptt-btn").setAttribute("aria-pressed", String(m.pushToTalk && m.held));
  return enabled;
}

function setMuted(muted) {
  state.mic.muted = Boolean(muted);
  return applyMicGate();
}

function setPushToTalk(on) {
  state.mic.pushToTalk = Boolean(on);
  state.mic.held = false;
  $("ptt-mode").checked = state.mic.pushToTalk;
  return applyMicGate();
}

function talk(held) {
  if (!state.mic.pushToTalk) return applyMicGate();
  state.mic.held = Boolean(held);
  return applyMicGate();
}

async function selectMicrophone(deviceId) {
  state.mic.deviceId = deviceId || "";
  $("mic-select").value = state.mic.deviceId;
  if (current?.sender) return current.switchMicrophone(state.mic.deviceId);
  return true;
}

class Call {
  constructor(options) {
    this.options = options;
    this.closed = false;
    this.pc = null;
    this.dc = null;
    this.localStream = null;
    this.audioCtx = null;
    this.micAnalyser = null;
    this.outAnalyser = null;
    this.timers = [];
    this.startedAt = performance.now();
    this.stepStartedAt = {};
    this.responseText = new Map();
  }

  url(path) {
    const base = (this.options.apiBase || window.location.origin).replace(/\/+$/, "");
    return base + path;
  }

  headers(contentType) {
    const h = {
      "Content-Type": contentType,
      "X-Client-Id": this.options.clientId,
      "X-Client-Secret": this.options.clientSecret,
    };
    if (this.options.demoMode) h["X-Demo-Mode"] = "true";
    else if (this.options.workspaceKey) h["X-Workspace-Key"] = this.options.workspaceKey;
    if (this.options.assistantId) h["X-Assistant-Id"] = this.options.assistantId;
    return h;
  }

  begin(step) {
    this.stepStartedAt[step] = performance.now();
    state.steps[step] = { status: "active" };
    renderSteps();
  }

  done(step) {
    const current = state.steps[step];
    if (!current || current.status === "done") return;
    const ms = performance.now() - (this.stepStartedAt[step] ?? this.startedAt);
    state.steps[step] = { status: "done", ms: Math.round(ms), atMs: Math.round(performance.now() - this.startedAt) };
    renderSteps();
  }

  fail(step) {
    if (state.steps[step] && state.steps[step].status !== "done") {
      state.steps[step] = { status: "failed" };
      renderSteps();
    }
  }

  check() {
    if (this.closed) throw new CallEnded("hung up");
  }

  // One HTTP step; a failure (an HTTP error or no answer at all) is also written to the event log.
  async request(step, what, path, init) {
    let response;
    try {
      response = await fetch(this.url(path), init);
    } catch (err) {
      recordHttpFailure(step, { method: init.method, path, status: null, error: { message: String(err.message || err) } }, this.startedAt);
      throw err;
    }
    if (!response.ok) {
      const body = await readBody(response);
      const error = typeof body === "object" && body ? body.error || body.detail || body : { message: body };
      recordHttpFailure(step, { method: init.method, path, status: response.status, error }, this.startedAt);
      throw new ApiFailure(what, response.status, body);
    }
    return response;
  }

  async start() {
    // The AudioContext is created inside the click handler's task, so autoplay rules allow it.
    this.audioCtx = new AudioContext();

    // 1. session
    this.begin("session");
    const sessionResponse = await this.request("session", "Session creation", "/v1/realtime/sessions", {
      method: "POST",
      headers: this.headers("application/json"),
      body: JSON.stringify({ modalities: ["text", "audio"] }),
    }).catch((err) => {
      state.sessionStatus = err.status ?? null;
      throw err;
    });
    state.sessionStatus = sessionResponse.status;
    const session = await sessionResponse.json();
    this.check();
    state.sessionId = session.id;
    applyAssistant(session.assistant); // relay's extension: the assistant it applies (no instructions)
    state.iceServerCount = Array.isArray(session.iceServers) ? session.iceServers.length : 0;
    $("session-id").textContent = session.id || "";
    this.done("session");

    // 2. peer connection with the returned ICE servers (never a public default: relay decides)
    this.begin("peer");
    const pc = new RTCPeerConnection({ iceServers: Array.isArray(session.iceServers) ? session.iceServers : [] });
    this.pc = pc;
    pc.ontrack = (event) => this.onTrack(event);
    pc.oniceconnectionstatechange = () => this.onIceState();
    pc.onconnectionstatechange = () => this.onConnectionState();
    const dc = pc.createDataChannel("messages", { ordered: true });
    this.dc = dc;
    state.dataChannelLabel = dc.label;
    state.dataChannelState = dc.readyState;
    dc.onopen = () => this.onChannelOpen();
    dc.onclose = () => this.onChannelClose();
    dc.onmessage = (event) => this.onMessage(event);
    this.done("peer");

    // 3. microphone
    this.begin("mic");
    const stream = await navigator.mediaDevices.getUserMedia({ audio: micConstraints(state.mic.deviceId) });
    if (this.closed) {
      stream.getTracks().forEach((track) => track.stop());
      this.check();
    }
    this.localStream = stream;
    stream.getAudioTracks().forEach((track) => { this.sender = pc.addTrack(track, stream); });
    this.micAnalyser = this.analyserFor(stream);
    applyMicGate();
    this.done("mic");
    listMicrophones(); // labels are readable once permission is granted

    // 4. offer
    this.begin("offer");
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    this.check();
    this.done("offer");

    // 5. wait for ICE gathering to complete (bounded, so an unreachable TURN server cannot hang us)
    this.begin("gather");
    await new Promise((resolve) => {
      if (pc.iceGatheringState === "complete") return resolve();
      const timer = setTimeout(resolve, GATHER_TIMEOUT_MS);
      pc.onicegatheringstatechange = () => {
        if (pc.iceGatheringState === "complete") {
          clearTimeout(timer);
          resolve();
        }
      };
    });
    this.check();
    this.done("gather");

    // 6. SDP offer/answer
    this.begin("sdp");
    const sdpResponse = await this.request("sdp", "SDP exchange", "/v1/realtime", {
      method: "POST",
      headers: this.headers("application/sdp"),
      body: pc.localDescription.sdp,
    }).catch((err) => {
      state.sdpStatus = err.status ?? null;
      throw err;
    });
    state.sdpStatus = sdpResponse.status;
    const answerSdp = await sdpResponse.text();
    this.check();
    await pc.setRemoteDescription({ type: "answer", sdp: answerSdp });
    this.check();
    this.done("sdp");

    for (const step of ["ice", "channel", "audio"]) if (!state.steps[step]) this.begin(step);
    if (["connected", "completed"].includes(pc.iceConnectionState)) this.done("ice");
    if (dc.readyState === "open") this.onChannelOpen();
    this.timers.push(setInterval(() => this.pollStats(), STATS_INTERVAL_MS));
  }

  analyserFor(stream) {
    const analyser = this.audioCtx.createAnalyser();
    analyser.fftSize = 1024;
    this.audioCtx.createMediaStreamSource(stream).connect(analyser);
    if (!this.meterTimer) {
      this.meterTimer = setInterval(() => this.tickMeters(), METER_INTERVAL_MS);
      this.timers.push(this.meterTimer);
    }
    if (this.audioCtx.state === "suspended") this.audioCtx.resume().catch(() => {});
    return analyser;
  }

  tickMeters() {
    const buffer = this.meterBuffer || (this.meterBuffer = new Float32Array(1024));
    if (this.micAnalyser) {
      state.micLevel = rmsOf(this.micAnalyser, buffer);
      state.micPeak = Math.max(state.micPeak, state.micLevel);
      paintMeter("mic-meter", state.micLevel);
    }
    if (this.outAnalyser) {
      state.remoteLevel = rmsOf(this.outAnalyser, buffer);
      state.remotePeak = Math.max(state.remotePeak, state.remoteLevel);
      if (state.remoteLevel > AUDIO_ENERGY_RMS) {
        state.remoteEnergyFrames += 1;
        this.done("audio");
      }
      paintMeter("out-meter", state.remoteLevel);
    }
  }

  onTrack(event) {
    const stream = event.streams[0] || new MediaStream([event.track]);
    const audio = $("remote-audio");
    if (audio.srcObject !== stream) {
      audio.srcObject = stream;
      renderDevice();
      audio.play().catch(() => showBanner("The browser blocked audio playback: click anywhere on the page to hear the assistant.", "warn"));
      this.outAnalyser = this.analyserFor(stream);
    }
  }

  onIceState() {
    const s = this.pc.iceConnectionState;
    state.iceState = s;
    if (s === "connected" || s === "completed") this.done("ice");
    if (s === "failed") {
      this.fail("ice");
      this.end("error", "ICE failed: no network path to the relay (check TURN/STUN and the relay's ICE addresses).");
    }
  }

  onConnectionState() {
    const s = this.pc.connectionState;
    state.connectionState = s;
    if (s === "connected" && state.phase === "connecting") setPhase("live");
    if ((s === "failed" || s === "closed") && !this.closed) this.end("ended", "The connection to the relay was lost.");
  }

  onChannelOpen() {
    state.dataChannelState = "open";
    this.done("channel");
    if (state.phase === "connecting") setPhase("live");
    else setPhase(state.phase);
    $("text-input").focus();
  }

  onChannelClose() {
    state.dataChannelState = "closed";
    if (!this.closed) this.end("ended", "The relay closed the call.");
  }

  send(message) {
    if (!this.dc || this.dc.readyState !== "open") return false;
    this.dc.send(JSON.stringify(message));
    state.sentTypes.push(message.type);
    if (state.sentTypes.length > 200) state.sentTypes.shift();
    logEvent("out", message, this.startedAt);
    return true;
  }

  // Another microphone, mid-call: the new track replaces the old one on the same sender (no renegotiation).
  async switchMicrophone(deviceId) {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: micConstraints(deviceId) });
    if (this.closed || !this.sender) {
      stream.getTracks().forEach((track) => track.stop());
      return false;
    }
    const [track] = stream.getAudioTracks();
    await this.sender.replaceTrack(track);
    this.localStream?.getTracks().forEach((old) => old.stop());
    this.localStream = stream;
    this.micAnalyser = this.analyserFor(stream);
    applyMicGate();
    return true;
  }

  sendText(text) {
    // Typed while the assistant speaks: interrupt it first (as a spoken barge-in would), then the message.
    if (state.responseActive) {
      this.send({ type: "response.cancel" });
      state.interrupts += 1;
    } else if (state.device.playing) {
      this.send({ type: "output_audio_buffer.clear" }); // the answer is generated but still playing
      state.interrupts += 1;
    }
    const ok = this.send({
      type: "conversation.item.create",
      item: { type: "message", role: "user", content: [{ type: "input_text", text }] },
    });
    if (!ok) return false;
    this.send({ type: "response.create" });
    noteSeq += 1;
    transcriptEntry(`typed-${noteSeq}`, "user", text, true);
    return true;
  }

  onMessage(event) {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      logEvent("in", { type: "(not JSON)", data: String(event.data).slice(0, 200) }, this.startedAt);
      return;
    }
    logEvent("in", message, this.startedAt);
    this.handle(message);
  }

  handle(message) {
    handleMessage(message, (m) => this.send(m));
  }

  async pollStats() {
    if (!this.pc || this.closed) return;
    const report = await this.pc.getStats();
    const stats = {};
    let pair = null;
    const byId = new Map();
    report.forEach((s) => byId.set(s.id, s));
    report.forEach((s) => {
      if (s.type === "transport" && s.selectedCandidatePairId) pair = byId.get(s.selectedCandidatePairId);
    });
    if (!pair) report.forEach((s) => { if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s; });
    if (pair) {
      if (typeof pair.currentRoundTripTime === "number") stats.rttMs = pair.currentRoundTripTime * 1000;
      const local = byId.get(pair.localCandidateId);
      const remote = byId.get(pair.remoteCandidateId);
      if (local) stats.candidateType = local.candidateType;
      if (remote) stats.remoteCandidateType = remote.candidateType;
      if (local) stats.protocol = local.protocol;
    }
    report.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "audio") {
        stats.jitterMs = (s.jitter || 0) * 1000;
        stats.packetsLost = s.packetsLost || 0;
        stats.packetsReceived = s.packetsReceived || 0;
        stats.bytesReceived = s.bytesReceived || 0;
        const codec = byId.get(s.codecId);
        if (codec) stats.codec = `${(codec.mimeType || "").replace("audio/", "")} ${codec.clockRate / 1000} kHz`;
      }
      if (s.type === "remote-inbound-rtp" && s.kind === "audio" && stats.rttMs === undefined && typeof s.roundTripTime === "number") {
        stats.rttMs = s.roundTripTime * 1000;
      }
    });
    state.stats = stats;
    renderStats();
  }

  end(phase, reason) {
    if (this.closed) return;
    this.closed = true;
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
    for (const step of ["ice", "channel", "audio"]) if (state.steps[step]?.status === "active") this.fail(step);
    try {
      this.dc?.close();
    } finally {
      this.pc?.close();
    }
    this.localStream?.getTracks().forEach((track) => track.stop());
    const audio = $("remote-audio");
    audio.srcObject = null;
    this.audioCtx?.close().catch(() => {});
    state.dataChannelState = this.dc ? "closed" : null;
    state.micLevel = 0;
    state.remoteLevel = 0;
    state.device.playing = false;
    paintMeter("mic-meter", 0);
    paintMeter("out-meter", 0);
    renderDevice();
    if (reason) showBanner(reason, phase === "error" ? "error" : "info");
    if (phase === "error") state.error = reason;
    stopTimer();
    setPhase(phase);
    if (current === this) current = null;
  }
}

// ---------------------------------------------------------------------------------------------
// panels

function renderTools() {
  const list = $("tool-list");
  list.replaceChildren(
    ...state.toolCalls
      .slice(-5)
      .reverse()
      .map((t) =>
        el(
          "li",
          { class: t.ok ? "ok" : "bad" },
          el("code", {}, t.name),
          el("span", {}, t.ok ? ` → ${JSON.stringify({ success: true, ...t.result })}` : ` → ${t.error}`),
        ),
      ),
  );
}

function renderStats() {
  const s = state.stats;
  $("q-rtt").textContent = s.rttMs !== undefined ? `${s.rttMs.toFixed(1)} ms` : "–";
  $("q-jitter").textContent = s.jitterMs !== undefined ? `${s.jitterMs.toFixed(1)} ms` : "–";
  $("q-lost").textContent = s.packetsLost !== undefined ? `${s.packetsLost} of ${s.packetsReceived + s.packetsLost}` : "–";
  $("q-cand").textContent = s.candidateType ? `${s.candidateType}${s.protocol ? ` / ${s.protocol}` : ""}` : "–";
  $("q-codec").textContent = s.codec || "–";
  $("q-recv").textContent = s.bytesReceived !== undefined ? `${(s.bytesReceived / 1024).toFixed(0)} KiB` : "–";
}

let timerHandle = null;
function startTimer() {
  const started = performance.now();
  stopTimer();
  timerHandle = setInterval(() => {
    const seconds = Math.floor((performance.now() - started) / 1000);
    $("call-timer").textContent = `${String(Math.floor(seconds / 60)).padStart(2, "0")}:${String(seconds % 60).padStart(2, "0")}`;
  }, 500);
}
function stopTimer() {
  clearInterval(timerHandle);
  timerHandle = null;
}

// ---------------------------------------------------------------------------------------------
// wiring

let current = null;

function readForm() {
  return {
    apiBase: $("api-base").value.trim(),
    clientId: $("client-id").value.trim(),
    clientSecret: $("client-secret").value.trim(),
    workspaceKey: $("workspace-key").value.trim(),
    assistantId: $("assistant-id").value.trim(),
    demoMode: $("demo-mode").checked,
  };
}

function persistForm() {
  const form = readForm();
  if (form.clientId && form.clientSecret) saveIdentity(form);
  saveOptions({ apiBase: form.apiBase, demoMode: form.demoMode, assistantId: form.assistantId });
  const warnings = identityWarnings(form);
  $("identity-note").textContent = warnings.join(" ");
  state.workspaceKeySet = Boolean(form.workspaceKey);
  return form;
}

async function connect() {
  if (current) return false;
  const options = persistForm();
  if (!options.clientId || !options.clientSecret) {
    showBanner("Set a client ID and secret first.");
    return false;
  }
  if (options.workspaceKey && !isWorkspaceKeyUsable(options.workspaceKey)) {
    showBanner("The workspace key must be printable ASCII (at most 256 characters): paste it again.");
    return false;
  }
  if (!window.isSecureContext || !navigator.mediaDevices) {
    showBanner("The microphone needs a secure page: open the console over https or on localhost / 127.0.0.1.");
    return false;
  }
  resetCallState();
  state.calls += 1;
  transcriptNodes.clear();
  $("transcript").replaceChildren();
  $("session-id").textContent = "";
  showBanner("");
  renderSteps();
  renderStats();
  renderTools();
  renderSession();
  $("settings-card").open = false; // make room for the call; one click opens it again
  const call = new Call(options);
  current = call;
  setPhase("connecting");
  startTimer();
  try {
    await call.start();
    return true;
  } catch (err) {
    if (err instanceof CallEnded) return false;
    const step = Object.entries(state.steps).find(([, s]) => s.status === "active")?.[0];
    if (step) call.fail(step);
    const message =
      err.name === "NotAllowedError" ? "Microphone permission was denied." :
      err.name === "NotFoundError" ? "No microphone found." :
      err instanceof TypeError ? `Cannot reach the relay at ${call.url("")} (${err.message}). Check the API base URL.` :
      err.message || String(err);
    const hint = err instanceof ApiFailure && HINTS[err.code] ? ` ${HINTS[err.code]}` : "";
    call.end("error", message + hint);
    return false;
  }
}

function hangup() {
  if (!current) return false;
  current.end("ended", "");
  return true;
}

function sendText(text) {
  const clean = String(text).trim().slice(0, TEXT_MAX_CHARS);
  if (!clean || !current) return false;
  return current.sendText(clean);
}

// The link `relay serve` prints carries the workspace key in the fragment (#workspace_key=...):
// keep it with the identity in localStorage and take it out of the address bar.
function adoptLinkKey() {
  const key = takeWorkspaceKeyFromFragment();
  if (!key) return false;
  $("workspace-key").value = key;
  state.workspaceKeyFromLink = true;
  persistForm();
  $("identity-note").textContent = "Workspace key from the link saved in this browser: this client enrols itself on its first call.";
  return true;
}

function wireToggle(buttonId, inputId) {
  $(buttonId).addEventListener("click", () => {
    const input = $(inputId);
    const show = input.type === "password";
    input.type = show ? "text" : "password";
    $(buttonId).textContent = show ? "Hide" : "Show";
    $(buttonId).setAttribute("aria-pressed", String(show));
  });
}

function init() {
  const identity = loadIdentity();
  const options = loadOptions();
  const params = new URLSearchParams(window.location.search);
  // ?api=<base url>&demo=1&assistant=<id> preset the options (handy for links and tests).
  if (params.has("api")) options.apiBase = params.get("api");
  if (params.has("demo")) options.demoMode = params.get("demo") === "1" || params.get("demo") === "true";
  if (params.has("assistant")) options.assistantId = params.get("assistant");
  $("api-base").value = options.apiBase;
  $("client-id").value = identity.clientId;
  $("client-secret").value = identity.clientSecret;
  $("workspace-key").value = identity.workspaceKey;
  state.workspaceKeySet = Boolean(identity.workspaceKey);
  state.workspaceKeyFromLink = false;
  $("assistant-id").value = options.assistantId;
  $("demo-mode").checked = options.demoMode;
  $("identity-note").textContent = identity.created ? "A new identity was generated and saved in this browser." : "";
  state.identityCreated = identity.created;
  adoptLinkKey();
  window.addEventListener("hashchange", () => adoptLinkKey()); // the link pasted into an open tab

  $("settings-form").addEventListener("change", persistForm);
  $("settings-form").addEventListener("submit", (e) => e.preventDefault());
  wireToggle("secret-toggle", "client-secret");
  wireToggle("workspace-key-toggle", "workspace-key");
  $("new-identity-btn").addEventListener("click", () => {
    const fresh = resetIdentity();
    $("client-id").value = fresh.clientId;
    $("client-secret").value = fresh.clientSecret;
    $("identity-note").textContent = "New identity saved. It is enrolled on its first call.";
  });
  $("connect-btn").addEventListener("click", () => connect());
  $("hangup-btn").addEventListener("click", () => hangup());
  $("text-form").addEventListener("submit", (e) => {
    e.preventDefault();
    if (sendText($("text-input").value)) $("text-input").value = "";
  });
  for (const chip of document.querySelectorAll(".chip")) {
    chip.addEventListener("click", () => {
      $("text-input").value = chip.dataset.text;
      if (!$("text-input").disabled) $("text-input").focus();
    });
  }
  $("volume").addEventListener("input", () => {
    device.setVolume(Number($("volume").value));
    renderDevice();
  });
  $("mic-select").addEventListener("change", () => {
    selectMicrophone($("mic-select").value).catch((err) => showBanner(`Could not switch the microphone: ${err.message || err}`));
  });
  $("mute-btn").addEventListener("click", () => setMuted(!state.mic.muted));
  $("ptt-mode").addEventListener("change", () => setPushToTalk($("ptt-mode").checked));
  const ptt = $("ptt-btn");
  ptt.addEventListener("pointerdown", () => talk(true));
  for (const name of ["pointerup", "pointerleave", "pointercancel"]) ptt.addEventListener(name, () => talk(false));
  const typing = (e) => ["INPUT", "TEXTAREA", "SELECT"].includes(e.target?.tagName) && e.target.id !== "ptt-mode";
  document.addEventListener("keydown", (e) => {
    if (e.code === "Space" && state.mic.pushToTalk && !typing(e)) {
      e.preventDefault();
      if (!e.repeat) talk(true);
    }
  });
  document.addEventListener("keyup", (e) => {
    if (e.code === "Space" && state.mic.pushToTalk) talk(false);
  });
  $("export-events").addEventListener("click", () => downloadEvents());
  listMicrophones().catch(() => {});
  $("event-filter").addEventListener("input", applyEventFilter);
  $("hide-deltas").addEventListener("change", applyEventFilter);
  $("clear-events").addEventListener("click", () => {
    for (const row of eventRows) row.remove();
    eventRows.length = 0;
    eventTotal = 0;
    $("event-count").textContent = "0";
  });
  // Closing or leaving the page ends the call at once (the relay frees it without waiting for ICE timeouts).
  window.addEventListener("pagehide", () => hangup());
  document.addEventListener("click", () => {
    const audio = $("remote-audio");
    if (audio.srcObject && audio.paused) audio.play().catch(() => {});
  });

  renderSteps();
  renderDevice();
  renderStats();
  renderSession();
  applyMicGate();
  setPhase("idle");
  state.ready = true;
}

// receive(): feed one event through the same path as the data channel's (for tests and the
// devtools console); tool answers go to the live call, if any.
function receive(message) {
  logEvent("in", message, current?.startedAt);
  handleMessage(message, (m) => current?.send(m));
}

window.__relayConsole = {
  state, connect, hangup, sendText, receive, device,
  setMuted, setPushToTalk, talk, selectMicrophone, listMicrophones, exportEvents, downloadEvents,
};
init();
