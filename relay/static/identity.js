// The device identity (the Realtime device API's quickstart): a UUID client id and a 32-byte random secret, generated on the
// first visit and kept in localStorage, as the quickstart advises for web apps; plus the workspace key
// that lets this new client self-enrol (from the link `relay serve` prints, or pasted), and the
// page's options.

const KEY_ID = "relay.console.clientId";
const KEY_SECRET = "relay.console.clientSecret";
const KEY_WORKSPACE = "relay.console.workspaceKey";
const MAX_WORKSPACE_KEY_CHARS = 256; // longer keys are refused by the relay unread
const LINK_KEY_PARAM = "workspace_key";
const KEY_OPTIONS = "relay.console.options";

export const SECRET_BYTES = 32;
export const MIN_SECRET_CHARS = 32;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function newClientId() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  // randomUUID needs a secure context; build a version-4 UUID from getRandomValues otherwise.
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = hex(b);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export function newClientSecret() {
  return hex(crypto.getRandomValues(new Uint8Array(SECRET_BYTES)));
}

export function isUuid(text) {
  return UUID_RE.test(text);
}

function storage() {
  try {
    return window.localStorage;
  } catch {
    return null; // storage disabled: identity lives for this page only
  }
}

/** The stored identity, creating and storing a new one on the first visit. */
export function loadIdentity() {
  const store = storage();
  let clientId = store?.getItem(KEY_ID) || "";
  let clientSecret = store?.getItem(KEY_SECRET) || "";
  const workspaceKey = store?.getItem(KEY_WORKSPACE) || "";
  let created = false;
  if (!clientId || !clientSecret) {
    clientId = newClientId();
    clientSecret = newClientSecret();
    created = true;
    saveIdentity({ clientId, clientSecret, workspaceKey });
  }
  return { clientId, clientSecret, workspaceKey, created };
}

export function saveIdentity({ clientId, clientSecret, workspaceKey }) {
  const store = storage();
  if (!store) return;
  store.setItem(KEY_ID, clientId);
  store.setItem(KEY_SECRET, clientSecret);
  if (workspaceKey === undefined) return;
  if (workspaceKey) store.setItem(KEY_WORKSPACE, workspaceKey);
  else store.removeItem(KEY_WORKSPACE);
}

/** A fresh client id and secret; the workspace key stays (the new client self-enrols with it). */
export function resetIdentity() {
  const identity = { clientId: newClientId(), clientSecret: newClientSecret() };
  saveIdentity(identity);
  return identity;
}

/**
 * Take `#workspace_key=...` out of the address (the link `relay serve` prints): returns the key, or
 * "" when the fragment has none. The fragment is never sent to a server; it is removed from the
 * address bar and the history entry at once, so it is not left in view or in bookmarks.
 */
export function takeWorkspaceKeyFromFragment() {
  const hash = window.location.hash.replace(/^#/, "");
  if (!hash) return "";
  const params = new URLSearchParams(hash);
  if (!params.has(LINK_KEY_PARAM)) return "";
  const key = (params.get(LINK_KEY_PARAM) || "").trim();
  params.delete(LINK_KEY_PARAM);
  const rest = params.toString();
  const url = window.location.pathname + window.location.search + (rest ? `#${rest}` : "");
  window.history.replaceState(window.history.state, "", url);
  return key;
}

const DEFAULT_OPTIONS = Object.freeze({ apiBase: "", demoMode: false, assistantId: "" });

export function loadOptions() {
  const store = storage();
  try {
    const parsed = JSON.parse(store?.getItem(KEY_OPTIONS) || "{}");
    return {
      apiBase: typeof parsed.apiBase === "string" ? parsed.apiBase : DEFAULT_OPTIONS.apiBase,
      demoMode: parsed.demoMode === true,
      assistantId: typeof parsed.assistantId === "string" ? parsed.assistantId : DEFAULT_OPTIONS.assistantId,
    };
  } catch {
    return { ...DEFAULT_OPTIONS };
  }
}

export function saveOptions(options) {
  storage()?.setItem(KEY_OPTIONS, JSON.stringify(options));
}

/** Problems with an identity the user pasted (empty list: fine). */
export function identityWarnings({ clientId, clientSecret, workspaceKey = "" }) {
  const out = [];
  if (!clientId) out.push("Client ID is required.");
  else if (!isUuid(clientId)) out.push("Client ID is not a UUID (the Realtime device API recommends UUIDs).");
  if (!clientSecret) out.push("Client secret is required.");
  else if (clientSecret.length < MIN_SECRET_CHARS) out.push(`Client secret must be at least ${MIN_SECRET_CHARS} characters.`);
  if (workspaceKey && !isWorkspaceKeyUsable(workspaceKey)) {
    out.push(`Workspace key must be printable ASCII, at most ${MAX_WORKSPACE_KEY_CHARS} characters.`);
  }
  return out;
}

/** A key that can travel in an HTTP header (printable ASCII, bounded). */
export function isWorkspaceKeyUsable(key) {
  return key.length <= MAX_WORKSPACE_KEY_CHARS && /^[\x21-\x7e]+$/.test(key);
}
