// ComfyUI-DSA front-end extension.
// On the DSA Confidence Sampler and AR Frame Extender nodes: a live chart of where the denoising steps went
// (steps per chunk, confidence after each step, the threshold), updated per chunk from the server's "dsa.steps"
// events, with a summary line when the run ends; and threshold presets that set the one 0..1 threshold.
// Above the chart, a live player: the decoded frames of each chunk ("dsa.frames" events, small JPEG previews) are
// appended as they arrive and played at the video's frame rate (see the "live player" section below).
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const EXT = "comfyui-dsa";
const DSA_NODES = new Set(["DSASampler", "DSAExtend", "DSALive"]);  // DSALive: dsa_live.js adds its controls
const COLOURS = { confident: "#50c878", max_steps: "#eb963c", fixed: "#6e96f0", budget: "#c878f0" };
const THRESHOLD_HELP =
  "One scale, 0..1: a chunk stops refining once its least confident frame reaches the threshold. " +
  "Higher = more steps and quality, lower = faster.";

// Preset values come from the server (dsa_core.policies.THRESHOLD_PRESETS), never duplicated here.
let PRESETS = {};
const presetsReady = api
  .fetchApi("/dsa/presets")
  .then((r) => r.json())
  .then((p) => (PRESETS = p))
  .catch(() => {});

// What tests read: the last EVENT_LOG_SIZE "dsa.steps" events (a ring: a long session never grows it) and each
// chart's state.
const EVENT_LOG_SIZE = 200;
window.__dsa = { loaded: true, events: [], charts: {}, players: {}, eventLogSize: EVENT_LOG_SIZE };

function logEvent(detail) {
  const log = window.__dsa.events;
  log.push(detail);
  if (log.length > EVENT_LOG_SIZE) log.splice(0, log.length - EVENT_LOG_SIZE);
}

function chartState(node) {
  if (!node.__dsa) node.__dsa = { chunks: [], threshold: null, baseSteps: 4, summary: "", policy: "" };
  return node.__dsa;
}

// The run's word on the MODEL's patches (report.host_patches): a hint (e.g. a shift the schedule ignores) and
// what DSA could not run, one line each.
function patchNotes(report) {
  const p = report?.host_patches;
  if (!p) return [];
  const notes = (p.hints || []).map((h) => "hint: " + h);
  if (p.ignored?.length) notes.push("ignored: " + p.ignored.join("; "));
  return notes;
}

function draw(node) {
  const st = chartState(node);
  const canvas = node.__dsaCanvas;
  if (!canvas) return;
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, padL = 26, padR = 6, mid = Math.round(H * 0.5);
  ctx.fillStyle = "#18181c";
  ctx.fillRect(0, 0, W, H);
  ctx.font = "10px sans-serif";
  ctx.fillStyle = "#ddd";
  const n = st.chunks.length;
  const r = st.report;
  const head = r
    ? `${r.mean_steps_per_frame.toFixed(2)} steps/frame · NFE ${r.total_nfe} vs ${r.fixed_nfe} fixed · x${r.speedup.toFixed(2)}`
    : n ? `${n} chunk${n > 1 ? "s" : ""} so far` : "DSA: run the graph to see where the steps go";
  ctx.fillText(head, 4, 11);
  drawExpected(ctx, st, W);
  const notes = patchNotes(r);
  window.__dsa.charts[node.id] = { chunks: n, summary: st.summary, notes, ...expectedSummary(st) };
  if (!n) return drawNotes(ctx, notes, W, H);
  const maxSteps = Math.max(st.baseSteps, ...st.chunks.map((c) => c.steps));
  const col = (W - padL - padR) / n;
  // steps per chunk
  const t0 = 26, b0 = mid - 4;
  ctx.fillStyle = "#888";
  ctx.fillText("steps", 0, t0 + 8);
  st.chunks.forEach((c, i) => {
    const h = ((b0 - t0) * c.steps) / maxSteps;
    ctx.fillStyle = COLOURS[c.stop_reason] || "#ccc";
    ctx.fillRect(padL + i * col + col * 0.15, b0 - h, col * 0.7, h);
  });
  const yb = b0 - ((b0 - t0) * st.baseSteps) / maxSteps;
  ctx.strokeStyle = "#ddd";
  ctx.setLineDash([4, 3]);
  ctx.beginPath(); ctx.moveTo(padL, yb); ctx.lineTo(W - padR, yb); ctx.stroke();
  ctx.setLineDash([]);
  drawBudgetLine(ctx, st, padL, W - padR, t0, b0, maxSteps);
  // confidence after each step
  const t1 = mid + 6, b1 = H - 4;
  ctx.fillStyle = "#888";
  ctx.fillText("conf", 0, t1 + 8);
  if (st.threshold !== null && st.threshold !== undefined) {
    const y = b1 - (b1 - t1) * Math.min(1, Math.max(0, st.threshold));
    ctx.strokeStyle = "#f05a5a";
    ctx.beginPath(); ctx.moveTo(padL, y); ctx.lineTo(W - padR, y); ctx.stroke();
  }
  st.chunks.forEach((c, i) => {
    const conf = (c.confidence || []).filter((v) => v !== null && v !== undefined);
    if (!conf.length) return;
    ctx.strokeStyle = COLOURS[c.stop_reason] || "#ccc";
    ctx.fillStyle = "#eee";
    ctx.beginPath();
    conf.forEach((v, k) => {
      const x = padL + i * col + col * 0.15 + (conf.length > 1 ? (col * 0.7 * k) / (conf.length - 1) : col * 0.35);
      const y = b1 - (b1 - t1) * Math.min(1, Math.max(0, v));
      k ? ctx.lineTo(x, y) : ctx.moveTo(x, y);
    });
    ctx.stroke();
  });
  drawNotes(ctx, notes, W, H);
}

