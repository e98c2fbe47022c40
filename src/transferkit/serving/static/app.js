// The page at /: asks /v1/model what is served, sends inputs to /v1/predict, shows the run's metrics.
// Plain DOM code; every text from the model or the user goes through textContent (never innerHTML).
"use strict";

const $ = (id) => document.getElementById(id);
let model = null;
let imageFile = null;

function headers(extra) {
  const h = Object.assign({}, extra || {});
  const key = sessionStorage.getItem("transferkit-key");
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

async function call(path, options) {
  const response = await fetch(path, Object.assign({}, options, { headers: headers((options || {}).headers) }));
  if (response.status === 401) $("auth").hidden = false;
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) throw new Error((body && body.detail) || response.status + " " + response.statusText);
  return body;
}

function fmt(v) {
  return typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(4)) : String(v);
}

function renderScores(pred) {
  const box = el("div", { class: "prediction" });
  if ("value" in pred) { box.appendChild(el("div", { class: "value" }, "value: " + fmt(pred.value))); return box; }
  const chosen = new Set(pred.labels || [pred.label]);
  const rows = Object.entries(pred.scores || {}).sort((a, b) => b[1] - a[1]);
  for (const [name, p] of rows) {
    const row = el("div", { class: "row" + (chosen.has(name) ? " top" : ""), "data-label": name });
    row.appendChild(el("span", { class: "name", title: name }, name));
    const bar = el("div", { class: "bar" });
    const fill = el("div");
    fill.style.width = (100 * p).toFixed(1) + "%";
    bar.appendChild(fill);
    row.appendChild(bar);
    row.appendChild(el("span", { class: "pct" }, (100 * p).toFixed(1) + "%"));
    box.appendChild(row);
  }
  return box;
}

function renderEntities(text, pred) {
  const box = el("div", { class: "prediction entities" });
  const spans = (pred.entities || []).slice().sort((a, b) => a.start - b.start);
  let at = 0;
  for (const s of spans) {
    if (s.start < at) continue;  // overlapping span: keep the first
    box.appendChild(document.createTextNode(text.slice(at, s.start)));
    const mark = el("mark", { title: s.type + (s.score !== undefined ? " " + (100 * s.score).toFixed(1) + "%" : "") },
      text.slice(s.start, s.end));
    mark.appendChild(el("sup", {}, s.type));
    box.appendChild(mark);
    at = s.end;
  }
  box.appendChild(document.createTextNode(text.slice(at)));
  if (!spans.length) box.appendChild(el("div", { class: "muted" }, "no entities found"));
  return box;
}

async function predict() {
  showError("");
  $("result").textContent = "";
  $("predict").disabled = true;
  try {
    let body;
    const text = $("text").value;
    if (model && model.task === "image-classification") {
      if (!imageFile) throw new Error("drop or choose an image first");
      const form = new FormData();
      form.append("inputs", imageFile, imageFile.name);
      body = await call("/v1/predict", { method: "POST", body: form });
    } else {
      body = await call("/v1/predict", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ inputs: [text] }),
      });
    }
    const pred = body.predictions[0];
    const result = $("result");
    if (model && model.task === "token-classification") result.appendChild(renderEntities(text, pred));
    else if ("text" in pred) result.appendChild(el("pre", { class: "prediction generated" }, pred.text));
    else result.appendChild(renderScores(pred));
    result.appendChild(el("div", { class: "muted" }, "model " + body.model_version));
  } catch (err) {
    showError(err.message);
  } finally {
    $("predict").disabled = false;
  }
}

function renderMetrics(metrics) {
  const splits = ["test", "validation"].filter((s) => metrics[s]);
  if (!splits.length) { $("metrics").textContent = "this run recorded no metrics"; return; }
  const keys = [];
  for (const s of splits) for (const [k, v] of Object.entries(metrics[s])) if (typeof v === "number" && !keys.includes(k)) keys.push(k);
  const table = el("table", { id: "metrics-table" });
  const head = el("tr");
  head.appendChild(el("th", {}, "metric"));
  splits.forEach((s) => head.appendChild(el("th", {}, s)));
  table.appendChild(head);
  for (const k of keys) {
    const tr = el("tr");
    tr.appendChild(el("td", {}, k));
    splits.forEach((s) => tr.appendChild(el("td", {}, k in metrics[s] ? fmt(metrics[s][k]) : "")));
    table.appendChild(tr);
  }
  $("metrics").textContent = "";
  $("metrics").className = "";
  $("metrics").appendChild(table);
}

async function renderConfusion(metrics) {
  const cm = metrics.test && metrics.test.confusion_matrix;
  const box = $("confusion");
  box.textContent = "";
  box.className = "";
  if (cm && cm.labels && cm.matrix) {
    const table = el("table", { id: "confusion-table" });
    const head = el("tr");
    head.appendChild(el("th", {}, "true \\ predicted"));
    cm.labels.forEach((l) => head.appendChild(el("th", {}, l)));
    table.appendChild(head);
    cm.matrix.forEach((row, i) => {
      const total = row.reduce((a, b) => a + b, 0) || 1;
      const tr = el("tr");
      tr.appendChild(el("th", {}, cm.labels[i]));
      row.forEach((n) => {
        const td = el("td", {}, String(n));
        td.style.background = "rgba(37, 99, 235, " + (0.08 + 0.6 * n / total).toFixed(2) + ")";
        tr.appendChild(td);
      });
      table.appendChild(tr);
    });
    box.appendChild(table);
    return;
  }
  const response = await fetch("/v1/model/confusion_matrix.png", { headers: headers() });
  if (!response.ok) { box.className = "muted"; box.textContent = "this run has no confusion matrix"; return; }
  const img = el("img", { alt: "confusion matrix", id: "confusion-png" });
  img.src = URL.createObjectURL(await response.blob());
  img.style.maxWidth = "100%";
  box.appendChild(img);
}

async function loadModel() {
  try {
    model = await call("/v1/model");
  } catch (err) {
    $("model").textContent = "cannot read the model: " + err.message;
    return;
  }
  $("auth").hidden = true;
  $("task").textContent = "· " + model.task;
  $("model").textContent = [model.run, model.backbone && "backbone " + model.backbone,
    model.strategy && "strategy " + model.strategy, "version " + model.version].filter(Boolean).join(" · ");
  const image = model.task === "image-classification";
  $("image-input").hidden = !image;
  $("text-input").hidden = image;
  if (model.task === "generation") $("text").placeholder = "Type a prompt and press Predict";
  renderMetrics(model.metrics || {});
  await renderConfusion(model.metrics || {});
}

function useImage(file) {
  if (!file) return;
  imageFile = file;
  $("preview").src = URL.createObjectURL(file);
  $("preview").hidden = false;
}

$("predict").addEventListener("click", predict);
$("text").addEventListener("keydown", (e) => { if (e.key === "Enter" && e.ctrlKey) predict(); });
$("save-key").addEventListener("click", () => { sessionStorage.setItem("transferkit-key", $("key").value); loadModel(); });
$("file").addEventListener("change", (e) => useImage(e.target.files[0]));
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); useImage(e.dataTransfer.files[0]); });
loadModel();
