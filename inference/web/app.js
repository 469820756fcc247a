"use strict";
// The web demo's page (inference/app.py serves it and its JSON API): upload, head boxes drawn and edited on a
// canvas, the K / steps sliders of a generative decoder, the overlay with the K sampled points, the table, and a
// video's progress bar. Every error of the server arrives as {"error": message} and is shown in #message.

const $ = (id) => document.getElementById(id);
const COLOURS = ["#ffffff", "#00ff00", "#ff00ff", "#00ffff", "#ff8000", "#ffff00"]; // inference/outputs.py COLOURS
const MIN_BOX = 4; // pixels: a drag shorter than this is a click, not a box
const SHOWN_ROWS = 1000; // a long video's table shows this many rows; the CSV has them all
// [keys of a predictions.csv row, column header, decimals]: a column with several keys shows them as "a, b"
const COLUMNS = [
  [["person"], "person", null], [["head_x_min", "head_y_min", "head_x_max", "head_y_max"], "head box (px)", 0],
  [["head_score"], "head score", 3], [["gaze_x", "gaze_y"], "gaze x, y (0-1)", 3],
  [["gaze_x_px", "gaze_y_px"], "gaze (px)", 0], [["inout"], "in-frame", 3], [["heatmap_peak"], "peak", 3],
];
const COLUMNS_3D = [[["yaw", "pitch"], "3D gaze yaw, pitch (rad)", 3], [["gaze3d_uncertainty"], "3D uncertainty", 3]];

const state = {
  info: null, upload: null, image: null, heads: [], picked: 0, result: null, busy: false, pending: false,
  drag: null, rows: [], note: "",
};

// --- messages and the server -------------------------------------------------------------------------------------

function showMessage(text, kind = "error") {
  const box = $("message");
  box.textContent = text;
  box.className = kind === "error" ? "message" : "message info";
  box.hidden = false;
}

function clearMessage() {
  $("message").hidden = true;
  $("message").textContent = "";
}

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (error) {
    throw new Error(`the demo server cannot be reached (${error.message}): is it still running?`);
  }
  let body;
  try {
    body = await response.json();
  } catch (error) {
    throw new Error(`the server answered ${response.status} ${response.statusText} without a message`);
  }
  if (!response.ok || body.error) {
    throw new Error(body.error || `the server answered ${response.status} ${response.statusText}`);
  }
  return body;
}

function postJson(path, payload) {
  return api(path, {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(payload)});
}

// --- start ---------------------------------------------------------------------------------------------------------

async function start() {
  try {
    state.info = await api("/api/info");
  } catch (error) {
    showMessage(error.message);
    return;
  }
  const info = state.info;
  const parts = [`weights ${info.weights} (${info.evaluated_weights})`, `on ${info.device}`,
                 info.detector ? `heads detected with ${info.detector}` : "no head detector: draw the head boxes"];
  if (info.gaze3d) parts.push("3D gaze from a Gaze360 model");
  $("model-info").textContent = parts.join(" · ");
  $("limits").textContent = `up to ${info.max_upload_mb} MB; a video: at most ${info.max_video_frames} frames ` +
    "predicted";
  if (info.sampling) {
    const s = info.sampling;
    setSlider("sample-k", s.sample_k, s.max_k);
    setSlider("sample-steps", s.sample_time_steps, s.max_steps);
    $("sampling").querySelector("legend").textContent = `sampling (${s.sampler}; the decoder is generative)`;
    $("sampling").hidden = false;
  }
  document.body.dataset.ready = "true";
}

function setSlider(id, value, max) {
  const slider = $(id);
  slider.max = String(max);
  slider.value = String(value);
  $(`${id}-value`).textContent = String(value);
  slider.addEventListener("input", () => { $(`${id}-value`).textContent = slider.value; });
  slider.addEventListener("change", () => {
    if (state.upload && state.upload.kind === "image" && state.heads.length) predict();
  });
}

function samplingRequest() {
  if (!state.info || !state.info.sampling) return {};
  return {sample_k: Number($("sample-k").value), sample_time_steps: Number($("sample-steps").value)};
}

// --- upload --------------------------------------------------------------------------------------------------------

