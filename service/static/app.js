// visiongate playground: pick a model, send an image to its task endpoint, show the answer.
// Plain browser JavaScript, no build step, no third-party code.
"use strict";

const $ = (id) => document.getElementById(id);
const ENDPOINT = { classify: "/v1/classify", detect: "/v1/detect", super_resolve: "/v1/super-resolve",
  segment: "/v1/segment" };
const PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324"];
let models = [];
let lastFile = null;

function setStatus(text, isError = false) {
  const el = $("status");
  el.textContent = text;
  el.className = isError ? "error" : "muted";
}

function currentModel() {
  return models.find((m) => m.name === $("model").value);
}

function showTaskControls() {
  const task = currentModel()?.task;
  document.querySelectorAll(".only-classify").forEach((el) => { el.hidden = task !== "classify"; });
  document.querySelectorAll(".only-detect").forEach((el) => { el.hidden = task !== "detect"; });
  const m = currentModel();
  $("model-info").textContent = m
    ? `${m.task} · ${m.platform} · input ${m.input_size ? m.input_size.join("×") : "any size"}` : "";
}

async function loadModels() {
  try {
    const r = await fetch("/v1/models");
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    models = (await r.json()).models;
  } catch (err) {
    setStatus(`Cannot list models: ${err.message}`, true);
    return;
  }
  const select = $("model");
  select.innerHTML = "";
  for (const m of models) {
    const opt = document.createElement("option");
    opt.value = m.name;
    opt.textContent = `${m.name} (${m.task.replace("_", "-")})`;
    select.appendChild(opt);
  }
  if (!models.length) setStatus("No models are loaded.", true);
  showTaskControls();
}

async function errorText(response) {
  try {
    const body = await response.json();
    const e = body.error;
    return typeof e === "string" ? e : `${e.type}: ${e.message}`;
  } catch (_) {
    return `HTTP ${response.status}`;
  }
}

function hideResults() {
  for (const id of ["labels", "canvas", "compare", "masks"]) $(id).hidden = true;
  $("timing").textContent = "";
}

function showLabels(result) {
  const box = $("labels");
  box.innerHTML = "";
  for (const p of result.predictions) {
    const row = document.createElement("div");
    row.className = "bar";
    row.dataset.label = p.label;
    const pct = (100 * p.score).toFixed(1);
    row.innerHTML = `<span class="name"></span><span class="track"><span class="fill"></span></span>` +
                    `<span class="score">${pct}%</span>`;
    row.querySelector(".name").textContent = p.label;
    row.querySelector(".name").title = `${p.label} (class ${p.class_id})`;
    row.querySelector(".fill").style.width = `${Math.max(0.5, 100 * p.score)}%`;
    box.appendChild(row);
  }
  box.hidden = false;
}

async function showDetections(file, result) {
  const bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  const canvas = $("canvas");
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
  const line = Math.max(2, Math.round(bitmap.width / 300));
  ctx.lineWidth = line;
  ctx.font = `${Math.max(12, line * 7)}px system-ui, sans-serif`;
  ctx.textBaseline = "top";
  result.detections.forEach((d) => {
    const [x0, y0, x1, y1] = d.box;
    const color = PALETTE[d.class_id % PALETTE.length];
    ctx.strokeStyle = color;
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    const text = `${d.label} ${(100 * d.score).toFixed(0)}%`;
    const w = ctx.measureText(text).width + 8;
    const h = Math.max(12, line * 7) + 6;
    ctx.fillStyle = color;
    ctx.fillRect(x0, Math.max(0, y0 - h), w, h);
    ctx.fillStyle = "#fff";
    ctx.fillText(text, x0 + 4, Math.max(0, y0 - h) + 3);
  });
  canvas.dataset.detections = String(result.detections.length);
  canvas.hidden = false;
}

function showMasks(painted) {
  // the gateway paints the masks and the legend (annotated=true): show that image as it is
  const img = $("masks");
  img.src = URL.createObjectURL(painted);
  img.hidden = false;
}

function showComparison(file, upscaled) {
  const after = $("after");
  const before = $("before");
  after.src = URL.createObjectURL(upscaled);
  before.src = URL.createObjectURL(file);
  after.onload = () => {
    // show small results enlarged (pixels kept sharp) so the difference is visible; the original
    // is stretched to the same box so the two line up under the slider
    const room = $("compare").parentElement.clientWidth - 32;
    after.style.width = `${Math.min(room, Math.max(after.naturalWidth, 640))}px`;
    before.style.width = `${after.clientWidth}px`;
    before.style.height = `${after.clientHeight}px`;
  };
  $("slider").value = 50;
  $("before-clip").style.width = "50%";
  $("compare").hidden = false;
}

async function run(file) {
  const model = currentModel();
  if (!file || !model) return;
  lastFile = file;
  hideResults();
  setStatus(`Running ${model.name}…`);
  const params = new URLSearchParams({ model: model.name });
  if (model.task === "classify") params.set("top_k", $("topk").value || "5");
  if (model.task === "detect") params.set("score_threshold", $("threshold").value);
  if (model.task === "segment") params.set("annotated", "true");
  const started = performance.now();
  let response;
  try {
    response = await fetch(`${ENDPOINT[model.task]}?${params}`, {
      method: "POST",
      headers: { "Content-Type": file.type || "application/octet-stream" },
      body: file,
    });
  } catch (err) {
    setStatus(`Request failed: ${err.message}`, true);
    return;
  }
  const ms = performance.now() - started;
  if (!response.ok) {
    setStatus(await errorText(response), true);
    return;
  }
  if (model.task === "classify") showLabels(await response.json());
  else if (model.task === "detect") await showDetections(file, await response.json());
  else if (model.task === "segment") showMasks(await response.blob());
  else showComparison(file, await response.blob());
  const size = response.headers.get("X-Output-Size");
  setStatus(`${file.name}: done.`);
  $("timing").textContent = `${model.name} answered in ${ms.toFixed(0)} ms` + (size ? ` · output ${size}` : "");
}

function wire() {
  $("model").addEventListener("change", () => { showTaskControls(); if (lastFile) run(lastFile); });
  $("file").addEventListener("change", (e) => run(e.target.files[0]));
  $("topk").addEventListener("change", () => lastFile && run(lastFile));
  $("threshold").addEventListener("input", (e) => { $("threshold-value").textContent = e.target.value; });
  $("threshold").addEventListener("change", () => lastFile && run(lastFile));
  $("slider").addEventListener("input", (e) => { $("before-clip").style.width = `${e.target.value}%`; });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) run(e.dataTransfer.files[0]);
  });
}

wire();
loadModels();
