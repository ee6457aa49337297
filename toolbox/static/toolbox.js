// CleanRLHF toolbox page: lists runs, compares the selected ones (curves drawn as inline SVG, evaluation videos
// over training, queried clip pairs with their labels). Plain DOM, no dependencies; every string from the server
// goes through textContent or an attribute, never through innerHTML.
"use strict";

const COLORS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563",
  "#65a30d", "#9333ea"];
const SVG_NS = "http://www.w3.org/2000/svg";
const state = { runs: [], selected: [], sortKey: "time", sortAsc: false, curves: {}, queryCache: {}, sliders: {} };

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") node.textContent = v;
    else if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function swatch(color) {
  const node = el("span", { class: "swatch" });
  node.style.backgroundColor = color; // through the CSSOM: the page's CSP allows no inline style attributes
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

async function getJSON(url) {
  const response = await fetch(url, { cache: "no-store" });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

function setStatus(text) { $("status").textContent = text; }

const fileUrl = (run, rel) => `/files/${encodeURIComponent(run)}/${rel.split("/").map(encodeURIComponent).join("/")}`;
const apiUrl = (run, what, params) =>
  `/api/runs/${encodeURIComponent(run)}/${what}` + (params ? "?" + new URLSearchParams(params) : "");

function fmt(x, digits = 1) {
  if (x === null || x === undefined || Number.isNaN(x)) return "—";
  const a = Math.abs(x);
  if (a >= 1e6) return (x / 1e6).toFixed(a >= 1e7 ? 0 : 1) + "M";
  if (a >= 1e4) return (x / 1e3).toFixed(a >= 1e5 ? 0 : 1) + "k";
  if (Number.isInteger(x)) return String(x);
  return x.toFixed(a < 1 ? 3 : digits);
}

function colorOf(id) { return COLORS[state.selected.indexOf(id) % COLORS.length]; }

// ---- runs table ----------------------------------------------------------------------------------------------

async function loadRuns() {
  setStatus("loading runs…");
  try {
    const data = await getJSON("/api/runs");
    state.runs = data.runs;
    $("runs-dir").textContent = data.runs_dir;
    const known = new Set(state.runs.map((r) => r.id));
    state.selected = state.selected.filter((id) => known.has(id));
    renderRuns();
    setStatus(`${state.runs.length} run${state.runs.length === 1 ? "" : "s"}`);
    await renderCompare();
  } catch (e) {
    setStatus(`error: ${e.message}`);
  }
}

function renderRuns() {
  const filter = $("filter").value.trim().toLowerCase();
  const key = state.sortKey;
  const rows = state.runs
    .filter((r) => !filter || [r.env_id, r.exp_name, r.algorithm, r.id].join(" ").toLowerCase().includes(filter))
    .sort((a, b) => {
      const x = a[key], y = b[key];
      const c = x === y ? 0 : x === null || x === undefined ? 1 : y === null || y === undefined ? -1 : x < y ? -1 : 1;
      return state.sortAsc ? c : -c;
    });
  const body = $("runs").querySelector("tbody");
  body.replaceChildren(...rows.map((r) => {
    const selected = state.selected.includes(r.id);
    const box = el("input", { type: "checkbox", "aria-label": `select ${r.id}`, checked: selected });
    box.addEventListener("click", (e) => e.stopPropagation());
    box.addEventListener("change", () => toggle(r.id));
    const dot = selected ? swatch(colorOf(r.id)) : null;
    return el("tr", { class: selected ? "selected" : "", "data-run": r.id, title: r.id, onclick: () => toggle(r.id) },
      el("td", {}, box),
      el("td", {}, dot, r.env_id || "—"),
      el("td", { text: r.exp_name || "—" }),
      el("td", { class: "num", text: r.seed ?? "—" }),
      el("td", { text: r.date }),
      el("td", { text: r.algorithm || "—" }),
      el("td", { class: "num", text: fmt(r.steps) }),
      el("td", { class: `status ${r.status || ""}`, text: r.status || "—" }),
      el("td", { class: "num", text: r.labels === null ? "—" : String(r.labels) }),
      el("td", { class: "num", text: fmt(r.last_eval_return) }),
      el("td", { class: "differs", text: differsText(r, 4), title: differsText(r) }));
  }));
  for (const th of $("runs").querySelectorAll("th[data-key]")) {
    th.classList.toggle("sorted", th.dataset.key === key);
    th.classList.toggle("asc", th.dataset.key === key && state.sortAsc);
  }
  $("no-runs").hidden = state.runs.length > 0;
  const n = state.selected.length;
  $("selection-info").textContent = n === 0 ? "select runs to compare them"
    : n === 1 ? "1 run selected: select another to compare" : `${n} runs compared`;
}

// The run's flags that differ from the other runs' ("--lr 0.001 · --no-surf"), at most ``limit`` of them: tells
// apart runs of one env, experiment and seed.
function differsText(r, limit = Infinity) {
  const items = Object.entries((r && r.differs) || {}).map(([k, v]) => {
    const flag = "--" + k.replaceAll("_", "-");
    if (v === true) return flag;
    if (v === false) return "--no-" + k.replaceAll("_", "-");
    return `${flag} ${typeof v === "string" ? v : JSON.stringify(v)}`;
  });
  const shown = items.slice(0, limit).join(" · ");
  return items.length > limit ? `${shown} · +${items.length - limit} more` : shown;
}

function runTitle(id) {
  const text = differsText(state.runs.find((r) => r.id === id), 3);
  return text ? `${id} (${text})` : id;
}

function toggle(id) {
  const i = state.selected.indexOf(id);
  if (i >= 0) state.selected.splice(i, 1); else state.selected.push(id);
  location.hash = state.selected.length ? "runs=" + state.selected.map(encodeURIComponent).join(",") : "";
  renderRuns();
  renderCompare();
}

// ---- learning curves -----------------------------------------------------------------------------------------

function niceTicks(lo, hi, integer = false, count = 5) {
  if (!(hi > lo)) { const pad = Math.abs(lo) * 0.1 || 1; lo -= pad; hi += pad; }
  const raw = Math.max((hi - lo) / count, integer ? 1 : 0);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = (integer ? [1, 2, 5, 10] : [1, 2, 2.5, 5, 10]).map((m) => m * mag).find((s) => s >= raw);
  const start = Math.floor(lo / step) * step, end = Math.ceil(hi / step) * step;
  const ticks = [];
  for (let t = start; t <= end + step / 2; t += step) ticks.push(+t.toPrecision(12));
  return ticks;
}

function smooth(points, weight) {
  let last = null;
  return points.map(([x, y]) => { last = last === null ? y : last * weight + (1 - weight) * y; return [x, last]; });
}

function drawChart(node, series, xLabel, yLabel, emptyText, integerX = false) {
  const W = 560, H = 320, m = { l: 58, r: 14, t: 10, b: 40 };
  node.replaceChildren();
  const all = series.flatMap((s) => s.points);
  if (!all.length) {
    node.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" }, emptyText));
    return;
  }
  const extent = (i) => all.reduce(([lo, hi], p) => [Math.min(lo, p[i]), Math.max(hi, p[i])], [Infinity, -Infinity]);
  const xt = niceTicks(...extent(0), integerX);
  const yt = niceTicks(...extent(1));
  const [x0, x1, y0, y1] = [xt[0], xt[xt.length - 1], yt[0], yt[yt.length - 1]];
  const X = (x) => m.l + ((x - x0) / (x1 - x0 || 1)) * (W - m.l - m.r);
  const Y = (y) => H - m.b - ((y - y0) / (y1 - y0 || 1)) * (H - m.t - m.b);
  for (const t of yt) {
    node.append(svg("line", { x1: m.l, x2: W - m.r, y1: Y(t), y2: Y(t), class: "grid" }));
    node.append(svg("text", { x: m.l - 6, y: Y(t) + 4, "text-anchor": "end" }, fmt(t, 2)));
  }
  for (const t of xt) {
    node.append(svg("line", { x1: X(t), x2: X(t), y1: m.t, y2: H - m.b, class: "grid" }));
    node.append(svg("text", { x: X(t), y: H - m.b + 15, "text-anchor": "middle" }, fmt(t)));
  }
  node.append(svg("line", { x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b, class: "axis" }));
  node.append(svg("line", { x1: m.l, x2: m.l, y1: m.t, y2: H - m.b, class: "axis" }));
  node.append(svg("text", { x: (m.l + W - m.r) / 2, y: H - 6, "text-anchor": "middle" }, xLabel));
  node.append(svg("text", { x: 12, y: (m.t + H - m.b) / 2, "text-anchor": "middle",
    transform: `rotate(-90 12 ${(m.t + H - m.b) / 2})` }, yLabel));
  const doSmooth = $("smooth").checked;
  for (const s of series) {
    if (!s.points.length) continue;
    const path = (pts) => pts.map(([x, y]) => `${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join(" ");
    if (doSmooth && s.points.length > 3) {
      node.append(svg("polyline", { points: path(s.points), class: "raw", stroke: s.color }));
      node.append(svg("polyline", { points: path(smooth(s.points, 0.6)), class: "curve", stroke: s.color,
        "data-run": s.id }));
    } else {
      node.append(svg("polyline", { points: path(s.points), class: "curve", stroke: s.color, "data-run": s.id }));
    }
    if (s.points.length <= 40) {
      for (const [x, y] of s.points) {
        const dot = svg("circle", { cx: X(x), cy: Y(y), r: 2.5, fill: s.color });
        dot.append(svg("title", {}, `${s.id}\n${xLabel} ${fmt(x)}: ${fmt(y, 2)}`));
        node.append(dot);
      }
    }
  }
}

async function renderCurves() {
  const metric = $("metric").value;
  const label = $("metric").selectedOptions[0].textContent;
  const results = await Promise.all(state.selected.map(async (id) => {
    const key = `${id}|${metric}`;
    if (!state.curves[key]) state.curves[key] = getJSON(apiUrl(id, "curves", { metric }));
    try { return { id, data: await state.curves[key] }; } catch (e) { delete state.curves[key]; throw e; }
  }));
  const bySteps = results.map(({ id, data }) => ({ id, color: colorOf(id), points: data.points.map((p) => [p[0], p[2]]) }));
  const byLabels = results.filter(({ data }) => data.has_labels)
    .map(({ id, data }) => ({ id, color: colorOf(id), points: data.points.map((p) => [p[1], p[2]]) }));
  $("caption-steps").textContent = `${label} vs environment steps`;
  $("caption-labels").textContent = `${label} vs number of labels`;
  drawChart($("chart-steps"), bySteps, "environment steps", label, `no ${metric} logged in the selected runs`);
  drawChart($("chart-labels"), byLabels, "labels (feedback/total_labels)", label,
    "no run with preference labels selected (oracle baselines have none)", true);
  $("legend").replaceChildren(...results.map(({ id, data }) => el("span", {},
    swatch(colorOf(id)), runTitle(id) + (data.has_labels ? "" : " (no labels)"))));
}

// ---- videos --------------------------------------------------------------------------------------------------

function videoElement(src, extra = {}) {
  return el("video", { src, muted: true, loop: true, autoplay: true, playsinline: true, controls: true,
    preload: "auto", ...extra });
}

// Move the other runs' sliders to their evaluation closest to ``step`` (runs evaluate at the same frequency in
// general, but not necessarily at the same steps).
function alignSliders(source, step) {
  for (const [id, s] of Object.entries(state.sliders)) {
    if (id === source || !state.selected.includes(id)) continue;
    let best = 0;
    s.steps.forEach((x, i) => { if (Math.abs(x - step) < Math.abs(s.steps[best] - step)) best = i; });
    s.slider.value = best;
    s.show();
  }
}

async function renderVideos() {
  state.sliders = {};
  const columns = await Promise.all(state.selected.map(async (id) => {
    const data = await getJSON(apiUrl(id, "videos"));
    const col = el("div", { class: "column", "data-run": id },
      el("h3", { title: id }, swatch(colorOf(id)), runTitle(id)));
    if (!data.eval.length) {
      col.append(el("p", { class: "muted", text: "no evaluation videos (train with --capture-video)" }));
    } else {
      const info = el("div", { class: "step-info" });
      const video = videoElement(fileUrl(id, data.eval[data.eval.length - 1].path), { class: "eval-video" });
      const slider = el("input", { type: "range", min: 0, max: data.eval.length - 1, value: data.eval.length - 1,
        "aria-label": `evaluation step of ${id}` });
      const show = () => {
        const v = data.eval[+slider.value];
        info.textContent = `step ${v.step.toLocaleString()} · eval return ${fmt(v.return)} ` +
          `(${+slider.value + 1}/${data.eval.length})`;
        const src = fileUrl(id, v.path);
        if (!video.src.endsWith(src)) video.src = src;
      };
      slider.addEventListener("input", () => {
        show();
        if ($("link-sliders").checked) alignSliders(id, data.eval[+slider.value].step);
      });
      show();
      state.sliders[id] = { slider, show, steps: data.eval.map((v) => v.step) };
      col.append(video, slider, info);
    }
    if (data.evaluation) {
      const ev = data.evaluation;
      const box = el("details", { class: "final" }, el("summary", { text:
        `evaluation.py at step ${fmt(ev.step)}: ${fmt(ev.mean)} ± ${fmt(ev.std)} over ${ev.episodes} episodes ` +
        `(95% CI ${fmt(ev.ci95_low)} – ${fmt(ev.ci95_high)}, median ${fmt(ev.median)})` }));
      if (ev.plot) box.append(el("img", { src: fileUrl(id, ev.plot), alt: "evaluation.py returns", class: "plot" }));
      if (ev.videos.length) {
        const pick = el("select", { "aria-label": "evaluation episode" },
          ...ev.videos.map((v, i) => el("option", { value: v, text: `episode ${i}: return ${fmt(ev.returns?.[i])}` })));
        const video = videoElement(fileUrl(id, ev.videos[0]), { autoplay: false });
        pick.addEventListener("change", () => { video.src = fileUrl(id, pick.value); });
        box.append(pick, video);
      }
      col.append(box);
    }
    return col;
  }));
  $("videos").replaceChildren(...columns);
}

// ---- queried clips -------------------------------------------------------------------------------------------

const LABEL_CLASS = { 0: "l0", 0.5: "l05", 1: "l1" };

function clipBox(id, q, side) {
  const rel = q[`clip_${side}`];
  const preferred = (side === "a" && q.label === 0) || (side === "b" && q.label === 1);
  const box = el("div", { class: "clip" + (preferred ? " preferred" : q.label === 0.5 ? " equal" : "") });
  if (q[`exists_${side}`]) {
    const v = el("video", { src: fileUrl(id, rel), muted: true, loop: true, playsinline: true, preload: "auto" });
    box.addEventListener("mouseenter", () => v.play().catch(() => {}));
    box.addEventListener("mouseleave", () => v.pause());
    box.append(v);
  } else {
    box.append(el("div", { class: "missing", text: "clip not rendered (yet)" }));
  }
  box.append(el("span", { text: side.toUpperCase() }));
  return box;
}

async function renderQueryList(id, session, list) {
  const key = `${id}|${session}`;
  if (!state.queryCache[key]) state.queryCache[key] = getJSON(apiUrl(id, "queries", { session }));
  const data = await state.queryCache[key];
  list.replaceChildren(...data.queries.map((q) => el("div", { class: "pair" },
    el("div", {}, `session ${q.session} · query ${q.query}` + (q.step === null ? " " : ` · step ${q.step.toLocaleString()} `),
      el("span", { class: "badge " + (q.label === null ? "skip" : LABEL_CLASS[q.label]), text: q.label_name })),
    el("div", { class: "clips" }, clipBox(id, q, "a"), clipBox(id, q, "b")))));
}

async function renderQueries() {
  const columns = await Promise.all(state.selected.map(async (id) => {
    const col = el("div", { class: "column", "data-run": id },
      el("h3", { title: id }, swatch(colorOf(id)), runTitle(id)));
    const all = await getJSON(apiUrl(id, "queries"));
    if (!all.sessions.length) {
      col.append(el("p", { class: "muted", text: "no queried clips (sac_rlhf.py / pref_ppo.py with --capture-video, or human feedback with --feedback-server-autostart)" }));
      return col;
    }
    const counts = {};
    for (const q of all.queries) {
      const c = (counts[q.session] ||= { n: 0, labelled: 0 });
      c.n += 1; if (q.label !== null) c.labelled += 1;
    }
    const pick = el("select", { "aria-label": `session of ${id}` }, ...all.sessions.map((s) =>
      el("option", { value: s, text: `session ${s} (${counts[s].labelled}/${counts[s].n} labelled)` })));
    pick.value = all.sessions[all.sessions.length - 1];
    const list = el("div", { class: "pairs" });
    pick.addEventListener("change", () => renderQueryList(id, pick.value, list));
    col.append(el("div", { class: "bar" }, pick, el("span", { class: "muted", text: "hover a clip to play it" })), list);
    await renderQueryList(id, pick.value, list);
    return col;
  }));
  $("queries").replaceChildren(...columns);
}

// ---- page ----------------------------------------------------------------------------------------------------

let renderToken = 0;
async function renderCompare() {
  const token = ++renderToken;
  $("compare").hidden = state.selected.length === 0;
  if (!state.selected.length) return;
  try {
    await Promise.all([renderCurves(), renderVideos(), renderQueries()]);
    if (token === renderToken) setStatus(`${state.runs.length} runs · ${state.selected.length} compared`);
  } catch (e) {
    if (token === renderToken) setStatus(`error: ${e.message}`);
  }
}

function init() {
  const hash = new URLSearchParams(location.hash.slice(1)).get("runs");
  if (hash) state.selected = hash.split(",").map(decodeURIComponent).filter(Boolean);
  $("refresh").addEventListener("click", () => { state.curves = {}; state.queryCache = {}; loadRuns(); });
  $("filter").addEventListener("input", renderRuns);
  $("clear").addEventListener("click", () => { state.selected = []; location.hash = ""; renderRuns(); renderCompare(); });
  $("metric").addEventListener("change", () => renderCurves().catch((e) => setStatus(`error: ${e.message}`)));
  $("smooth").addEventListener("change", () => renderCurves().catch((e) => setStatus(`error: ${e.message}`)));
  for (const th of $("runs").querySelectorAll("th[data-key]")) {
    th.addEventListener("click", () => {
      if (state.sortKey === th.dataset.key) state.sortAsc = !state.sortAsc;
      else { state.sortKey = th.dataset.key; state.sortAsc = th.dataset.key !== "time"; }
      renderRuns();
    });
  }
  loadRuns();
}

init();