async function handleFile(file) {
  clearMessage();
  $("results").hidden = true;
  const limit = state.info ? state.info.max_upload_mb * 1024 * 1024 : Infinity;
  if (file.size > limit) {
    showMessage(`${file.name}: the file is ${(file.size / 1024 / 1024).toFixed(1)} MB, more than this page accepts ` +
                `(${state.info.max_upload_mb} MB, --max_upload_mb); use a smaller file (a shorter video), ` +
                "or predict.py");
    return;
  }
  setBusy(true, "uploading…");
  let upload;
  try {
    upload = await api(`/api/upload?name=${encodeURIComponent(file.name)}`, {
      method: "POST", body: file, headers: {"Content-Type": file.type || "application/octet-stream"},
    });
  } catch (error) {
    setBusy(false);
    state.upload = null;
    $("image-tools").hidden = true;
    $("video-tools").hidden = true;
    $("predict").disabled = true;
    showMessage(error.message);
    return;
  }
  setBusy(false);
  state.upload = upload;
  state.result = null;
  if (upload.kind === "image") {
    $("video-tools").hidden = true;
    $("predict").textContent = "predict";
    state.heads = upload.heads.map((head, index) => ({box: head.box.slice(), score: head.score, detected: index}));
    state.picked = 0;
    state.image = await loadImage(upload.preview);
    $("image-tools").hidden = false;
    const canvas = $("editor");
    canvas.width = state.image.naturalWidth;
    canvas.height = state.image.naturalHeight;
    renderHeads();
    if (state.heads.length) {
      predict();
    } else {
      showMessage(`${state.info.detector ? "No head was detected" : "No head detector"}: draw a box around a ` +
                  "head on the image.", "info");
    }
  } else {
    $("image-tools").hidden = true;
    $("video-tools").hidden = false;
    $("video-preview").src = upload.preview;
    const frames = upload.frames === null ? "frame count unknown" : `${upload.frames} frames`;
    const fps = upload.fps ? `, ${upload.fps.toFixed(2)} frames/s` : "";
    $("video-info").textContent = `${upload.name}: ${upload.width} x ${upload.height}, ${frames}${fps}. Heads ` +
      "are detected and tracked in every predicted frame.";
    $("predict").textContent = "predict the video";
    $("predict").disabled = false;
  }
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error(`cannot show ${url}`));
    image.src = url;
  });
}

// --- head boxes ----------------------------------------------------------------------------------------------------

function lineWidth(width, height) {
  return Math.max(2, Math.round(Math.min(width, height) / 200)); // as inference/outputs.py draws
}

function renderHeads() {
  const canvas = $("editor");
  const context = canvas.getContext("2d");
  context.drawImage(state.image, 0, 0);
  const line = lineWidth(canvas.width, canvas.height);
  const drawn = state.drag && state.drag.mode === "draw" ? [...state.heads, {box: state.drag.box}] : state.heads;
  drawn.forEach((head, index) => {
    if (!head.box) return;
    const [x1, y1, x2, y2] = head.box;
    const picked = index === state.picked;
    context.lineWidth = picked ? 2 * line : line;
    context.strokeStyle = COLOURS[index % COLOURS.length];
    context.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const size = Math.max(12, Math.round(Math.min(canvas.width, canvas.height) / 30));
    context.font = `${size}px sans-serif`;
    const label = `person${index + 1}`;
    const textY = y1 - 2 * line - size > 0 ? y1 - 2 * line : y2 + line + size;  // below the box when no room above
    context.fillStyle = "rgba(0,0,0,0.7)";
    context.fillRect(x1, textY - size, context.measureText(label).width + size / 2, size * 1.25);
    context.fillStyle = COLOURS[index % COLOURS.length];
    context.fillText(label, x1 + size / 4, textY);
    if (picked) {
      for (const [cx, cy] of corners(head.box)) context.fillRect(cx - 2 * line, cy - 2 * line, 4 * line, 4 * line);
    }
  });
  renderPeople();
}

function corners([x1, y1, x2, y2]) {
  return [[x1, y1], [x2, y1], [x1, y2], [x2, y2]];
}

