// demixer web page: upload, follow a job, listen with solo/mute, download. No external scripts.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { file: null, enroll: null, models: [], job: null, poll: null, mixer: null, objectUrls: [] };
const RECORD_SECONDS = 5;
const QUALITY_NOTE = document.getElementById("quality-note").textContent;

function apiKey() { return localStorage.getItem("demixer-api-key") || ""; }
function headers() { const k = apiKey(); return k ? { "X-API-Key": k } : {}; }
async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
  if (!response.ok) throw new Error(await errorText(response));
  return response;
}
async function errorText(response) {
  let detail = response.statusText;
  try {
    const body = await response.json();
    detail = typeof body.detail === "string" ? body.detail
      : (body.detail || []).map((d) => `${(d.loc || []).slice(-1)[0]}: ${d.msg}`).join("; ");
  } catch (e) { /* not JSON */ }
  const retry = response.headers.get("Retry-After");
  return `${response.status}: ${detail}` + (retry ? ` (retry in ${retry} s)` : "");
}
function say(text) { $("message").textContent = text || ""; }
function fmtTime(s) { const m = Math.floor(s / 60); return `${m}:${(s - 60 * m).toFixed(1).padStart(4, "0")}`; }
async function blobUrl(path) {
  const url = URL.createObjectURL(await (await api(path)).blob());
  state.objectUrls.push(url);
  return url;
}

// -- service info and models ------------------------------------------------------------------
async function loadInfo() {
  const health = await (await fetch("/health")).json();
  $("server-info").textContent = `v${health.version} · ${health.workers} worker(s) · up to ${health.max_upload_mb} MB, ${Math.round(health.max_duration_s / 60)} min`;
  $("key-box").hidden = !health.auth;
  $("api-key").value = apiKey();
  try {
    state.models = await (await api("/models")).json();
  } catch (e) { say(`models: ${e.message}`); }
  fillModels();
  refreshJobs();
}
function task() { return document.querySelector("input[name=task]:checked").value; }
function taskChanged() {
  const clean = task() === "clean";
  $("clean-options").hidden = !clean;
  $("enroll-panel").hidden = task() !== "extract";
  $("model").disabled = clean;  // the cleanup chain picks its own models
  $("format").disabled = clean;
  $("submit").textContent = clean ? "Clean up" : "Separate";
  fillModels();
}
function fillModels() {
  const select = $("model");
  select.length = 1;
  const t = task();
  const fitting = state.models.filter((m) => m.tasks.includes(t));
  const others = state.models.filter((m) => !m.tasks.includes(t));
  for (const [label, list] of [["for this task", fitting], ["other models", others]]) {
    if (!list.length) continue;
    const group = document.createElement("optgroup");
    group.label = label;
    for (const m of list) {
      const score = m.published_score != null ? `, published ${m.published_score} dB` : "";
      const o = new Option(`${m.name} (${m.sources.join(", ")}${score})${m.default_for.includes(t) ? " — default" : ""}`, m.name);
      o.title = m.published_quality ? `${m.description}. ${m.published_quality}` : m.description;
      group.appendChild(o);
    }
    select.appendChild(group);
  }
}

