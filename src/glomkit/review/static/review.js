/* glomkit review: the slide in OpenSeadragon, the detections as an SVG overlay, a table, keys.
   Every change is one POST to api/op; the server validates it, saves, and returns the new counts. */
(function () {
  "use strict";
  const SVG = "http://www.w3.org/2000/svg";
  const $ = (s) => document.querySelector(s);
  const state = {
    slide: null, classes: [], byName: {}, items: new Map(), selected: null,
    hidden: new Set(), threshold: 0, drawing: false, draft: null, typicalRadius: 50,
    tilesLoaded: 0, busy: 0,
  };
  window.glomkitReview = state; // for tests and the curious

  const rgb = (c) => `rgb(${c[0]},${c[1]},${c[2]})`;
  const colorOf = (label) => (state.byName[label] ? rgb(state.byName[label].color) : "rgb(255,255,0)");
  const fmt = (v, d) => (v === null || v === undefined ? "–" : Number(v).toFixed(d));
  const el = (tag, attrs, text) => {
    const e = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => e.setAttribute(k, v));
    if (text !== undefined) e.textContent = text;
    return e;
  };

  async function getJSON(url) {
    const r = await fetch(url, { cache: "no-store" });
    if (!r.ok) throw new Error(`${url}: ${r.status}`);
    return r.json();
  }

  async function send(op) {
    state.busy++;
    try {
      const r = await fetch("api/op", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(op),
      });
      const out = await r.json();
      if (!r.ok) throw new Error(out.error || r.status);
      if (out.deleted !== undefined) removeItem(out.deleted);
      if (out.item) upsert(out.item);
      showCounts(out.counts);
      $("#saved").textContent = `saved ${out.saved} → ${state.slide.files.geojson}`;
      $("#saved").className = "muted";
      return out;
    } catch (err) {
      $("#saved").textContent = `not saved: ${err.message}`;
      $("#saved").className = "error";
      return null;
    } finally {
      state.busy--;
    }
  }

  // ------------------------------------------------------------------ viewer and overlay
  let viewer, layer, svg;
  function initViewer() {
    const s = state.slide;
    viewer = OpenSeadragon({
      id: "viewer", prefixUrl: "static/", showNavigationControl: false, showNavigator: true,
      navigatorPosition: "BOTTOM_LEFT", animationTime: 0.3, maxZoomPixelRatio: 2,
      drawer: "canvas", // the 2D canvas: no WebGL needed (headless browsers, remote desktops)
      gestureSettingsMouse: { clickToZoom: false, dblClickToZoom: true },
      tileSources: {
        width: s.width, height: s.height, tileSize: s.tile_size, tileOverlap: 0,
        minLevel: 0, maxLevel: s.max_level,
        getTileUrl: (level, x, y) => `tiles/${level}/${x}_${y}.jpg`,
      },
    });
    state.viewer = viewer;
    viewer.addHandler("tile-loaded", () => { state.tilesLoaded++; });
    svg = document.createElementNS(SVG, "svg");
    svg.id = "overlay";
    layer = document.createElementNS(SVG, "g");
    svg.appendChild(layer);
    viewer.canvas.appendChild(svg);
    const place = () => {
      if (!viewer.world.getItemCount()) return;
      const vp = viewer.viewport;
      const p0 = vp.imageToViewerElementCoordinates(new OpenSeadragon.Point(0, 0));
      const p1 = vp.imageToViewerElementCoordinates(new OpenSeadragon.Point(s.width, 0));
      const k = (p1.x - p0.x) / s.width;
      layer.setAttribute("transform", `translate(${p0.x},${p0.y}) scale(${k})`);
    };
    ["open", "animation", "update-viewport", "resize", "viewport-change"].forEach((e) => viewer.addHandler(e, place));
    viewer.addHandler("canvas-click", onCanvasClick);
    viewer.addHandler("canvas-press", onPress);
    viewer.addHandler("canvas-drag", onDrag);
    viewer.addHandler("canvas-release", onRelease);
  }

  const toImage = (pos) => viewer.viewport.viewerElementToImageCoordinates(pos);

  function onCanvasClick(e) {
    if (state.drawing) { e.preventDefaultAction = true; return; }
    if (!e.quick) return;
    const p = toImage(e.position);
    let best = null;
    for (const it of state.items.values()) {
      if (!visible(it)) continue;
      const d = Math.hypot(it.x - p.x, it.y - p.y);
      if (d <= it.radius * 1.05 && (!best || it.radius < best.radius)) best = it;
    }
    if (best) { select(best.id, false); e.preventDefaultAction = true; }
  }

  function onPress(e) {
    if (!state.drawing) return;
    const c = toImage(e.position);
    state.draft = { x: c.x, y: c.y, r: 0, node: document.createElementNS(SVG, "circle") };
    state.draft.node.setAttribute("class", "draft");
    layer.appendChild(state.draft.node);
    drawDraft();
  }
  function onDrag(e) {
    if (!state.drawing) return;
    e.preventDefaultAction = true; // no panning while drawing
    if (!state.draft) return;
    const p = toImage(e.position);
    state.draft.r = Math.hypot(p.x - state.draft.x, p.y - state.draft.y);
    drawDraft();
  }
  function drawDraft() {
    const d = state.draft;
    d.node.setAttribute("cx", d.x); d.node.setAttribute("cy", d.y);
    d.node.setAttribute("r", Math.max(d.r, 1));
  }
  async function onRelease() {
    if (!state.drawing || !state.draft) return;
    const d = state.draft;
    state.draft = null;
    d.node.remove();
    // a click (or a drag of a few screen px) gets a typical glomerulus size
    const vp = viewer.viewport;
    const pxPerImagePx = vp.imageToViewerElementCoordinates(new OpenSeadragon.Point(1, 0)).x -
      vp.imageToViewerElementCoordinates(new OpenSeadragon.Point(0, 0)).x;
    const r = d.r * pxPerImagePx < 6 ? state.typicalRadius : d.r;
    setDrawing(false);
    const out = await send({ op: "add", x: d.x, y: d.y, radius: r,
                             label: $("#add-label") ? $("#add-label").value : undefined });
    if (out && out.item) select(out.item.id, false);
  }

  function setDrawing(on) {
    state.drawing = on;
    $("#viewer").classList.toggle("drawing", on);
    $("#btn-draw").textContent = on ? "drawing… (Esc)" : "add (draw)";
  }

  // ------------------------------------------------------------------ items
  function visible(it) {
    if (state.hidden.has(it.label)) return false;
    return it.score === null || it.score >= state.threshold;
  }

  function upsert(it) {
    const old = state.items.get(it.id);
    state.items.set(it.id, it);
    let g = old && old.g;
    let row = old && old.row;
    if (!g) {
      g = document.createElementNS(SVG, "g");
      g.appendChild(document.createElementNS(SVG, "polygon"));
      g.appendChild(document.createElementNS(SVG, "circle"));
      layer.appendChild(g);
      row = el("tr");
      row.addEventListener("click", () => select(it.id, true));
      insertRow(row, it.id);
    }
    it.g = g; it.row = row;
    g.dataset.id = it.id;
    const color = colorOf(it.label);
    const [poly, circ] = g.childNodes;
    circ.setAttribute("cx", it.x); circ.setAttribute("cy", it.y); circ.setAttribute("r", it.radius);
    circ.setAttribute("stroke", color);
    if (it.polygon) {
      poly.setAttribute("points", it.polygon.map((p) => p.join(",")).join(" "));
      poly.setAttribute("stroke", color);
    } else poly.removeAttribute("points");
    row.dataset.id = it.id;
    row.innerHTML = "";
    const cls = el("td");
    cls.appendChild(el("span", { class: "swatch", style: `background:${color}` }));
    cls.appendChild(document.createTextNode(it.label || "(none)"));
    row.appendChild(el("td", {}, String(it.id)));
    row.appendChild(cls);
    row.appendChild(el("td", {}, fmt(it.score, 2)));
    row.appendChild(el("td", {}, fmt(it.area_um2, 0)));
    row.appendChild(el("td", {}, fmt(it.diameter_um, 0)));
    row.appendChild(el("td", { class: `st-${it.status}` }, it.status));
    applyVisibility(it);
    if (state.selected === it.id) markSelected(it.id);
  }

  function insertRow(row, id) {
    const body = $("#items tbody");
    const next = Array.from(body.children).find((r) => Number(r.dataset.id) > id);
    body.insertBefore(row, next || null);
  }

  function removeItem(id) {
    const it = state.items.get(id);
    if (!it) return;
    it.g.remove(); it.row.remove();
    state.items.delete(id);
    if (state.selected === id) { state.selected = null; showSelection(); }
  }

  function applyVisibility(it) {
    const v = visible(it);
    it.g.setAttribute("class", `glom ${it.status}${v ? "" : " hidden"}${state.selected === it.id ? " selected" : ""}`);
    it.row.classList.toggle("hidden", !v);
  }
  const refreshAll = () => state.items.forEach(applyVisibility);

  function ordered() {
    // calls near the model's decision that nobody has checked yet come first, then by id
    const first = (it) => (it.uncertain && it.status === "unreviewed" ? 0 : 1);
    return Array.from(state.items.values()).filter(visible).sort((a, b) => first(a) - first(b) || a.id - b.id);
  }

  function markSelected(id) {
    document.querySelectorAll("#items tr.selected").forEach((r) => r.classList.remove("selected"));
    const it = state.items.get(id);
    if (!it) return;
    it.row.classList.add("selected");
    applyVisibility(it);
  }

  function select(id, zoom) {
    const prev = state.items.get(state.selected);
    state.selected = id;
    if (prev) applyVisibility(prev);
    markSelected(id);
    const it = state.items.get(id);
    if (!it) return;
    it.row.scrollIntoView({ block: "nearest" });
    if (zoom) zoomTo(it);
    showSelection();
  }

  function zoomTo(it) {
    const r = Math.max(it.radius, 10) * 3;
    const rect = viewer.viewport.imageToViewportRectangle(it.x - r, it.y - r, 2 * r, 2 * r);
    viewer.viewport.fitBounds(rect);
  }

  function showSelection() {
    const box = $("#selection");
    const it = state.items.get(state.selected);
    box.innerHTML = "";
    if (!it) { box.textContent = "nothing selected"; return; }
    if (it.status !== "added") {
      const img = el("img", { src: `patch/${it.id}.png`, alt: "" });
      img.addEventListener("error", () => img.remove());
      box.appendChild(img);
    }
    box.appendChild(el("div", {}, `#${it.id} · ${it.label} · ${it.status}`));
    box.appendChild(el("div", {}, `model: ${it.model_label || "— (added)"} · score ${fmt(it.score, 3)}`));
    if (it.reviewer) box.appendChild(el("div", {}, `${it.reviewer}, ${it.time}`));
  }

  function step(delta) {
    const list = ordered();
    if (!list.length) return;
    let k = list.findIndex((it) => it.id === state.selected);
    k = k < 0 ? (delta > 0 ? 0 : list.length - 1) : Math.min(list.length - 1, Math.max(0, k + delta));
    select(list[k].id, true);
  }

  async function decide(op) {
    const id = state.selected;
    if (id === null || !state.items.has(id)) return;
    const before = ordered().map((it) => it.id);
    const out = await send({ op: op.op, id, ...(op.label ? { label: op.label } : {}) });
    if (!out || (op.op !== "delete" && !$("#advance").checked)) return;
    const k = before.indexOf(id);
    const nextId = before.slice(k + 1).find((j) => state.items.has(j) && visible(state.items.get(j)));
    if (nextId !== undefined) select(nextId, true);
  }

  async function undo() {
    const out = await send({ op: "undo" });
    if (out && out.item) select(out.item.id, true);
  }

  // ------------------------------------------------------------------ panels
  function showCounts(c) {
    const pct = c.ggs_percent;
    $("#ggs").textContent = pct === null ? "no glomeruli" :
      `GGS ${pct.toFixed(1)} % (${c.n_sclerosed} of ${c.n_glomeruli} glomeruli)`;
    const body = $("#counts tbody");
    body.innerHTML = "";
    Object.entries(c.counts).forEach(([name, n]) => {
      const tr = el("tr", { "data-class": name });
      const td = el("td");
      td.appendChild(el("span", { class: "swatch", style: `background:${colorOf(name)}` }));
      td.appendChild(document.createTextNode(name));
      tr.appendChild(td);
      tr.appendChild(el("td", { class: "num" }, String(n)));
      body.appendChild(tr);
    });
    $("#progress").textContent = `${c.n_reviewed} of ${c.n_detections} reviewed`;
    state.counts = c;
  }

  function buildPanels() {
    const toggles = $("#class-toggles");
    const relabel = $("#relabel");
    const add = el("select", { id: "add-label", title: "class of a drawn glomerulus" });
    state.classes.forEach((c, i) => {
      const lab = el("label");
      const box = el("input", { type: "checkbox", "data-class": c.name });
      box.checked = true;
      box.addEventListener("change", () => {
        if (box.checked) state.hidden.delete(c.name); else state.hidden.add(c.name);
        refreshAll();
      });
      lab.appendChild(box);
      lab.appendChild(el("span", { class: "swatch", style: `background:${rgb(c.color)}` }));
      lab.appendChild(document.createTextNode(c.name));
      toggles.appendChild(lab);
      const b = el("button", { "data-class": c.name, title: `${i + 1}` }, `${i + 1} ${c.name}`);
      b.addEventListener("click", () => decide({ op: "relabel", label: c.name }));
      relabel.appendChild(b);
      if (c.is_glomerulus) add.appendChild(el("option", { value: c.name }, c.name));
    });
    const addLab = el("label", { class: "new-class" }, "a drawn glomerulus is ");
    addLab.appendChild(add);
    $("#actions").insertBefore(addLab, relabel);
    const thr = $("#threshold");
    thr.addEventListener("input", () => {
      state.threshold = Number(thr.value);
      $("#threshold-value").textContent = state.threshold.toFixed(2);
      refreshAll();
    });
    thr.addEventListener("change", () => thr.blur());
    $("#btn-accept").addEventListener("click", () => decide({ op: "accept" }));
    $("#btn-reject").addEventListener("click", () => decide({ op: "reject" }));
    $("#btn-delete").addEventListener("click", () => decide({ op: "delete" }));
    $("#btn-draw").addEventListener("click", () => setDrawing(!state.drawing));
    $("#btn-undo").addEventListener("click", undo);
  }

  function onKey(e) {
    const t = e.target;
    if (t && (t.tagName === "SELECT" || t.tagName === "TEXTAREA" || (t.tagName === "INPUT" && t.type !== "checkbox" && t.type !== "range"))) return;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const k = e.key;
    let handled = true;
    if (k === "j" || k === "ArrowDown" || k === "n") step(1);
    else if (k === "k" || k === "ArrowUp" || k === "p") step(-1);
    else if (k === "a" || k === "Enter") decide({ op: "accept" });
    else if (k === "r" || k === "x") decide({ op: "reject" });
    else if (k === "Delete" || k === "Backspace") decide({ op: "delete" });
    else if (k === "d") setDrawing(!state.drawing);
    else if (k === "u") undo();
    else if (k === "Escape") { if (state.drawing) setDrawing(false); else { const p = state.selected; state.selected = null; if (state.items.has(p)) applyVisibility(state.items.get(p)); markSelected(null); showSelection(); } }
    else if (k === "z") { const it = state.items.get(state.selected); if (it) zoomTo(it); }
    else if (k === "o") viewer.viewport.goHome();
    else if (/^[1-9]$/.test(k) && Number(k) <= state.classes.length) decide({ op: "relabel", label: state.classes[Number(k) - 1].name });
    else handled = false;
    if (handled) { e.preventDefault(); e.stopPropagation(); }
  }

  async function main() {
    state.slide = await getJSON("api/slide");
    state.classes = state.slide.scheme.classes;
    state.classes.forEach((c) => { state.byName[c.name] = c; });
    document.title = `glomkit review — ${state.slide.stem}`;
    $("#title").textContent = `${state.slide.stem} — review by ${state.slide.reviewer}`;
    buildPanels();
    initViewer();
    const data = await getJSON("api/items");
    data.items.forEach(upsert);
    const radii = data.items.map((it) => it.radius).filter((r) => r > 0).sort((a, b) => a - b);
    if (radii.length) state.typicalRadius = radii[Math.floor(radii.length / 2)];
    showCounts(data.counts);
    $("#saved").textContent = state.slide.resumed ? `resumed ${state.slide.files.geojson}` : "no changes yet";
    window.addEventListener("keydown", onKey, true);
    state.ready = true;
  }

  main().catch((err) => { $("#saved").textContent = `error: ${err.message}`; $("#saved").className = "error"; });
})();