function renderPeople() {
  const people = $("people");
  people.replaceChildren();
  state.heads.forEach((head, index) => {
    const label = document.createElement("label");
    const radio = document.createElement("input");
    radio.type = "radio";
    radio.name = "person";
    radio.value = String(index);
    radio.checked = index === state.picked;
    radio.addEventListener("change", () => pick(index));
    const swatch = document.createElement("span");
    swatch.textContent = "■ ";
    swatch.style.color = COLOURS[index % COLOURS.length];
    swatch.style.textShadow = "0 0 1px #000";
    const score = head.score === null ? (head.detected === null ? "drawn" : "") : `score ${head.score.toFixed(3)}`;
    label.append(radio, swatch, `person${index + 1}${score ? ` (${score})` : ""}`);
    people.append(label);
  });
  const head = state.heads[state.picked];
  $("box-edit").hidden = !head;
  if (head) {
    $("box-person").textContent = `person${state.picked + 1}`;
    ["box-x1", "box-y1", "box-x2", "box-y2"].forEach((id, i) => { $(id).value = head.box[i].toFixed(1); });
  }
}

function pick(index) {
  state.picked = index;
  renderHeads();
  renderPicked();
}

function imagePoint(event) {
  const canvas = $("editor");
  const rect = canvas.getBoundingClientRect();
  return [(event.clientX - rect.left) * canvas.width / rect.width,
          (event.clientY - rect.top) * canvas.height / rect.height];
}

function tolerance() {
  const canvas = $("editor");
  return 12 * canvas.width / canvas.getBoundingClientRect().width; // 12 screen pixels
}

function ordered([ax, ay], [bx, by]) {
  const canvas = $("editor");
  const clamp = (v, high) => Math.min(Math.max(v, 0), high);
  return [clamp(Math.min(ax, bx), canvas.width), clamp(Math.min(ay, by), canvas.height),
          clamp(Math.max(ax, bx), canvas.width), clamp(Math.max(ay, by), canvas.height)];
}

function onPointerDown(event) {
  if (!state.image) return;
  const point = imagePoint(event);
  const near = tolerance();
  $("editor").setPointerCapture(event.pointerId);
  for (let index = state.heads.length - 1; index >= 0; index--) {
    const box = state.heads[index].box;
    const corner = corners(box).findIndex(([cx, cy]) => Math.hypot(cx - point[0], cy - point[1]) <= near);
    if (corner >= 0) {
      const opposite = corners(box)[3 - corner]; // the corner that stays
      state.drag = {mode: "corner", index, opposite, before: box.slice()};
      state.picked = index;
      renderHeads();
      return;
    }
  }
  const inside = state.heads.findIndex(({box}) => point[0] >= box[0] && point[0] <= box[2] &&
                                                    point[1] >= box[1] && point[1] <= box[3]);
  if (inside >= 0) {
    state.drag = {mode: "move", index: inside, start: point, before: state.heads[inside].box.slice()};
    pick(inside);
    return;
  }
  state.drag = {mode: "draw", start: point, box: [point[0], point[1], point[0], point[1]]};
}

function onPointerMove(event) {
  const drag = state.drag;
  if (!drag) return;
  const point = imagePoint(event);
  if (drag.mode === "draw") {
    drag.box = ordered(drag.start, point);
  } else if (drag.mode === "corner") {
    state.heads[drag.index].box = ordered(drag.opposite, point);
  } else {
    const canvas = $("editor");
    const [x1, y1, x2, y2] = drag.before;
    const dx = Math.min(Math.max(point[0] - drag.start[0], -x1), canvas.width - x2);
    const dy = Math.min(Math.max(point[1] - drag.start[1], -y1), canvas.height - y2);
    state.heads[drag.index].box = [x1 + dx, y1 + dy, x2 + dx, y2 + dy];
  }
  renderHeads();
}

function onPointerUp() {
  const drag = state.drag;
  state.drag = null;
  if (!drag) return;
  if (drag.mode === "draw") {
    const [x1, y1, x2, y2] = drag.box;
    if (x2 - x1 >= MIN_BOX && y2 - y1 >= MIN_BOX) {
      state.heads.push({box: drag.box, score: null, detected: null});
      state.picked = state.heads.length - 1;
      renderHeads();
      predict();
    } else {
      renderHeads();
    }
    return;
  }
  const head = state.heads[drag.index];
  const [x1, y1, x2, y2] = head.box;
  if (x2 - x1 < MIN_BOX || y2 - y1 < MIN_BOX) head.box = drag.before; // a box squeezed to nothing: undone
  if (head.box.some((value, i) => value !== drag.before[i])) {
    head.detected = null;
    head.score = null;
    renderHeads();
    predict();
  }
}