// -- choosing a file and submitting --------------------------------------------------------------
function choose(file) {
  state.file = file || null;
  $("chosen").textContent = file ? `${file.name} (${(file.size / 1048576).toFixed(1)} MB)` : "no file chosen";
  $("submit").disabled = !file;
  say("");
}
function submit() {
  if (!state.file) return;
  const form = new FormData();
  form.append("file", state.file, state.file.name);
  const clean = task() === "clean";
  if (clean) {
    form.append("lufs", $("lufs").value);
    form.append("true_peak", $("true-peak").value);
    form.append("keep_music", $("keep-music").value);
  } else {
    form.append("task", task());
    if (task() === "extract") {
      if (!state.enroll) { say("Extract a voice: first drop or record a clip of the voice to keep"); return; }
      form.append("enroll", state.enroll, state.enroll.name);
    }
    if ($("model").value) form.append("name", $("model").value);
    if ($("fast").checked) form.append("speed", "fast");
    if ($("format").value === "flac") form.append("flac", "true");
    if ($("format").value === "mp3") form.append("mp3", "true");
  }
  const xhr = new XMLHttpRequest();  // XHR: upload progress events
  xhr.open("POST", clean ? "/clean" : "/jobs");
  for (const [k, v] of Object.entries(headers())) xhr.setRequestHeader(k, v);
  xhr.upload.onprogress = (e) => { if (e.lengthComputable) $("upload-bar").value = e.loaded / e.total; };
  xhr.onloadend = () => {
    $("upload-progress").hidden = true;
    $("submit").disabled = false;
    if (xhr.status === 202) {
      const job = JSON.parse(xhr.responseText);
      say("");
      openJob(job.id);
      refreshJobs();
    } else if (xhr.status === 0) {
      say("upload failed: the connection was closed (is the file too large?)");
    } else {
      const fake = new Response(xhr.responseText, { status: xhr.status, statusText: xhr.statusText,
        headers: { "Retry-After": xhr.getResponseHeader("Retry-After") || "" } });
      errorText(fake).then((t) => say(`upload refused: ${t}`));
    }
  };
  $("submit").disabled = true;
  $("upload-progress").hidden = false;
  xhr.send(form);
}

// -- the voice to keep (extract): a dropped clip, or 5 s recorded in the browser --------------------
function chooseEnroll(file, how) {
  state.enroll = file || null;
  $("enroll-chosen").textContent = file ? `${how || file.name} (${(file.size / 1024).toFixed(0)} kB)` : "no clip yet";
}
async function record() {
  let stream;
  try { stream = await navigator.mediaDevices.getUserMedia({ audio: true }); } catch (e) { say(`microphone: ${e.message}`); return; }
  const recorder = new MediaRecorder(stream);
  const chunks = [];
  recorder.ondataavailable = (e) => { if (e.data.size) chunks.push(e.data); };
  recorder.onstop = () => {
    stream.getTracks().forEach((t) => t.stop());
    const type = recorder.mimeType || "audio/webm";
    const ext = type.includes("ogg") ? "ogg" : "webm";
    chooseEnroll(new File(chunks, `recorded voice.${ext}`, { type }), `recorded ${RECORD_SECONDS} s`);
    $("record").disabled = false;
    $("record").textContent = `Record ${RECORD_SECONDS} s`;
  };
  $("record").disabled = true;
  $("record").textContent = "recording…";
  recorder.start();
  setTimeout(() => recorder.stop(), RECORD_SECONDS * 1000);
}