function wrapText(ctx, text, width) {    // words onto lines no wider than `width` pixels
  const lines = [];
  let line = "";
  for (const word of text.split(" ")) {
    const next = line ? line + " " + word : word;
    if (line && ctx.measureText(next).width > width) { lines.push(line); line = word; } else line = next;
  }
  return line ? lines.concat([line]) : lines;
}

function drawNotes(ctx, notes, W, H) {    // on top of the chart's foot, in amber on a dark band (at most 5 lines)
  const lines = notes.flatMap((n) => wrapText(ctx, n, W - 8)).slice(0, 5);
  if (!lines.length) return;
  const top = H - 4 - 11 * lines.length;
  ctx.fillStyle = "rgba(24, 24, 28, 0.85)";
  ctx.fillRect(0, top - 2, W, H - top + 2);
  ctx.fillStyle = "#f0b040";
  lines.forEach((line, i) => ctx.fillText(line, 4, top + 9 + 11 * i));
}

// The classic canvas squeezes DOM widgets into whatever height a node has: a new node grows to its widgets'
// minimum heights (the player's and the chart's getMinHeight), so both are readable without resizing by hand.
function growToFit(node) {
  const min = node.computeSize?.();
  if (min && node.size && node.setSize) node.setSize([Math.max(node.size[0], min[0]), Math.max(node.size[1], min[1])]);
}
window.__dsa.growToFit = growToFit; // dsa_live.js: its controls come after this extension sized the node

function addChart(node) {
  const canvas = document.createElement("canvas");
  canvas.width = 300;
  canvas.height = 150;
  canvas.className = "dsa-step-chart";
  canvas.title = "Where the steps went: bars = steps per chunk (dashed = fixed schedule), lines = confidence after each step, red = threshold. " + THRESHOLD_HELP;
  canvas.style.width = "100%";
  node.__dsaCanvas = canvas;
  if (node.addDOMWidget) {
    node.addDOMWidget("dsa_chart", "dsa_chart", canvas, { serialize: false, hideOnZoom: false, getMinHeight: () => 130 });
  }
  draw(node);
}

// Set a widget the way a user edit does (value, then its callback): the Vue node renderer keeps its own copy of
// widget values and, in older front ends (1.32), refreshes a widget only when that widget's callback runs.
function setLikeUser(widget, value) {
  widget.value = value;
  widget.callback?.(value);
}

function wirePresets(node) {
  const preset = node.widgets?.find((w) => w.name === "threshold_preset");
  const thr = node.widgets?.find((w) => w.name === "threshold");
  if (!preset || !thr) return;
  const onPreset = preset.callback;
  preset.callback = function (value, ...rest) {
    const presets = presetsOf(node);
    if (value in presets && thr.value !== presets[value]) setLikeUser(thr, presets[value]);
    chartState(node).threshold = thr.value;
    draw(node);
    return onPreset?.call(this, value, ...rest);
  };
  const onThr = thr.callback;
  thr.callback = function (value, ...rest) {
    const presets = presetsOf(node);
    if (preset.value !== "custom" && !(Math.abs(presets[preset.value] - value) < PRESET_MATCH)) setLikeUser(preset, "custom");
    chartState(node).threshold = value;
    draw(node);
    return onThr?.call(this, value, ...rest);
  };
  presetsReady.then(() => {
    const presets = presetsOf(node);
    if (preset.value in presets) thr.value = presets[preset.value];
  });
}

