// ComfyUI-DSA front-end extension.
// On the DSA Confidence Sampler and AR Frame Extender nodes: a live chart of where the denoising steps went
// (steps per chunk, confidence after each step, the threshold), updated per chunk from the server's "dsa.steps"
// events, with a summary line when the run ends; and threshold presets that set the one 0..1 threshold.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const EXT = "comfyui-dsa";
const DSA_NODES = new Set(["DSASampler", "DSAExtend"]);
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

window.__dsa = { loaded: true, events: [], charts: {} };

function chartState(node) {
  if (!node.__dsa) node.__dsa = { chunks: [], threshold: null, baseSteps: 4, summary: "", policy: "" };
  return node.__dsa;
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
  if (!n) return;
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
  window.__dsa.charts[node.id] = { chunks: n, summary: st.summary };
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

app.registerExtension({
  name: `${EXT}.steps`,
  async nodeCreated(node) {
    if (!DSA_NODES.has(node.comfyClass)) return;
    addChart(node);
    wirePresets(node);
  },
  async setup() {
    api.addEventListener("dsa.steps", ({ detail }) => {
      window.__dsa.events.push(detail);
      const node = nodeFor(detail);
      if (!node) return;
      const st = chartState(node);
      if (detail.done) {
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
