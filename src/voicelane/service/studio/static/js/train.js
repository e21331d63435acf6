// Train: start a job, watch it over the SSE stream (phase, progress, ETA, loss curve, log tail), cancel; jobs list.
import { $, api, el, on, say, sse } from "./api.js";

let datasets = [], bases = [], watching = null;

export async function init() {
  on("submit", { "train-form": startJob });
  on("change", { "train-base": showVerdict, "train-data": defaultConsent, "jobs-filter": listJobs });
  on("click", { "train-cancel": cancel, "jobs-refresh": listJobs });
  await refresh();
}

export async function refresh() {
  try {
    const [d, b] = await Promise.all([api("/api/data/datasets"), api("/api/train/bases")]);
    datasets = d.datasets; bases = b.bases;
    const keep = $("train-data").value;
    $("train-data").replaceChildren(...datasets.map((x) => new Option(`${x.name} — ${x.path}`, x.path)));
    if (keep) $("train-data").value = keep;
    const keepBase = $("train-base").value;
    $("train-base").replaceChildren(new Option("none (train from scratch)", ""),
      ...bases.map((x) => new Option(`${x.id} — licence ${x.verdict}`, x.id)));
    $("train-base").value = keepBase;
    defaultConsent(); showVerdict();
  } catch (e) { say("train-error", String(e)); }
  await listJobs();
}

function defaultConsent() {
  const d = datasets.find((x) => x.path === $("train-data").value);
  if (d && d.consent) $("train-consent").value = `${d.path}/consent.txt`;
  if (d && d.language) $("train-language").value = d.language;
}

function showVerdict() {
  const b = bases.find((x) => x.id === $("train-base").value);
  if (!b) { say("train-base-verdict", "No base: the voice is trained from scratch."); return; }
  const gate = Object.entries(b.gate).map(([k, v]) => `${k} ${v}`).join(", ");
  say("train-base-verdict", `Licence verdict: ${b.verdict.toUpperCase()} (${gate}). Weights: ${b.weightsLicense}; code: ${b.codeLicense}; data: ${b.dataLicense}.` +
      (b.verdict === "ok" ? "" : " The production lane refuses it unless you accept the licence risk (recorded in the bundle)."));
}

async function startJob(ev) {
  ev.preventDefault();
  say("train-error", "");
  const body = { jobType: $("train-lane").value, dataPath: $("train-data").value, profile: $("train-profile").value.trim(),
                 preset: $("train-preset").value, minMinutes: Number($("train-minmin").value || 0),
                 acceptLicenseRisk: $("train-accept").checked, language: $("train-language").value.trim() || "en-us" };
  if ($("train-base").value) body.base = $("train-base").value;
  if ($("train-steps").value) body.steps = Number($("train-steps").value);
  if (Number($("train-snap").value) > 0) { body.snapshotEvery = Number($("train-snap").value); body.selectSnapshot = $("train-select").checked; }
  if ($("train-consent").value.trim()) body.consentStatement = $("train-consent").value.trim();
  try {
    const out = await api("/api/train/start", { method: "POST", json: body });
    watch(out.jobId);
    listJobs();
  } catch (e) { say("train-error", `Not started: ${e.message} (${e.code})`); }
}

function watch(jobId) {
  if (watching) watching.abort.abort();
  const w = { id: jobId, abort: new AbortController(), steps: [], loss: [], t0: null, plot: null };
  watching = w;
  $("train-watch").hidden = false;
  $("train-watch").dataset.jobId = jobId;
  say("train-job-id", jobId); say("train-state", "…"); say("train-phase", "-"); say("train-eta", "-");
  $("train-progress").value = 0; say("train-progress-text", ""); say("train-log", "");
  $("train-loss").replaceChildren(); $("train-loss").dataset.points = "0"; say("train-loss-points", "No loss points yet.");
  $("train-wer").replaceChildren(); $("train-wer").hidden = true; $("train-wer").dataset.points = "0"; say("train-wer-text", "");
  follow(w);
  poll(w);
}

// Follows the stream; when the connection drops before `end`, resumes after the last event seen.
async function follow(w) {
  for (let attempt = 0; attempt < 20 && w === watching && !w.ended; attempt++) {
    try {
      await sse(`/api/train/job/${w.id}/events?lastEventId=${w.lastSeq || 0}`, (kind, data) => {
        if (typeof data.seq === "number") w.lastSeq = data.seq;
        if (kind === "end") w.ended = true;
        onEvent(w, kind, data);
      }, w.abort.signal);
    } catch (e) {
      if (e.name === "AbortError") return;
    }
    if (!w.ended) await new Promise((r) => setTimeout(r, 1000));
  }
}