// ---- expected cost ---------------------------------------------------------------------------------------
// Before a run the node shows what it should cost (mean steps per chunk, speed-up over the fixed schedule), read by
// the server from the calibration table of the head (or of the generator, for the heuristic) the node is wired to:
// POST /dsa/expected, the same function the node's report uses. After a run the measured figure stands beside it.
// A calibrated head resolves the presets by cost, so the preset/threshold sync uses the node's own presets.
const PRESET_MATCH = 0.005;
const BUDGET_LINE = "#f0d250";
const EXPECTED_WIDGETS = ["policy", "threshold_preset", "threshold", "mean_steps", "max_steps", "schedule"];
const LOADER_TYPES = new Set(["DSAModelLoader", "DSAHeadLoader"]);

function presetsOf(node) {
  return node.__dsaPresets || PRESETS;
}

function widgetValue(node, name) {
  return node?.widgets?.find((w) => w.name === name)?.value;
}

// The node an input is linked from, following pass-through nodes (LoRA loaders, patches) along their first input of
// the same type until a node of one of ``types``.
function upstream(node, inputName, types, depth = 0) {
  const slot = node?.inputs?.findIndex((i) => i.name === inputName);
  if (slot === undefined || slot < 0 || depth > 16) return null;
  const from = node.getInputNode?.(slot);
  if (!from) return null;
  if (types.has(from.comfyClass ?? from.type)) return from;
  const type = node.inputs[slot].type;
  const next = from.inputs?.find((i) => i.type === type && i.link != null);
  return next ? upstream(from, next.name, types, depth + 1) : null;
}

function expectedQuery(node) {
  const q = Object.fromEntries(EXPECTED_WIDGETS.map((n) => [n, widgetValue(node, n)]));
  const modelLoader = upstream(node, "model", new Set(["DSAModelLoader"]));
  const headLoader = upstream(node, "head", LOADER_TYPES);
  q.generator = widgetValue(modelLoader, "generator") ?? null;
  q.head = widgetValue(headLoader, "head") ?? null;
  if (headLoader?.comfyClass === "DSAModelLoader" || headLoader?.type === "DSAModelLoader") {
    q.generator = q.generator ?? widgetValue(headLoader, "generator");
  }
  q.has_head = !!headLoader;
  return q;
}

function refreshExpected(node) {
  clearTimeout(node.__dsaExpectedTimer);
  node.__dsaExpectedTimer = setTimeout(async () => {
    const st = chartState(node);
    try {
      const r = await api.fetchApi("/dsa/expected", { method: "POST", body: JSON.stringify(expectedQuery(node)) });
      const e = await r.json();
      st.expected = r.ok ? e : null;
      if (r.ok) {
        node.__dsaPresets = e.presets;
        const preset = node.widgets?.find((w) => w.name === "threshold_preset");
        const thr = node.widgets?.find((w) => w.name === "threshold");
        if (preset && thr && preset.value in e.presets && thr.value !== e.presets[preset.value]) {
          setLikeUser(thr, e.presets[preset.value]);
        }
      }
    } catch (err) {
      st.expected = null;
    }
    st.expectedSeq = (st.expectedSeq || 0) + 1;
    draw(node);
    node.setDirtyCanvas?.(true, true);
  }, 60);
}

function refreshAllExpected() {
  for (const n of app.graph?._nodes || []) if (DSA_NODES.has(n.comfyClass)) refreshExpected(n);
}

function wireExpected(node) {
  for (const name of EXPECTED_WIDGETS) {
    const w = node.widgets?.find((x) => x.name === name);
    if (!w) continue;
    const cb = w.callback;
    w.callback = function (...args) {
      const out = cb?.apply(this, args);
      refreshExpected(node);
      return out;
    };
  }
  const onConn = node.onConnectionsChange;
  node.onConnectionsChange = function (...args) {
    const out = onConn?.apply(this, args);
    refreshExpected(node);
    return out;
  };
  refreshExpected(node);
}

function wireLoader(node) {
  for (const w of node.widgets || []) {
    const cb = w.callback;
    w.callback = function (...args) {
      const out = cb?.apply(this, args);
      refreshAllExpected();
      return out;
    };
  }
}

function fmtExpected(e) {
  return `${e.mean_steps.toFixed(2)} steps/chunk · x${e.speedup.toFixed(2)}`;
}

