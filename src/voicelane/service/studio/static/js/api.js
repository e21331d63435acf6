// The public HTTP API, with the service token when the page has one.
const TOKEN_KEY = "voicelane.token";

export function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }
export function setToken(value) { if (value) sessionStorage.setItem(TOKEN_KEY, value); }

// `/studio?token=...` (the URL `voicelane serve` prints): keep it for this tab, drop it from the address bar.
export function adoptTokenFromUrl() {
  const url = new URL(window.location.href);
  const t = url.searchParams.get("token");
  if (t) {
    setToken(t);
    url.searchParams.delete("token");
    history.replaceState(null, "", url.pathname + url.search + url.hash);
  }
}

export class ApiError extends Error {
  constructor(status, code, message, details) { super(message); this.status = status; this.code = code; this.details = details; }
  toString() { return `${this.message} (${this.code})`; }
}

function headers(extra) {
  const h = new Headers(extra || {});
  if (token()) h.set("X-Voicelane-Token", token());
  return h;
}

export async function api(path, { method = "GET", json, body, contentType, raw = false } = {}) {
  const opts = { method, headers: headers(), credentials: "same-origin" };
  if (json !== undefined) { opts.body = JSON.stringify(json); opts.headers.set("Content-Type", "application/json"); }
  else if (body !== undefined) { opts.body = body; opts.headers.set("Content-Type", contentType || "application/octet-stream"); }
  const res = await fetch(path, opts);
  if (!res.ok) {
    let env = {};
    try { env = await res.json(); } catch (e) { /* not JSON */ }
    if (res.status === 401) document.getElementById("auth").hidden = false;
    throw new ApiError(res.status, env.error || `http_${res.status}`, env.message || res.statusText, env.details);
  }
  if (raw) return res;
  const type = res.headers.get("content-type") || "";
  return type.includes("application/json") ? res.json() : res.blob();
}

// Server-Sent Events over fetch (so the token header travels too); calls onEvent(kind, data).
export async function sse(path, onEvent, signal) {
  const res = await fetch(path, { headers: headers(), credentials: "same-origin", signal });
  if (!res.ok) throw new ApiError(res.status, `http_${res.status}`, "the event stream refused");
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, cut); buf = buf.slice(cut + 2);
      let kind = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) kind = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      if (data) onEvent(kind, JSON.parse(data));
      if (kind === "end") return;
    }
  }
}

export function $(id) { return document.getElementById(id); }
// Handlers of one event, by element id: on("click", { "data-refresh": refresh, "data-check": check }).
export function on(event, handlers) {
  for (const [id, handler] of Object.entries(handlers)) $(id).addEventListener(event, handler);
}
export function say(id, text) { $(id).textContent = text || ""; }
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) { if (k === "text") e.textContent = v; else e.setAttribute(k, v); }
  for (const c of children) e.append(c);
  return e;
}