function onEvent(w, kind, data) {
  if (w !== watching) return;
  if (kind === "progress" && data.total) {
    const frac = data.current / data.total;
    $("train-progress").value = frac;
    say("train-progress-text", `${data.current} / ${data.total}`);
    if (data.current > 0 && w.t0 === null) w.t0 = { t: performance.now(), c: data.current };
    else if (w.t0 && data.current > w.t0.c) {
      const per = (performance.now() - w.t0.t) / (data.current - w.t0.c);
      say("train-eta", `${Math.round((per * (data.total - data.current)) / 1000)} s`);
    }
  } else if (kind === "stats" && data.stats) {
    if (data.stats.phase) say("train-phase", data.stats.phase);
    if (typeof data.stats.loss === "number" && typeof data.stats.step === "number") addLoss(w, data.stats.step, data.stats.loss);
    if (data.stats.phase === "select") { w.chosen = data.stats.selected_step; showSnapshots(w); }
  } else if (kind === "end") {
    say("train-state", data.state);
    $("train-watch").dataset.state = data.state;
    if (data.state === "done") { $("train-progress").value = 1; say("train-eta", "0 s"); }
    if (w.chosen !== undefined) showSnapshots(w);  // the status file now holds the whole table
  }
}

function addLoss(w, step, loss) {
  w.steps.push(step); w.loss.push(loss);
  $("train-loss").dataset.points = String(w.steps.length);
  say("train-loss-points", `${w.steps.length} loss point(s); latest loss ${loss.toFixed(3)} at step ${step}.`);
  const data = [w.steps, w.loss];
  if (!w.plot) {
    const width = Math.max(240, Math.min($("train-loss").clientWidth || 600, 900));
    w.plot = new uPlot({ width, height: 220, title: "training loss", scales: { x: { time: false } },
      series: [{ label: "step" }, { label: "loss", stroke: "#0b5cad", width: 2, points: { show: true, size: 6 } }] }, data, $("train-loss"));
  } else w.plot.setData(data);
}

async function poll(w) {
  while (w === watching) {
    try {
      const job = await api(`/api/train/job/${w.id}`);
      say("train-state", job.state);
      $("train-log").textContent = (job.logs || []).slice(-40).join("\n");
      if (job.error) say("train-error", `${job.error.message || ""} (${job.error.code || job.state})`);
      if (["done", "error", "cancelled"].includes(job.state)) { $("train-watch").dataset.state = job.state; listJobs(); return; }
    } catch (e) { say("train-error", String(e)); }
    await new Promise((r) => setTimeout(r, 1500));
  }
}

async function cancel() {
  if (!watching) return;
  try { const out = await api(`/api/train/job/${watching.id}/cancel`, { method: "POST" }); say("train-state", out.state); }
  catch (e) { say("train-error", `${e.message} (${e.code})`); }
}

async function listJobs() {
  try {
    const state = $("jobs-filter").value;
    const out = await api(`/api/train/jobs?limit=50${state ? `&state=${state}` : ""}`);
    $("jobs").tBodies[0].replaceChildren(...out.jobs.map((j) => {
      const b = el("button", { type: "button", "aria-label": `Watch job ${j.id}`, text: "Watch" });
      b.addEventListener("click", () => watch(j.id));
      return el("tr", { "data-state": j.state }, el("td", { text: j.id }), el("td", { text: j.type }), el("td", { text: j.state }),
                el("td", { text: `${j.progress.current}/${j.progress.total}` }), el("td", { text: j.createdAt || "" }), el("td", {}, b));
    }));
  } catch (e) { say("train-error", String(e)); }
}

// The snapshot WER curve: the lane scores every snapshot on the regression prompts and records
// the table in the run's train_status JSON (GET /api/train/status?jobId=...).
async function showSnapshots(w) {
  try {
    const st = await api(`/api/train/status?jobId=${encodeURIComponent(w.id)}`);
    const rows = (st.snapshot_selection || []).filter((r) => typeof r.step === "number");
    if (!rows.length || w !== watching) return;
    $("train-wer").hidden = false;
    $("train-wer").replaceChildren();
    $("train-wer").dataset.points = String(rows.length);
    const width = Math.max(240, Math.min($("train-wer").clientWidth || 600, 900));
    new uPlot({ width, height: 200, title: "regression-prompt WER by snapshot", scales: { x: { time: false } },
      series: [{ label: "step" }, { label: "WER", stroke: "#8a4b00", width: 2, points: { show: true, size: 7 } },
               { label: "smoothed", stroke: "#555", dash: [4, 4] }] },
      [rows.map((r) => r.step), rows.map((r) => r.prompts_wer), rows.map((r) => r.smoothed_wer ?? null)], $("train-wer"));
    say("train-wer-text", `${rows.length} snapshot(s) scored; kept step ${w.chosen} (` +
        rows.map((r) => `step ${r.step}: WER ${r.prompts_wer}`).join(", ") + ").");
  } catch (e) { say("train-wer-text", `No snapshot table: ${e.message}`); }
}
