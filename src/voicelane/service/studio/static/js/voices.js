// Voices: served voices with eval numbers and provenance; type text and hear it; download the bundle.
import { $, api, el, on, say } from "./api.js";

const EVAL_KEYS = [["wer", "WER"], ["wer_floor_real_audio", "WER of the real audio (floor)"], ["mcd_db", "MCD (dB)"],
                   ["f0_rmse_hz", "F0 RMSE (Hz)"], ["duration_ratio", "duration ratio"], ["rtf", "RTF"], ["rtf_cpu", "RTF (CPU)"]];

export async function init() {
  on("click", { "voices-refresh": refresh, "speak-btn": speak, "bundle-btn": download, "heldout-btn": playHeldout });
  on("change", { "speak-voice": loadHeldout });
  await refresh();
}

function fmt(v) { return typeof v === "number" ? String(Math.round(v * 1000) / 1000) : v === null || v === undefined ? "-" : String(v); }

export async function refresh() {
  say("voices-error", "");
  try {
    const out = await api("/api/voice/profiles");
    const profiles = out.profiles || out.voices || [];
    const label = (p) => (p.displayName ? `${p.displayName} (${p.profileId})` : p.profileId);
    $("speak-voice").replaceChildren(...profiles.map((p) => new Option(label(p), p.profileId)));
    $("speak-voice-b").replaceChildren(new Option("none", ""), ...profiles.map((p) => new Option(label(p), p.profileId)));
    const refused = (out.refused || []).map((r) => el("article", { class: "voice refused", "data-refused": r.profileId },
      el("h3", { text: `${r.profileId} — not served` }), el("p", { class: "warning", text: `${r.message} (${r.code})` })));
    $("voices-list").replaceChildren(...profiles.map(card), ...refused);
    if (!profiles.length) say("voices-error", "No voice is served yet: train one on the Train page.");
    await Promise.all(profiles.map((p) => showReadiness(p.profileId)));
    await loadHeldout();
  } catch (e) { say("voices-error", String(e)); }
}

function certificate(c) {
  if (!c) return "none (not published with `voicelane verify`)";
  return `${c.status || "?"}${c.integrityOk ? ", files match" : ", FILES CHANGED"} (${c.certificateId || "no id"})`;
}

function card(p) {
  const ev = p.eval || {};
  const rows = [["lane", p.lane], ["language", p.language], ["created", p.createdAt],
                ["consent recorded", p.consentRecorded ? "yes" : "no"], ["base weights", p.baseWeights || "none (from scratch)"],
                ...EVAL_KEYS.filter(([k]) => k in ev).map(([k, label]) => [label, fmt(ev[k])]),
                ["gates passed", fmt(ev.gates_passed)], ["verify certificate", certificate(p.certificate)],
                ["readiness", "…"], ["runtime", p.runtime]];
  const dl = el("dl");
  for (const [k, v] of rows) dl.append(el("dt", { text: k }), el("dd", { text: fmt(v), ...(k === "readiness" ? { class: "readiness" } : {}) }));
  return el("article", { class: "voice", "data-profile": p.profileId }, el("h3", { text: p.displayName || p.profileId }), dl);
}

async function render(profile, audioId) {
  const blob = await api("/api/voice/speak", { method: "POST", json: { text: $("speak-text").value, voiceProfile: profile || undefined } });
  if (!(blob instanceof Blob)) throw new Error(`suppressed: ${blob.reason}`);
  const audio = $(audioId);
  if (audio.src) URL.revokeObjectURL(audio.src);
  audio.src = URL.createObjectURL(blob);
  return blob;
}

async function speak() {
  say("speak-status", "Synthesising…");
  try {
    const a = await render($("speak-voice").value, "speak-audio");
    const b = $("speak-voice-b").value;
    $("speak-b-row").hidden = !b;
    if (b) await render(b, "speak-audio-b");
    await $("speak-audio").play();
    say("speak-status", `Playing ${(a.size / 1024).toFixed(0)} KiB of audio` + (b ? "; B is ready to compare." : "."));
  } catch (e) { say("speak-status", `${e.message} (${e.code || "error"})`); }
}

async function download() {
  const id = $("speak-voice").value;
  if (!id) return;
  try {
    const blob = await api(`/api/voice/profiles/${encodeURIComponent(id)}/bundle`);
    const a = el("a", { href: URL.createObjectURL(blob), download: `${id}.voice_bundle.zip` });
    document.body.append(a); a.click(); a.remove();
    say("speak-status", `Bundle of ${id} downloaded (${(blob.size / 1048576).toFixed(1)} MiB).`);
  } catch (e) { say("speak-status", `${e.message} (${e.code})`); }
}

// Readiness GO/NO-GO from `voicelane readiness` (reports/readiness.json), only when it is about this bundle.
async function showReadiness(id) {
  const dd = document.querySelector(`article[data-profile="${CSS.escape(id)}"] dd.readiness`);
  if (!dd) return;
  try {
    const r = await api(`/api/voice/profiles/${encodeURIComponent(id)}/readiness`);
    const blocking = (r.blocking || []).map((b) => b.code).join(", ");
    dd.textContent = r.state === "not_assessed" ? `not assessed (${r.message})`
      : r.state + (blocking ? ` — blocking: ${blocking}` : "");
    dd.dataset.state = r.state;
  } catch (e) { dd.textContent = `unknown (${e.code || e})`; }
}

// A/B against the real held-out recordings the voice was evaluated on (found inside the data roots).
let heldoutData = null;

async function loadHeldout() {
  const id = $("speak-voice").value;
  heldoutData = null;
  $("heldout-clip").replaceChildren();
  if (!id) return;
  try {
    heldoutData = await api(`/api/voice/profiles/${encodeURIComponent(id)}/heldout`);
    const clips = heldoutData.clips.filter((c) => c.text);
    $("heldout-clip").replaceChildren(...clips.map((c) => new Option(`${c.id}: ${c.text}`, c.id)));
    say("heldout-status", heldoutData.recordings ? `${heldoutData.recordings} real held-out recording(s) in ${heldoutData.dataPath}.`
      : "The held-out recordings were not found inside the data roots (VOICELANE_DATA_ROOTS); only the voice can play.");
  } catch (e) { say("heldout-status", `${e.message} (${e.code || "error"})`); }
}

async function playHeldout() {
  const clip = heldoutData && heldoutData.clips.find((c) => c.id === $("heldout-clip").value);
  if (!clip) return;
  try {
    const voice = await api("/api/voice/speak", { method: "POST", json: { text: clip.text, voiceProfile: $("speak-voice").value } });
    if (!(voice instanceof Blob)) throw new Error(`suppressed: ${voice.reason}`);
    setAudio("heldout-voice", voice);
    if (clip.recording) {
      const q = new URLSearchParams({ dataPath: heldoutData.dataPath, clipId: clip.id });
      setAudio("heldout-real", await api(`/api/data/clip?${q}`));
      await $("heldout-real").play();
    }
    say("heldout-status", clip.recording ? "Playing the real recording; then play this voice." : "No real recording of this sentence; this voice is ready.");
  } catch (e) { say("heldout-status", `${e.message} (${e.code || "error"})`); }
}

function setAudio(id, blob) {
  const audio = $(id);
  if (audio.src) URL.revokeObjectURL(audio.src);
  audio.src = URL.createObjectURL(blob);
}