// -- following a job -----------------------------------------------------------------------------
function openJob(id) {
  clearInterval(state.poll);
  if (state.mixer) state.mixer.stop();
  state.mixer = null;
  state.objectUrls.forEach((u) => URL.revokeObjectURL(u));
  state.objectUrls = [];
  state.job = { id, state: null };
  $("job").hidden = false;
  $("results").hidden = true;
  $("job-error").textContent = "";
  const tick = async () => {
    let job;
    try { job = await (await api(`/jobs/${id}`)).json(); } catch (e) { $("job-error").textContent = e.message; clearInterval(state.poll); return; }
    if (!state.job || state.job.id !== id) return;
    showJob(job);
    if (["done", "failed", "cancelled", "expired"].includes(job.state)) {
      clearInterval(state.poll);
      refreshJobs();
      if (job.state === "done" && state.job.state !== "done") await showResults(job);
      state.job = job;
    }
  };
  tick();
  state.poll = setInterval(tick, 500);
}
function showJob(job) {
  $("job-title").textContent = `${job.filename} → ${job.model}`;
  $("job-bar").value = job.progress;
  $("job-state").textContent = `${job.state}${job.state === "running" ? ` · ${job.stage} · ${Math.round(100 * job.progress)}%` : ""}`;
  $("job-state").className = `state-${job.state}`;
  const t = job.timings;
  $("job-timings").textContent = t ? `${t.audio_s.toFixed(1)} s of audio · separated in ${t.separation_s.toFixed(1)} s (RTF ${t.rtf.toFixed(3)}) · waited ${t.queued_s.toFixed(1)} s · total ${t.total_s.toFixed(1)} s`
    : job.duration ? `${job.duration.toFixed(1)} s of audio, ${job.sample_rate} Hz, ${job.channels} channel(s)` : "";
  $("job-error").textContent = job.error || "";
}
async function showResults(job) {
  $("results").hidden = false;
  const stems = $("stems");
  stems.replaceChildren();
  $("mixture-row").replaceChildren(...stemRow(job, "mixture", false).children);
  const buffers = {};
  for (const stem of job.stems) stems.appendChild(stemRow(job, stem, true));
  $("zip").onclick = async (e) => {
    e.preventDefault();
    await download(job.urls.archive, `${job.filename.replace(/\.[^.]*$/, "")}_stems.zip`);
  };
  showQuality(job.quality);
  state.mixer = new Mixer();
  window.demixer.mixer = state.mixer;
  await Promise.all(job.stems.map(async (stem) => {
    const data = await (await api(job.urls.stems[stem])).arrayBuffer();
    buffers[stem] = await state.mixer.ctx.decodeAudioData(data);
  }));
  state.mixer.load(buffers);
  window.demixer.ready = true;
}
function stemRow(job, stem, playable) {
  const row = document.createElement("div");
  row.className = "stem";
  row.dataset.stem = stem;
  const left = document.createElement("div");
  left.className = "controls";
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = stem;
  left.appendChild(name);
  if (playable) {
    for (const kind of ["solo", "mute"]) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = `toggle ${kind}`;
      b.textContent = kind === "solo" ? "Solo" : "Mute";
      b.onclick = () => { b.classList.toggle("on"); state.mixer && state.mixer.set(stem, kind, b.classList.contains("on")); };
      left.appendChild(b);
    }
    const a = document.createElement("a");
    a.href = "#";
    a.className = "download";
    a.textContent = "Download";
    const ext = job.options.flac ? "flac" : job.options.mp3 ? "mp3" : "wav";
    a.onclick = (e) => { e.preventDefault(); download(job.urls.stems[stem], `${job.filename.replace(/\.[^.]*$/, "")}_${stem}.${ext}`); };
    left.appendChild(a);
  }
  const right = document.createElement("div");
  const estimate = job.quality && job.quality.stems && job.quality.stems[stem];
  for (const kind of ["waveform", "spectrogram"]) {
    const img = document.createElement("img");
    img.className = kind;
    img.alt = `${stem} ${kind}`;
    blobUrl(job.urls.images[stem][kind]).then((u) => { img.src = u; });
    if (kind === "waveform" && estimate && estimate.predicted_sdr_per_second) {
      right.appendChild(markedWaveform(img, estimate, job.timings && job.timings.audio_s));
    } else {
      right.appendChild(img);
    }
  }
  if (estimate && estimate.verdict) {
    const line = document.createElement("div");
    line.className = "verdict";
    line.textContent = estimate.verdict;
    left.appendChild(line);
  }
  row.append(left, right);
  return row;
}
// the quality estimator's flags over a stem's waveform: red where predicted under 0 dB, grey where the source is
// probably absent (the report's weak_seconds / absent_seconds, in seconds of the track)
function markedWaveform(img, estimate, seconds) {
  const box = document.createElement("div");
  box.className = "marked";
  box.appendChild(img);
  const total = seconds || estimate.predicted_sdr_per_second.length;
  for (const [kind, spans] of [["weak", estimate.weak_seconds || []], ["absent", estimate.absent_seconds || []]]) {
    for (const [a, b] of spans) {
      const mark = document.createElement("div");
      mark.className = `mark ${kind}`;
      mark.style.left = `${(100 * a) / total}%`;
      mark.style.width = `${(100 * (Math.min(b, total) - a)) / total}%`;
      mark.title = `${kind === "weak" ? "predicted under 0 dB" : "source probably absent"}: ${a}–${b} s`;
      box.appendChild(mark);
    }
  }
  return box;
}
async function download(path, name) {
  const a = document.createElement("a");
  a.href = await blobUrl(path);
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
}
function showCleanReport(table, r) {
  $("quality-note").textContent = r.chain;
  const mos = (m) => (m && m.ovrl !== undefined ? `SIG ${m.sig.toFixed(2)} · BAK ${m.bak.toFixed(2)} · OVRL ${m.ovrl.toFixed(2)}` : (m && m.unavailable) || "–");
  const rows = [
    ["loudness", `${r.loudness_in_lufs ?? "–"} LUFS in → ${r.loudness_out_lufs ?? "–"} LUFS out`],
    ["true peak", `${r.true_peak_out_dbtp ?? "–"} dBTP`],
    ["DNSMOS input", mos(r.dnsmos.input)],
    ["DNSMOS cleaned", mos(r.dnsmos.cleaned)],
  ];
  for (const [stage, v] of Object.entries(r.stages)) {
    if (stage === "passes") continue;
    rows.push([stage, v.applied ? `${v.model || "applied"}${v.level_db ? ` (music ${v.level_db.music} dB, effects ${v.level_db.effects} dB)` : ""}` : `not applied: ${v.why}`]);
  }
  for (const [k, v] of rows) {
    const tr = table.insertRow();
    tr.insertCell().textContent = k;
    tr.insertCell().textContent = v;
  }
}
function showQuality(q) {
  const table = $("quality");
  table.replaceChildren();
  if (!q) { table.innerHTML = "<tr><td>not computed for this job</td></tr>"; return; }
  if (q.chain) { showCleanReport(table, q); return; }
  $("quality-note").textContent = QUALITY_NOTE;
  const cols = ["predicted_sdr", "energy_db", "leakage", "artifacts", "profile", "silence_ratio", "clipped"];
  const speech = Object.values(q.stems).some((v) => v.dnsmos);  // DNSMOS P.835 of speech stems, and its change
  const head = table.insertRow();
  for (const c of ["stem", ...cols, ...(speech ? ["DNSMOS OVRL (change)"] : [])]) { const th = document.createElement("th"); th.textContent = c; head.appendChild(th); }
  for (const [stem, v] of Object.entries(q.stems)) {
    const tr = table.insertRow();
    tr.insertCell().textContent = stem;
    for (const c of cols) tr.insertCell().textContent = v[c] === null || v[c] === undefined ? "–" : Number(v[c]).toFixed(c === "clipped" ? 0 : 2);
    if (speech) {
      const change = v.dnsmos_change ? ` (${v.dnsmos_change.ovrl >= 0 ? "+" : ""}${v.dnsmos_change.ovrl.toFixed(2)})` : "";
      tr.insertCell().textContent = v.dnsmos ? `${v.dnsmos.ovrl.toFixed(2)}${change}` : "–";
    }
  }
  const foot = table.insertRow();
  foot.insertCell().textContent = "mixture";
  const cell = foot.insertCell();
  const mix = q.mixture_dnsmos ? ` · input DNSMOS OVRL ${q.mixture_dnsmos.ovrl.toFixed(2)}` : q.dnsmos_unavailable ? ` · DNSMOS: ${q.dnsmos_unavailable}` : "";
  cell.colSpan = cols.length + (speech ? 1 : 0);
  cell.textContent = `consistency ${q.consistency_db.toFixed(1)} dB · mask confidence ${q.mask_confidence.toFixed(2)}${mix}`;
}

