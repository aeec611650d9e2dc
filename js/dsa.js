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
const COLOURS = { confident: "#50c878", max_steps: "#eb963c", fixed: "#6e96f0" };
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
  const notes = patchNotes(r);
  window.__dsa.charts[node.id] = { chunks: n, summary: st.summary, notes };
  if (!n) return drawNotes(ctx, notes, W, H);
  const maxSteps = Math.max(st.baseSteps, ...st.chunks.map((c) => c.steps));
  const col = (W - padL - padR) / n;
  // steps per chunk
  const t0 = 16, b0 = mid - 4;
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

function addChart(node) {
  const canvas = document.createElement("canvas");
  canvas.width = 300;
  canvas.height = 140;
  canvas.className = "dsa-step-chart";
  canvas.title = "Where the steps went: bars = steps per chunk (dashed = fixed schedule), lines = confidence after each step, red = threshold. " + THRESHOLD_HELP;
  canvas.style.width = "100%";
  node.__dsaCanvas = canvas;
  if (node.addDOMWidget) {
    node.addDOMWidget("dsa_chart", "dsa_chart", canvas, { serialize: false, hideOnZoom: false });
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
    if (value in PRESETS && thr.value !== PRESETS[value]) setLikeUser(thr, PRESETS[value]);
    chartState(node).threshold = thr.value;
    draw(node);
    return onPreset?.call(this, value, ...rest);
  };
  const onThr = thr.callback;
  thr.callback = function (value, ...rest) {
    if (preset.value !== "custom" && PRESETS[preset.value] !== value) setLikeUser(preset, "custom");
    chartState(node).threshold = value;
    draw(node);
    return onThr?.call(this, value, ...rest);
  };
  presetsReady.then(() => {
    if (preset.value in PRESETS) thr.value = PRESETS[preset.value];
  });
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
    node.addDOMWidget("dsa_player", "dsa_player", canvas, { serialize: false, hideOnZoom: false });
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
    if (!DSA_NODES.has(node.comfyClass)) return;
    addPlayer(node);
    addChart(node);
    wirePresets(node);
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
      }
      draw(node);
      node.setDirtyCanvas?.(true, true);
    });
  },
});
