// Record: consent first, then the prompt list; every take is saved by the API as it is stopped.
import { $, api, on, say } from "./api.js";
import { encodeWav } from "./wav.js";

const QUIET_DBFS = -40, CLIP_LEVEL = 0.99, CLIP_FRACTION = 0.001, SILENT_PEAK = 0.003;
const s = { prompts: null, name: "", speaker: "", done: new Set(), skipped: new Set(), pos: -1, last: null,
            mic: null, take: null, level: 0 };

export async function init() {
  on("submit", { "rec-open": openSession });
  on("click", { "rec-start": start, "rec-stop": stop, "rec-skip": skip, "rec-retake": retake });
  document.addEventListener("keydown", keys);
  try {
    const p = await api("/api/data/prompts?language=en-us");
    $("rec-language").replaceChildren(...p.available.map((l) => new Option(l, l, l === "en-us", l === "en-us")));
  } catch (e) { say("rec-warning", String(e)); }
}

function keys(ev) {
  if (document.body.dataset.page !== "record" || $("rec-session").hidden) return;
  if (["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement.tagName)) return;
  const k = ev.key.toLowerCase();
  if (k === "r" && !$("rec-start").disabled) start();
  else if (k === "s" && !$("rec-stop").disabled) stop();
  else if (k === "k" && !$("rec-skip").disabled) skip();
}

async function openSession(ev) {
  ev.preventDefault();
  say("rec-warning", "");
  s.name = $("rec-name").value.trim();
  s.speaker = $("rec-speaker").value.trim();
  if (!s.speaker) { say("rec-warning", "Enter the speaker's name: it goes into the consent record."); return; }
  try {
    s.prompts = await api(`/api/data/prompts?language=${encodeURIComponent($("rec-language").value)}`);
    const state = await api(`/api/data/recordings/${encodeURIComponent(s.name)}`);
    s.done = new Set(state.takes.map((t) => t.clipId));
    s.consent = state.consent;
    $("rec-where").textContent = `Saving into ${state.path}` + (state.takes.length ? ` (resuming: ${state.takes.length} takes already there)` : "");
    $("rec-source").textContent = `${s.prompts.source} — licence ${s.prompts.license}`;
    showMinutes(state.minutes, state.recommendedMinutes);
    s.pos = s.consent ? nextPos(-1) : -1;
    $("rec-session").hidden = false;
    render();
    await ensureMic();
  } catch (e) { say("rec-warning", String(e)); }
}

function nextPos(from) {
  const list = s.prompts.prompts;
  for (let i = from + 1; i < list.length; i++) if (!s.done.has(list[i].id) && !s.skipped.has(list[i].id)) return i;
  return list.length;
}

function render() {
  const list = s.prompts.prompts;
  const consentStep = !s.consent;
  if (consentStep) {
    say("rec-step-title", "Step 1: read the consent statement aloud");
    say("rec-prompt", s.prompts.consent.replace("{speaker}", s.speaker));
  } else if (s.pos >= list.length) {
    say("rec-step-title", "All prompts done");
    say("rec-prompt", "Every prompt is recorded or skipped. Check the dataset on the Data page.");
  } else {
    say("rec-step-title", `Prompt ${s.pos + 1} of ${list.length} (${list[s.pos].id})`);
    say("rec-prompt", list[s.pos].text);
  }
  const finished = !consentStep && s.pos >= list.length;
  $("rec-start").disabled = finished || !!s.take;
  $("rec-stop").disabled = !s.take;
  $("rec-skip").disabled = consentStep || finished || !!s.take;
  $("rec-retake").disabled = s.last === null || !!s.take;
  $("page-record").dataset.step = consentStep ? "consent" : finished ? "finished" : String(s.pos);
}

async function ensureMic() {
  if (s.mic) return s.mic;
  const stream = await navigator.mediaDevices.getUserMedia(
    { audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 1 } });
  const ctx = new AudioContext();
  await ctx.audioWorklet.addModule(new URL("./recorder-worklet.js", import.meta.url));
  const node = new AudioWorkletNode(ctx, "voicelane-tap");
  const mute = ctx.createGain(); mute.gain.value = 0;
  ctx.createMediaStreamSource(stream).connect(node).connect(mute).connect(ctx.destination);
  node.port.onmessage = (e) => onBlock(e.data);
  s.mic = { ctx, stream, node };
  return s.mic;
}

function onBlock(block) {
  let peak = 0, sum = 0, clipped = 0;
  for (const x of block) { const a = Math.abs(x); if (a > peak) peak = a; sum += x * x; if (a >= CLIP_LEVEL) clipped++; }
  s.level = Math.max(peak, s.level * 0.9);
  $("rec-level").value = s.level;
  if (peak > (s.maxLevel || 0)) { s.maxLevel = peak; $("rec-level").dataset.max = peak.toFixed(4); }
  $("rec-level-db").textContent = `${(20 * Math.log10(Math.max(s.level, 1e-6))).toFixed(0)} dBFS`;
  if (s.take) {
    s.take.blocks.push(block); s.take.peak = Math.max(s.take.peak, peak); s.take.sum += sum; s.take.clipped += clipped; s.take.n += block.length;
    if (clipped && !s.take.warned) { s.take.warned = true; say("rec-warning", "Clipping: the input is too loud — lower the level, then re-take."); }
  }
}

async function start() {
  say("rec-warning", ""); say("rec-status", "");
  try {
    const mic = await ensureMic();
    await mic.ctx.resume();
    s.take = { blocks: [], peak: 0, sum: 0, clipped: 0, n: 0, rate: mic.ctx.sampleRate };
    say("rec-status", "Recording… press Stop when you have read the text.");
    render();
  } catch (e) { say("rec-warning", `Microphone unavailable: ${e.message || e}`); }
}

function levelWarnings(t) {
  const w = [];
  const rms = Math.sqrt(t.sum / Math.max(t.n, 1));
  if (t.peak < SILENT_PEAK) w.push("The take is silent: check the microphone.");
  else if (20 * Math.log10(Math.max(rms, 1e-10)) < QUIET_DBFS) w.push("Too quiet: move closer or raise the input level.");
  if (t.clipped / Math.max(t.n, 1) >= CLIP_FRACTION) w.push("Clipping: lower the input level and re-take.");
  return w;
}

async function stop() {
  const t = s.take; s.take = null;
  if (!t) return;
  const samples = new Float32Array(t.n);
  let o = 0; for (const b of t.blocks) { samples.set(b, o); o += b.length; }
  const wav = encodeWav(samples, t.rate);
  const warnings = levelWarnings(t);
  say("rec-status", "Saving…");
  render();
  try {
    const consentStep = !s.consent;
    let out;
    if (consentStep) {
      const statement = s.prompts.consent.replace("{speaker}", s.speaker);
      out = await api(`/api/data/recordings/${encodeURIComponent(s.name)}/consent?speakerName=${encodeURIComponent(s.speaker)}&statement=${encodeURIComponent(statement)}&language=${encodeURIComponent(s.prompts.language)}`,
                      { method: "POST", body: wav, contentType: "audio/wav" });
      s.consent = true; s.last = null; s.pos = nextPos(-1);
      say("rec-status", `Consent saved (${out.seconds.toFixed(1)} s). Now read the prompts.`);
    } else {
      const p = s.prompts.prompts[s.pos];
      out = await api(`/api/data/recordings/${encodeURIComponent(s.name)}/takes?clipId=${encodeURIComponent(p.id)}&text=${encodeURIComponent(p.text)}`,
                      { method: "POST", body: wav, contentType: "audio/wav" });
      s.done.add(p.id); s.last = s.pos; s.pos = nextPos(s.pos);
      showMinutes(out.minutes, out.recommendedMinutes);
      say("rec-status", `Saved ${p.id} (${out.seconds.toFixed(1)} s). ${out.takes} takes so far.`);
    }
    const server = (out.warnings || []).map((w) => ({ clipped: "Clipping: lower the input level and re-take.",
                                                      too_quiet: "Too quiet: move closer or raise the input level." }[w] || w));
    say("rec-warning", [...new Set([...warnings, ...server])].join(" "));
  } catch (e) {
    say("rec-status", "Not saved.");
    say("rec-warning", `${e.message} (${e.code || "error"})`);
  }
  render();
}

function skip() { if (s.consent && s.pos < s.prompts.prompts.length) { s.skipped.add(s.prompts.prompts[s.pos].id); s.pos = nextPos(s.pos); say("rec-status", "Skipped."); render(); } }
function retake() { if (s.last !== null) { s.pos = s.last; s.last = null; say("rec-status", "Re-take: record the prompt again; it replaces the saved take."); render(); } }

function showMinutes(minutes, recommended) {
  $("rec-minutes").max = recommended; $("rec-minutes").value = minutes;
  const done = minutes < 1 ? `${Math.round(minutes * 60)} s` : `${minutes.toFixed(1)} min`;
  $("rec-minutes-text").textContent = `${done} recorded of ${recommended} min recommended`;
}
