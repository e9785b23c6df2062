// imfuse studio page: plain JS, no build step. Talks only to this server's /api.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const MASK_MAX_SIDE = 2048; // the server fits the mask to the processing size
  const state = { content: null, styles: [], maskSource: null, maskFile: null, job: null, resultUrl: null, steps: {} };

  // ---------------------------------------------------------------- errors
  const ERROR_SLOTS = { content: "content-error", style: "style-error", mask: "mask-error", strength: "strength-error",
    size: "size-error", steps: "steps-error", a: "compare-error", b: "compare-error" };
  function clearErrors() { document.querySelectorAll(".error").forEach((e) => { e.textContent = ""; }); }
  function showError(field, message, fallback) {
    const slot = $(ERROR_SLOTS[field] || fallback || "general-error");
    slot.textContent = message;
  }
  async function errorOf(response) {
    try { const doc = await response.json(); return { field: doc.field, message: doc.error || `HTTP ${response.status}` }; }
    catch (e) { return { field: null, message: `HTTP ${response.status}: ${response.statusText || "request failed"}` }; }
  }

  // --------------------------------------------------------------- content
  const drop = $("content-drop");
  $("content-input").addEventListener("change", (e) => { if (e.target.files[0]) setContent(e.target.files[0]); });
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, () => drop.classList.remove("over")));
  drop.addEventListener("drop", (e) => { e.preventDefault(); if (e.dataTransfer.files[0]) setContent(e.dataTransfer.files[0]); });

  function setContent(file) {
    state.content = file;
    clearErrors();
    const img = $("content-preview");
    const url = URL.createObjectURL(file);
    img.onload = () => { resetMask(img.naturalWidth, img.naturalHeight); $("mask-editor").hidden = false; };
    img.onerror = () => { $("mask-editor").hidden = true; }; // the server will say what is wrong
    img.src = url;
    $("before").src = url;
  }

  // ------------------------------------------------------------------ mask
  const canvas = $("mask-canvas");
  const ctx = canvas.getContext("2d");
  let painting = false, last = null;
  function resetMask(w, h) {
    const scale = Math.min(1, MASK_MAX_SIDE / Math.max(w, h));
    canvas.width = Math.max(1, Math.round(w * scale));
    canvas.height = Math.max(1, Math.round(h * scale));
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    setMaskSource(null);
  }
  function setMaskSource(source) {
    state.maskSource = source;
    if (source !== "file") { state.maskFile = null; $("mask-input").value = ""; }
    $("mask-state").textContent = source ? (source === "file" ? "mask from file" : "painted mask") : "no mask: the whole image is stylised";
  }
  function point(e) {
    const r = canvas.getBoundingClientRect();
    return { x: (e.clientX - r.left) * canvas.width / r.width, y: (e.clientY - r.top) * canvas.height / r.height };
  }
  function stroke(from, to) {
    const r = canvas.getBoundingClientRect();
    const eraser = document.querySelector("input[name=tool]:checked").value === "eraser";
    ctx.globalCompositeOperation = eraser ? "destination-out" : "source-over";
    ctx.strokeStyle = "rgb(255, 0, 170)"; // the mask is the alpha channel; the colour is for display
    ctx.lineCap = "round"; ctx.lineJoin = "round";
    ctx.lineWidth = Number($("brush-size").value) * canvas.width / Math.max(1, r.width);
    ctx.beginPath(); ctx.moveTo(from.x, from.y); ctx.lineTo(to.x + 0.01, to.y); ctx.stroke();
  }
  canvas.addEventListener("pointerdown", (e) => {
    painting = true; last = point(e); canvas.setPointerCapture(e.pointerId); stroke(last, last); setMaskSource("canvas");
  });
  canvas.addEventListener("pointermove", (e) => { if (!painting) return; const p = point(e); stroke(last, p); last = p; });
  ["pointerup", "pointercancel"].forEach((t) => canvas.addEventListener(t, () => { painting = false; }));
  $("mask-clear").addEventListener("click", () => { ctx.clearRect(0, 0, canvas.width, canvas.height); setMaskSource(null); });
  $("mask-fill").addEventListener("click", () => {
    ctx.globalCompositeOperation = "source-over"; ctx.fillStyle = "rgb(255, 0, 170)";
    ctx.fillRect(0, 0, canvas.width, canvas.height); setMaskSource("canvas");
  });
  $("mask-input").addEventListener("change", (e) => {
    const file = e.target.files[0];
    if (!file) return;
    state.maskFile = file; setMaskSource("file");
    const img = new Image();
    img.onload = () => { // preview: alpha if the file has any, else luminance
      const tmp = document.createElement("canvas"); tmp.width = canvas.width; tmp.height = canvas.height;
      const t = tmp.getContext("2d"); t.drawImage(img, 0, 0, tmp.width, tmp.height);
      const px = t.getImageData(0, 0, tmp.width, tmp.height), d = px.data;
      let hasAlpha = false; for (let i = 3; i < d.length; i += 4) if (d[i] < 255) { hasAlpha = true; break; }
      for (let i = 0; i < d.length; i += 4) {
        const a = hasAlpha ? d[i + 3] : Math.round(0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2]);
        d[i] = 255; d[i + 1] = 0; d[i + 2] = 170; d[i + 3] = a;
      }
      ctx.globalCompositeOperation = "copy"; ctx.putImageData(px, 0, 0);
    };
    img.src = URL.createObjectURL(file);
  });
  function maskBlob() {
    return new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
  }

  // ---------------------------------------------------------------- styles
  function renderChosen() {
    const list = $("chosen"); list.innerHTML = "";
    state.styles.forEach((s, i) => {
      const li = document.createElement("li");
      const img = document.createElement("img"); img.src = s.url; img.alt = "";
      const name = document.createElement("span"); name.className = "name"; name.textContent = s.name;
      const weight = document.createElement("input");
      Object.assign(weight, { type: "range", min: "0.05", max: "1", step: "0.05", value: String(s.weight) });
      weight.setAttribute("aria-label", `weight of ${s.name}`);
      const out = document.createElement("output"); out.textContent = s.weight.toFixed(2);
      weight.addEventListener("input", () => { s.weight = Number(weight.value); out.textContent = s.weight.toFixed(2); });
      const remove = document.createElement("button"); remove.type = "button"; remove.textContent = "Remove";
      remove.setAttribute("aria-label", `remove ${s.name}`);
      remove.addEventListener("click", () => { removeStyle(i); });
      li.append(img, name, weight, out, remove); list.append(li);
    });
    document.querySelectorAll("#gallery button").forEach((b) => {
      b.setAttribute("aria-pressed", String(state.styles.some((s) => s.kind === "gallery" && s.name === b.dataset.name)));
    });
  }
  function removeStyle(i) { state.styles.splice(i, 1); renderChosen(); }
  function toggleGallery(name, url) {
    const i = state.styles.findIndex((s) => s.kind === "gallery" && s.name === name);
    if (i >= 0) removeStyle(i); else { state.styles.push({ kind: "gallery", name, url, weight: 1 }); renderChosen(); }
  }
  $("style-input").addEventListener("change", (e) => {
    for (const file of e.target.files) state.styles.push({ kind: "upload", name: file.name, file, url: URL.createObjectURL(file), weight: 1 });
    e.target.value = ""; renderChosen();
  });
  async function loadGallery() {
    const r = await fetch("/api/gallery");
    if (!r.ok) { showError("style", (await errorOf(r)).message); return; }
    const doc = await r.json();
    const box = $("gallery");
    doc.styles.forEach((s) => {
      const b = document.createElement("button"); b.type = "button"; b.dataset.name = s.name;
      b.setAttribute("aria-pressed", "false"); b.title = s.name;
      const img = document.createElement("img"); img.src = s.url; img.alt = `style ${s.name}`; img.loading = "lazy";
      b.append(img); b.addEventListener("click", () => toggleGallery(s.name, s.url)); box.append(b);
    });
  }

  // --------------------------------------------------------------- options
  $("strength").addEventListener("input", (e) => { $("strength-value").textContent = Number(e.target.value).toFixed(2); });
  document.querySelectorAll("input[name=method]").forEach((r) => r.addEventListener("change", () => {
    $("steps-row").hidden = method() === "model";
    if (state.steps[method()]) $("steps").value = String(state.steps[method()]);  // each method's default
  }));
  function method() { return document.querySelector("input[name=method]:checked").value; }

  async function buildForm() {
    const form = new FormData();
    if (state.content) form.append("content", state.content, state.content.name);
    for (const s of state.styles) {
      if (s.kind === "gallery") { form.append("gallery", s.name); form.append("gallery_weight", String(s.weight)); }
      else { form.append("style", s.file, s.file.name); form.append("style_weight", String(s.weight)); }
    }
    form.append("strength", $("strength").value);
    form.append("preserve_color", $("preserve-color").checked ? "1" : "0");
    form.append("size", $("size").value);
    if (state.maskSource === "file" && state.maskFile) form.append("mask", state.maskFile, state.maskFile.name);
    else if (state.maskSource === "canvas") form.append("mask", await maskBlob(), "painted-mask.png");
    return form;
  }

  // ---------------------------------------------------------------- result
  function showResult(blob, info) {
    if (state.resultUrl) URL.revokeObjectURL(state.resultUrl);
    state.resultUrl = URL.createObjectURL(blob);
    $("after").src = state.resultUrl;
    $("download").href = state.resultUrl;
    $("result-info").textContent = info;
    $("result").hidden = false;
    $("result").dataset.ready = "1";
  }
  $("split").addEventListener("input", (e) => { $("after").style.clipPath = `inset(0 0 0 ${e.target.value}%)`; });

  function busy(on) { $("go").disabled = on; $("compare-go").disabled = on; }

  async function stylise() {
    clearErrors(); $("result").dataset.ready = "";
    if (!state.content) { showError("content", "give a content image: drop or pick a photo"); return; }
    if (!state.styles.length) { showError("style", "give a style image: pick one from the gallery or upload one"); return; }
    const form = await buildForm();
    if (method() === "optimize") { form.append("steps", $("steps").value); return startJob(form); }
    if (method() === "fit") {
      if (state.styles.length !== 1) { showError("style", "fitting takes one style at a time"); return; }
      form.append("kind", "fit"); form.append("steps", $("steps").value); return startJob(form);
    }
    busy(true); $("status").textContent = "stylising…";
    try {
      const r = await fetch("/api/stylize", { method: "POST", body: form });
      if (!r.ok) { const e = await errorOf(r); showError(e.field, e.message); $("status").textContent = ""; return; }
      const ms = r.headers.get("X-Imfuse-Elapsed-Ms");
      showResult(await r.blob(), `${ms} ms on ${r.headers.get("X-Imfuse-Backend")}`);
      $("status").textContent = "done";
    } catch (e) { showError(null, `the studio server did not answer (${e.message})`); $("status").textContent = ""; }
    finally { busy(false); }
  }

  async function startJob(form) {
    busy(true);
    const r = await fetch("/api/jobs", { method: "POST", body: form });
    if (!r.ok) { const e = await errorOf(r); showError(e.field, e.message); busy(false); return; }
    const job = await r.json();
    state.job = job.id;
    $("progress").hidden = false; $("progress").value = 0; $("cancel").hidden = false;
    poll(job.id);
  }
  async function poll(id) {
    const r = await fetch(`/api/jobs/${id}`);
    const job = r.ok ? await r.json() : { state: "failed", error: (await errorOf(r)).message };
    $("progress").max = job.total || 1; $("progress").value = job.done || 0;
    const what = job.kind === "fit" ? "Fitting the style" : "Gatys optimisation";
    $("status").textContent = `${what}: ${job.state}, step ${job.done || 0} of ${job.total || "?"}`;
    if (job.state === "queued" || job.state === "running") { setTimeout(() => poll(id), 400); return; }
    $("cancel").hidden = true; busy(false); state.job = null;
    if (job.state === "done") {
      const res = await fetch(`/api/jobs/${id}/result`);
      if (res.ok) showResult(await res.blob(), job.kind === "fit"
        ? `fitted style (${job.total} steps); "Fast" now uses it for this style` : `Gatys optimisation, ${job.total} steps`);
      else showError(null, (await errorOf(res)).message);
    } else if (job.state === "failed") { showError(null, job.error); }
  }
  $("cancel").addEventListener("click", async () => {
    if (state.job) await fetch(`/api/jobs/${state.job}/cancel`, { method: "POST" });
  });
  $("go").addEventListener("click", stylise);

  // --------------------------------------------------------------- compare
  const METRIC_NAMES = { "eval/style_ratio_unseen": "style loss / the photo's (unseen styles, geometric mean)", "eval/style_loss_unseen": "eval style loss (unseen styles)", "eval/style_loss_seen": "eval style loss (training styles)",
    "eval/content_loss": "eval content loss", "eval/images_per_second": "eval latency (ms / image)" };
  function metricRows(card) {
    const table = document.createElement("table"); table.className = "metrics";
    const add = (name, value) => { const tr = table.insertRow(); tr.insertCell().textContent = name; tr.insertCell().textContent = value; };
    for (const [key, label] of Object.entries(METRIC_NAMES)) {
      if (!(key in card.metrics)) continue;
      const v = card.metrics[key];
      add(label, key === "eval/images_per_second" ? (1000 / v).toFixed(1) : Number(v).toPrecision(4));
    }
    add("this request (ms)", card.elapsed_ms.toFixed(0));
    return table;
  }
  async function loadVersions() {
    const r = await fetch("/api/versions");
    if (!r.ok) { $("versions-warning").textContent = (await errorOf(r)).message; return; }
    const doc = await r.json();
    for (const [i, id] of [[0, "version-a"], [1, "version-b"]]) {
      const sel = $(id); sel.innerHTML = "";
      doc.options.forEach((o) => { const opt = document.createElement("option"); opt.value = o.id; opt.textContent = o.title; sel.append(opt); });
      if (doc.options.length > i) sel.selectedIndex = i;
    }
    $("versions-warning").textContent = doc.warnings.join(" ");
  }
  async function compare() {
    clearErrors(); $("compare-results").innerHTML = ""; $("compare-results").dataset.ready = "";
    if (!state.content) { showError("content", "give a content image: drop or pick a photo"); return; }
    if (!state.styles.length) { showError("style", "give a style image: pick one from the gallery or upload one"); return; }
    const form = await buildForm();
    form.append("a", $("version-a").value); form.append("b", $("version-b").value);
    busy(true); $("compare-status").textContent = "running both versions…";
    try {
      const r = await fetch("/api/compare", { method: "POST", body: form });
      if (!r.ok) { const e = await errorOf(r); showError(e.field, e.message, "compare-error"); return; }
      const doc = await r.json();
      for (const card of doc.results) {
        const fig = document.createElement("figure"); fig.dataset.version = card.id;
        const img = document.createElement("img"); img.src = card.image; img.alt = `output of ${card.title}`;
        const cap = document.createElement("figcaption");
        const title = document.createElement("strong"); title.textContent = card.title;
        cap.append(title);
        if (card.registry) { const reg = document.createElement("div"); reg.textContent = card.registry; cap.append(reg); }
        if (card.note) { const note = document.createElement("div"); note.className = "muted"; note.textContent = card.note; cap.append(note); }
        cap.append(metricRows(card));
        if (card.run_url) {
          const a = document.createElement("a"); a.href = card.run_url; a.target = "_blank"; a.rel = "noopener";
          a.textContent = "MLflow run ↗"; a.className = "run-link"; cap.append(a);
        } else if (card.run_id) { const s = document.createElement("div"); s.textContent = `run ${card.run_id}`; cap.append(s); }
        fig.append(img, cap); $("compare-results").append(fig);
      }
      $("compare-results").dataset.ready = "1";
      $("compare-status").textContent = "";
    } catch (e) { showError(null, `the studio server did not answer (${e.message})`, "compare-error"); }
    finally { busy(false); if ($("compare-status").textContent.endsWith("…")) $("compare-status").textContent = ""; }
  }
  $("compare-go").addEventListener("click", compare);

  // ------------------------------------------------------------------ start
  fetch("/api/info").then((r) => r.json()).then((info) => {
    $("backend").textContent = `Stylising with ${info.backend}` + (info.mlflow ? "; MLflow registry connected" : "");
    $("steps").max = String(info.gatys.max_steps); $("steps").value = String(info.gatys.steps);
    state.steps = { optimize: info.gatys.steps, fit: info.fit.steps };
    $("fit-option").hidden = !info.fit.available;
  }).catch(() => { $("backend").textContent = "the studio server does not answer"; });
  loadGallery(); loadVersions();
})();