function onBoxTyped() {
  const head = state.heads[state.picked];
  if (!head) return;
  const values = ["box-x1", "box-y1", "box-x2", "box-y2"].map((id) => Number($(id).value));
  if (values.some((v) => !Number.isFinite(v))) return;
  head.box = values;
  head.detected = null;
  head.score = null;
  renderHeads();
  predict();
}

function onBoxDeleted() {
  state.heads.splice(state.picked, 1);
  state.picked = Math.max(0, Math.min(state.picked, state.heads.length - 1));
  renderHeads();
  if (state.heads.length) {
    predict();
  } else {
    $("results").hidden = true;
    showMessage("No head box left: draw a box around a head on the image.", "info");
  }
}

// --- prediction ----------------------------------------------------------------------------------------------------

function setBusy(busy, text = "predicting…") {
  state.busy = busy;
  $("predict").disabled = busy || !state.upload;
  document.body.dataset.busy = busy ? "true" : "false";
  if (busy) {
    $("predict").dataset.label = $("predict").dataset.label || $("predict").textContent;
    $("predict").textContent = text;
  } else if ($("predict").dataset.label) {
    $("predict").textContent = $("predict").dataset.label;
    delete $("predict").dataset.label;
  }
}

async function predict() {
  if (!state.upload) return;
  if (state.upload.kind === "video") {
    predictVideo();
    return;
  }
  if (state.busy) { // one prediction at a time; the latest boxes and sliders are predicted next
    state.pending = true;
    return;
  }
  if (!state.heads.length) {
    showMessage("No head box: draw a box around a head on the image.", "info");
    return;
  }
  clearMessage();
  setBusy(true);
  const heads = state.heads.map((head) => (head.detected === null ? {box: head.box} : {detected: head.detected}));
  try {
    state.result = await postJson("/api/predict", {upload: state.upload.upload, heads, ...samplingRequest()});
    state.rows = state.result.rows;
    renderImageResult();
  } catch (error) {
    showMessage(error.message);
  } finally {
    setBusy(false);
    if (state.pending) {
      state.pending = false;
      predict();
    }
  }
}

function renderImageResult() {
  const result = state.result;
  $("results").hidden = false;
  $("overlay-stage").hidden = false;
  $("animation").hidden = true;
  $("track-picker").hidden = true;
  $("csv").href = result.csv;
  $("json").href = result.json;
  const s = result.settings;
  state.note = `${s.sampler}, ${s.sample_time_steps} steps, K = ${s.sample_k}, seed ${s.seed}, ` +
    `${s.evaluated_weights} weights, on ${s.device}.`;
  $("result-note").textContent = state.note;
  renderTable(state.rows, false);
  renderPicked();
}

function renderPicked() {
  if (!state.result || !state.result.overlays) return;
  const person = `person${state.picked + 1}`;
  const overlay = $("overlay");
  const url = state.result.overlays[person];
  if (!url) return;
  overlay.onload = () => renderSamples(person);
  overlay.src = url;
  document.querySelectorAll("#table tbody tr").forEach((row) => {
    row.classList.toggle("picked", row.dataset.person === person);
  });
}

function renderSamples(person) {
  const overlay = $("overlay");
  const canvas = $("samples");
  canvas.width = overlay.naturalWidth;
  canvas.height = overlay.naturalHeight;
  canvas.style.width = `${overlay.clientWidth}px`;
  canvas.style.height = `${overlay.clientHeight}px`;
  const context = canvas.getContext("2d");
  context.clearRect(0, 0, canvas.width, canvas.height);
  const points = state.result.samples[person] || [];
  const radius = 1.5 * lineWidth(canvas.width, canvas.height);
  context.lineWidth = Math.max(1, radius / 2);
  for (const [x, y] of points) {
    context.beginPath();
    context.arc(x * canvas.width, y * canvas.height, radius, 0, 2 * Math.PI);
    context.fillStyle = "rgba(255,255,255,0.9)";
    context.strokeStyle = "#000";
    context.fill();
    context.stroke();
  }
  overlay.dataset.samples = String(points.length);
  $("result-note").textContent = state.note + (points.length ? ` The small white dots: the ${points.length} ` +
    `sampled gaze points of ${person} (the heatmap is their mean).` : "");
}

