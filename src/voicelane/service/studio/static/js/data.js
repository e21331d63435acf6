// Data: pick or upload a dataset, run `dataset check` as a job, show kept/rejected, play clips.
import { $, api, el, on, say } from "./api.js";

let current = "", datasets = [];

export async function init() {
  on("click", { "data-refresh": refresh, "data-check": check });
  on("submit", { "data-upload": upload });
  on("change", { "data-select": defaultLanguage });
  await refresh();
}

export async function refresh() {
  try {
    const out = await api("/api/data/datasets");
    const keep = $("data-select").value;
    $("data-select").replaceChildren(...out.datasets.map((d) => new Option(`${d.name} (${d.rows} rows) — ${d.path}`, d.path)));
    if (keep) $("data-select").value = keep;
    datasets = out.datasets;
    defaultLanguage();
  } catch (e) { say("data-error", String(e)); }
}

function defaultLanguage() {
  const d = datasets.find((x) => x.path === $("data-select").value);
  if (d && d.language) $("data-language").value = d.language;
}

export async function waitJob(jobId, onTick) {
  for (;;) {
    const job = await api(`/api/train/job/${jobId}`);
    if (onTick) onTick(job);
    if (["done", "error", "cancelled"].includes(job.state)) return job;
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function check() {
  say("data-error", ""); $("data-report").hidden = true;
  current = $("data-select").value;
  if (!current) { say("data-error", "Pick a dataset first."); return; }
  say("data-status", "Checking…");
  try {
    const started = await api("/api/train/dataset", { method: "POST", json: { mode: "check", dataPath: current, minMinutes: 0, language: $("data-language").value.trim() || "en-us" } });
    const job = await waitJob(started.jobId);
    const report = job.metadata && job.metadata.report;
    if (job.state !== "done" || !report) {
      const err = job.error || {};
      say("data-status", "");
      say("data-error", `Dataset check failed: ${err.message || job.message} (${err.code || job.state})`);
      return;
    }
    show(report);
    say("data-status", `Checked: ${report.totals.kept} kept, ${report.totals.rejected} rejected.`);
  } catch (e) { say("data-status", ""); say("data-error", String(e)); }
}

function show(report) {
  const t = report.totals;
  $("data-totals").textContent = `${t.kept} kept (${t.kept_minutes} min), ${t.rejected} rejected, language ${report.language}. ` +
    (report.warnings || []).join(" ");
  $("data-kept").tBodies[0].replaceChildren(...report.entries.map((e) => {
    const play = el("button", { type: "button", "aria-label": `Play ${e.id}`, text: "Play" });
    play.addEventListener("click", () => playClip(e.id));
    const align = el("button", { type: "button", "aria-label": `Show the alignment of ${e.id}`, text: "Alignment", class: "align" });
    align.addEventListener("click", () => showAlignment(e.id, report.language));
    return el("tr", { "data-clip": e.id }, el("td", { text: e.id }), el("td", { text: e.text }),
              el("td", { text: e.duration_s.toFixed(2) }), el("td", { text: e.split || "" }), el("td", {}, play, " ", align));
  }));
  $("data-rejected").tBodies[0].replaceChildren(...report.rejected.map((r) =>
    el("tr", { "data-reason": r.reason }, el("td", { text: r.id || `line ${r.line}` }), el("td", { text: r.reason }),
       el("td", { text: typeof r.detail === "string" ? r.detail : JSON.stringify(r.detail || "") }))));
  $("data-report").hidden = false;
}

async function playClip(id) {
  try {
    const blob = await api(`/api/data/clip?dataPath=${encodeURIComponent(current)}&clipId=${encodeURIComponent(id)}`);
    const audio = $("data-audio");
    if (audio.src) URL.revokeObjectURL(audio.src);
    audio.src = URL.createObjectURL(blob);
    await audio.play();
  } catch (e) { say("data-error", String(e)); }
}

async function upload(ev) {
  ev.preventDefault();
  say("data-error", ""); say("data-status", "");
  const file = $("data-zip").files[0];
  const name = $("data-zip-name").value.trim();
  if (!file) { say("data-error", "Choose a zip file first."); return; }
  say("data-status", `Uploading ${file.name}…`);
  try {
    const out = await api(`/api/data/uploads?name=${encodeURIComponent(name)}`, { method: "POST", body: file, contentType: "application/zip" });
    say("data-status", `Unpacked ${out.files} files into ${out.path}.`);
    await refresh();
    $("data-select").value = out.path;
  } catch (e) { say("data-status", ""); say("data-error", `Upload refused: ${e.message} (${e.code})`); }
}

async function showAlignment(id, language) {
  $("data-align").hidden = false;
  say("data-align-id", id); say("data-align-words", "");
  say("data-align-info", "Aligning…");
  $("data-align").dataset.state = "busy";
  try {
    const al = await api(`/api/data/alignment?dataPath=${encodeURIComponent(current)}&clipId=${encodeURIComponent(id)}&language=${encodeURIComponent(language || "en-us")}`);
    draw(al);
    say("data-align-info", `${al.words.length} words, ${al.phones.length} phones over ${al.durationS.toFixed(2)} s; score ${al.score} per frame` +
        (al.implausible ? ` — implausible: ${al.implausible}` : "."));
    say("data-align-words", al.words.map((w) => `${w.label} ${w.start.toFixed(2)}–${w.end.toFixed(2)} s`).join(" · "));
    $("data-align").dataset.state = "done";
    $("data-align").dataset.phones = String(al.phones.length);
  } catch (e) { say("data-align-info", `${e.message} (${e.code})`); $("data-align").dataset.state = "error"; }
}

function draw(al) {
  const c = $("data-align-canvas"), g = c.getContext("2d"), W = c.width, H = c.height;
  const x = (t) => (t / al.durationS) * W;
  g.clearRect(0, 0, W, H);
  g.fillStyle = "#9aa7b4";
  const mid = 125, amp = 60, n = al.envelope.length;
  al.envelope.forEach((v, i) => { const h = Math.max(1, v * amp); g.fillRect((i / n) * W, mid - h, Math.max(1, W / n), 2 * h); });
  g.font = "14px system-ui, sans-serif"; g.textAlign = "center"; g.textBaseline = "middle";
  for (const w of al.words) {
    g.fillStyle = "#e8eef5"; g.fillRect(x(w.start), 2, Math.max(1, x(w.end) - x(w.start)), 26);
    g.fillStyle = "#1b1b1b"; g.fillText(w.label, (x(w.start) + x(w.end)) / 2, 15, Math.max(8, x(w.end) - x(w.start)));
  }
  g.strokeStyle = "#0b5cad"; g.lineWidth = 1;
  for (const p of al.phones) {
    g.beginPath(); g.moveTo(x(p.start), 32); g.lineTo(x(p.start), H); g.stroke();
    g.fillStyle = "#0b5cad"; g.fillText(p.label, (x(p.start) + x(p.end)) / 2, 46, Math.max(6, x(p.end) - x(p.start)));
  }
}