// -- playing stems together with solo/mute (Web Audio: sample-accurate sync) -----------------------
class Mixer {
  constructor() {
    this.ctx = new AudioContext();
    this.buffers = {}; this.gains = {}; this.flags = {}; this.sources = [];
    this.offset = 0; this.startedAt = null;
  }
  load(buffers) {
    this.buffers = buffers;
    for (const stem of Object.keys(buffers)) {
      this.gains[stem] = this.ctx.createGain();
      this.gains[stem].connect(this.ctx.destination);
      this.flags[stem] = { solo: false, mute: false };
    }
    this.duration = Math.max(...Object.values(buffers).map((b) => b.duration));
  }
  get playing() { return this.startedAt !== null; }
  position() { return this.playing ? Math.min(this.duration, this.offset + this.ctx.currentTime - this.startedAt) : this.offset; }
  play() {
    if (this.playing) return;
    this.ctx.resume();
    const when = this.ctx.currentTime + 0.05;
    this.sources = Object.entries(this.buffers).map(([stem, buffer]) => {
      const src = this.ctx.createBufferSource();
      src.buffer = buffer;
      src.connect(this.gains[stem]);
      src.start(when, this.offset);
      return src;
    });
    this.startedAt = when;
    this.sources[0].onended = () => { if (this.playing && this.position() >= this.duration - 0.05) this.stop(); };
  }
  pause() { if (!this.playing) return; this.offset = this.position(); this.halt(); }
  stop() { this.halt(); this.offset = 0; }
  halt() { this.sources.forEach((s) => { try { s.stop(); } catch (e) { /* not started */ } }); this.sources = []; this.startedAt = null; }
  set(stem, kind, on) {
    this.flags[stem][kind] = on;
    const anySolo = Object.values(this.flags).some((f) => f.solo);
    for (const [s, f] of Object.entries(this.flags)) this.gains[s].gain.value = f.mute || (anySolo && !f.solo) ? 0 : 1;
  }
  audible() { return Object.fromEntries(Object.entries(this.gains).map(([s, g]) => [s, g.gain.value > 0])); }
}