function renderTable(rows, video) {
  const threeD = rows.some((row) => row.yaw !== "" && row.yaw !== undefined);
  const columns = [...(video ? [[["frame"], "frame", null]] : []), ...COLUMNS, ...(threeD ? COLUMNS_3D : [])];
  const head = document.createElement("tr");
  for (const [, title] of columns) {
    const th = document.createElement("th");
    th.textContent = title;
    head.append(th);
  }
  $("table").tHead.replaceChildren(head);
  const body = $("table").tBodies[0];
  body.replaceChildren();
  const shown = (value, digits) => (value === "" || value === null ? "–"
    : (digits === null || typeof value !== "number" ? String(value) : value.toFixed(digits)));
  for (const row of rows.slice(0, SHOWN_ROWS)) {
    const tr = document.createElement("tr");
    tr.dataset.person = row.person;
    for (const [keys, , digits] of columns) {
      const td = document.createElement("td");
      // The exact values (predictions.csv's), for copying and for the tests: data-keys, data-values (space-separated).
      td.dataset.keys = keys.join(" ");
      td.dataset.values = keys.map((key) => String(row[key])).join(" ");
      td.textContent = keys.map((key) => shown(row[key], digits)).join(", ");
      tr.append(td);
    }
    if (!video) tr.addEventListener("click", () => pick(Number(row.person.replace("person", "")) - 1));
    body.append(tr);
  }
  if (rows.length > SHOWN_ROWS) {
    $("result-note").textContent += ` The table shows the first ${SHOWN_ROWS} of ${rows.length} rows; ` +
      "predictions.csv has them all.";
  }
}

// --- video ---------------------------------------------------------------------------------------------------------

async function predictVideo() {
  if (state.busy) return;
  clearMessage();
  setBusy(true, "predicting the video…");
  $("results").hidden = true;
  $("progress-box").hidden = false;
  $("progress").removeAttribute("value");
  $("progress-text").textContent = "starting…";
  try {
    const job = await postJson("/api/video", {
      upload: state.upload.upload, every_nth_frame: Number($("every-nth").value), ...samplingRequest(),
    });
    await followJob(job.job);
  } catch (error) {
    showMessage(error.message);
  } finally {
    setBusy(false);
  }
}

async function followJob(key) {
  for (;;) {
    const job = await api(`/api/jobs/${key}`);
    const progress = $("progress");
    if (job.total) {
      progress.max = job.total;
      progress.value = job.done;
    } else {
      progress.removeAttribute("value");
    }
    $("progress-text").textContent = `${job.stage}: ${job.done}${job.total ? ` / ${job.total}` : ""} frames`;
    if (job.state === "failed") throw new Error(job.error);
    if (job.state === "done") {
      renderVideoResult(job.result);
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 400));
  }
}

function renderVideoResult(result) {
  state.result = result;
  state.rows = result.rows;
  $("results").hidden = false;
  $("overlay-stage").hidden = true;
  const video = $("animation");
  video.hidden = false;
  video.src = result.animation;
  $("csv").href = result.csv;
  $("json").href = result.json;
  const s = result.settings;
  $("result-note").textContent = `${s.frames} frames, ${result.people.length} tracked people; ${s.sampler}, ` +
    `${s.sample_time_steps} steps, K = ${s.sample_k}, ${s.evaluated_weights} weights, on ${s.device}.`;
  const picker = $("track");
  picker.replaceChildren(new Option("everyone", ""), ...result.people.map((person) => new Option(person, person)));
  $("track-picker").hidden = !result.people.length;
  renderTable(result.rows, true);
}

function onTrackPicked() {
  const person = $("track").value;
  renderTable(person ? state.rows.filter((row) => row.person === person) : state.rows, true);
}

// --- wiring --------------------------------------------------------------------------------------------------------

$("file").addEventListener("change", (event) => {
  if (event.target.files.length) handleFile(event.target.files[0]);
  event.target.value = "";
});
const drop = $("drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  if (event.dataTransfer.files.length) handleFile(event.dataTransfer.files[0]);
});
const editor = $("editor");
editor.addEventListener("pointerdown", onPointerDown);
editor.addEventListener("pointermove", onPointerMove);
editor.addEventListener("pointerup", onPointerUp);
editor.addEventListener("pointercancel", onPointerUp);
["box-x1", "box-y1", "box-x2", "box-y2"].forEach((id) => $(id).addEventListener("change", onBoxTyped));
$("box-delete").addEventListener("click", onBoxDeleted);
$("predict").addEventListener("click", predict);
$("track").addEventListener("change", onTrackPicked);
window.addEventListener("resize", () => { if (state.result && state.result.overlays) renderPicked(); });
start();