// The chart's second line: expected before the run; expected and measured after it.
function drawExpected(ctx, st, W) {
  const e = st.expected, r = st.report;
  let text;
  if (e && e.mean_steps !== null && e.mean_steps !== undefined) {
    text = `expected ${fmtExpected(e)} (${e.source}${e.calibrated ? " table" : ""})`;
  } else if (e) {
    text = e.note ? "expected: no calibration table (presets uncalibrated)" : "expected: -";
  } else {
    text = "";
  }
  if (r && r.mean_steps_per_chunk !== undefined) {
    text += `${text ? " · " : ""}measured ${r.mean_steps_per_chunk.toFixed(2)} steps/chunk · x${r.speedup.toFixed(2)}`;
  }
  ctx.fillStyle = "#bbb";
  ctx.fillText(text, 4, 22, W - 8);
}

function expectedSummary(st) {
  const e = st.expected, r = st.report;
  return {
    expected: e ? { mean_steps: e.mean_steps, speedup: e.speedup, nfe_ratio: e.nfe_ratio, source: e.source,
                    calibrated: e.calibrated, threshold: e.threshold, note: e.note } : null,
    expectedSeq: st.expectedSeq || 0,
    measured: r ? { mean_steps: r.mean_steps_per_chunk, speedup: r.speedup } : null,
    budget: st.budget ?? null,
  };
}

// A budget run: its mean steps per chunk as a line across the steps bars.
function drawBudgetLine(ctx, st, x0, x1, top, bottom, maxSteps) {
  if (st.policy !== "budget" || st.budget === null || st.budget === undefined) return;
  const y = Math.round(bottom - ((bottom - top) * st.budget) / maxSteps) + 0.5;   // a crisp 1 px line
  ctx.strokeStyle = BUDGET_LINE;
  ctx.lineWidth = 1;
  ctx.setLineDash([2, 2]);
  ctx.beginPath(); ctx.moveTo(x0, y); ctx.lineTo(x1, y); ctx.stroke();
  ctx.setLineDash([]);
  ctx.fillStyle = BUDGET_LINE;
  ctx.fillText(`budget ${st.budget}`, x1 - 58, y - 2);
}

function nodeFor(detail) {
  return app.graph?.getNodeById?.(Number(detail.node)) ?? app.graph?.getNodeById?.(detail.node);
}

// ---- live player ------------------------------------------------------------------------------------------
// Frames stream in per chunk; the browser keeps a rolling buffer of the most recent PLAYER_BUFFER frames (plus the
// last frame, which is always the newest in the buffer), so a long video never holds more than that in memory.
// While the run goes on the player advances at the video's frame rate and waits on the newest frame when it
// catches up; when the run ends it loops over what the buffer holds.
const PLAYER_BUFFER = 120;
const PLAYER_LOG = 200;

function playerState(node) {
  if (!node.__dsaPlayer) {
    node.__dsaPlayer = { frames: [], firstIndex: 0, nextIndex: 0, received: 0, cursor: 0, fps: 16, total: 0,
                         timer: null, done: false, firstFrameS: null, width: 0, height: 0, log: [] };
  }
  return node.__dsaPlayer;
}

function addPlayer(node) {
  const canvas = document.createElement("canvas");
  canvas.width = 300;
  canvas.height = 170;
  canvas.className = "dsa-live-player";
  canvas.title = "The video as it is generated: each chunk's frames are decoded as soon as the chunk is done.";
  canvas.style.width = "100%";
  node.__dsaPlayerCanvas = canvas;
  if (node.addDOMWidget) {
    node.addDOMWidget("dsa_player", "dsa_player", canvas, { serialize: false, hideOnZoom: false, getMinHeight: () => 150 });
  }
  // a removed node (or a graph loaded over it) stops its playback timer and lets its frames go
  const onRemoved = node.onRemoved;
  node.onRemoved = function () {
    const p = node.__dsaPlayer;
    if (p?.timer) clearInterval(p.timer);
    node.__dsaPlayer = null;
    return onRemoved?.apply(this, arguments);
  };
  drawPlayer(node);
}

function resetPlayer(node) {
  const p = playerState(node);
  if (p.timer) clearInterval(p.timer);
  node.__dsaPlayer = null;
  return playerState(node);
}