// -- recent jobs ------------------------------------------------------------------------------------
async function refreshJobs() {
  let jobs = [];
  try { jobs = await (await api("/jobs?limit=20")).json(); } catch (e) { return; }
  $("jobs").replaceChildren(...jobs.map((j) => {
    const li = document.createElement("li");
    li.innerHTML = `<span class="state-${j.state}"></span> <span class="name"></span> <span class="muted"></span>`;
    li.children[0].textContent = j.state;
    li.children[1].textContent = j.filename;
    li.children[2].textContent = `${j.model} · ${new Date(j.created * 1000).toLocaleTimeString()}`;
    li.onclick = () => openJob(j.id);
    return li;
  }));
}

// -- wiring ----------------------------------------------------------------------------------------
window.demixer = { state, ready: false, mixer: null };
function wireDrop(zone, input, take) {  // a drop zone: click or Enter/Space to choose, or drop a file on it
  zone.onclick = () => input.click();
  zone.onkeydown = (e) => { if (e.key === "Enter" || e.key === " ") input.click(); };
  input.onchange = () => take(input.files[0]);
  zone.ondragover = (e) => { e.preventDefault(); zone.classList.add("over"); };
  zone.ondragleave = () => zone.classList.remove("over");
  zone.ondrop = (e) => { e.preventDefault(); zone.classList.remove("over"); take(e.dataTransfer.files[0]); };
}
wireDrop($("drop"), $("file"), choose);
wireDrop($("enroll-drop"), $("enroll-file"), (f) => chooseEnroll(f));
$("submit").onclick = submit;
$("record").onclick = record;
document.querySelectorAll("input[name=task]").forEach((r) => { r.onchange = taskChanged; });
$("api-key").onchange = () => { localStorage.setItem("demixer-api-key", $("api-key").value); loadInfo(); };
$("play").onclick = () => {
  if (!state.mixer) return;
  if (state.mixer.playing) { state.mixer.pause(); $("play").textContent = "Play"; } else { state.mixer.play(); $("play").textContent = "Pause"; }
};
$("stop").onclick = () => { if (state.mixer) { state.mixer.stop(); $("play").textContent = "Play"; } };
setInterval(() => {
  if (state.mixer) {
    $("clock").textContent = `${fmtTime(state.mixer.position())} / ${fmtTime(state.mixer.duration || 0)}`;
    if (!state.mixer.playing) $("play").textContent = "Play";
  }
}, 100);
loadInfo();