function onFrames(detail) {
  const node = nodeFor(detail);
  if (!node) return;
  let p = playerState(node);
  if (p.done || detail.frame_start !== p.nextIndex) {   // a new run (an extender's video starts mid-way)
    p = resetPlayer(node);
    p.firstIndex = p.nextIndex = p.cursor = detail.frame_start;
  }
  p.fps = detail.frame_rate || p.fps;
  p.total = detail.total_frames || p.total;
  p.width = detail.width;
  p.height = detail.height;
  if (detail.first_frame_s !== null && detail.first_frame_s !== undefined) p.firstFrameS = detail.first_frame_s;
  for (const url of detail.frames || []) {
    const img = new Image();
    img.src = url;
    p.frames.push(img);
    p.received += 1;
    p.nextIndex += 1;
  }
  while (p.frames.length > PLAYER_BUFFER) {
    p.frames.shift();
    p.firstIndex += 1;
  }
  p.log.push([performance.now(), p.received]);
  if (p.log.length > PLAYER_LOG) p.log.shift();
  if (!p.timer) {
    p.timer = setInterval(() => tickPlayer(node), 1000 / Math.max(1, p.fps));
  }
  publishPlayer(node);
}

function tickPlayer(node) {
  const p = playerState(node);
  const last = p.firstIndex + p.frames.length - 1;
  if (p.cursor < p.firstIndex) p.cursor = p.firstIndex;   // fell out of the rolling buffer: jump ahead
  drawPlayer(node);
  if (p.cursor < last) p.cursor += 1;
  else if (p.done) p.cursor = p.firstIndex;               // run over: loop over what the buffer holds
  node.setDirtyCanvas?.(true, false);
}

function drawPlayer(node) {
  const canvas = node.__dsaPlayerCanvas;
  if (!canvas) return;
  const p = playerState(node);
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height;
  ctx.fillStyle = "#101014";
  ctx.fillRect(0, 0, W, H);
  const img = p.frames[p.cursor - p.firstIndex] || p.frames[p.frames.length - 1];
  if (img && img.complete && img.naturalWidth) {
    const s = Math.min(W / img.naturalWidth, (H - 14) / img.naturalHeight);
    const w = img.naturalWidth * s, h = img.naturalHeight * s;
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(img, (W - w) / 2, 14 + (H - 14 - h) / 2, w, h);
  }
  ctx.font = "10px sans-serif";
  ctx.fillStyle = "#ddd";
  const status = p.received
    ? `frame ${Math.min(p.cursor, p.nextIndex - 1) + 1} / ${p.nextIndex}${p.total ? ` of ${p.total}` : ""} · ` +
      `${p.fps} fps` + (p.firstFrameS !== null ? ` · first frame ${p.firstFrameS.toFixed(2)} s` : "")
    : "live video: connect a vae to watch it as it is generated";
  ctx.fillText(status, 4, 10);
}

function publishPlayer(node) {
  const p = playerState(node);
  window.__dsa.players[node.id] = { received: p.received, buffered: p.frames.length, total: p.total,
                                    fps: p.fps, firstFrameS: p.firstFrameS, log: p.log.slice(-PLAYER_LOG) };
}

function endPlayer(node) {
  const p = node.__dsaPlayer;
  if (!p) return;
  p.done = true;
  publishPlayer(node);
}

app.registerExtension({
  name: `${EXT}.steps`,
  async nodeCreated(node) {
    if (LOADER_TYPES.has(node.comfyClass)) wireLoader(node);
    if (!DSA_NODES.has(node.comfyClass)) return;
    addPlayer(node);
    addChart(node);
    wirePresets(node);
    wireExpected(node);
    growToFit(node);
  },
  loadedGraphNode(node) {
    if (DSA_NODES.has(node.comfyClass)) refreshExpected(node);
  },
  async setup() {
    api.addEventListener("dsa.frames", ({ detail }) => onFrames(detail));
    api.addEventListener("dsa.steps", ({ detail }) => {
      logEvent(detail);
      const node = nodeFor(detail);
      if (!node) return;
      const st = chartState(node);
      if (detail.done) {
        endPlayer(node);
        st.summary = detail.report?.summary || "";
        st.report = detail.report || null;
      } else {
        if (detail.chunk === 0) {
          st.chunks = [];
          st.summary = "";
          st.report = null;
        }
        st.chunks[detail.chunk] = detail.record;
        st.threshold = detail.threshold;
        st.baseSteps = detail.base_steps;
        st.policy = detail.policy;
        st.budget = detail.budget ?? null;
        if (detail.expected) st.expected = detail.expected;
      }
      draw(node);
      node.setDirtyCanvas?.(true, true);
    });
  },
});
