// ComfyUI-DSA front end: the DSA Live node's controls (its live player and step chart come from dsa.js).
// While a live run plays: "apply prompt" sends the text typed in live_prompt, a threshold move is sent as it is
// made, "stop" ends the run at the next chunk (its outputs come back as for any run). Requests go to the pack's
// routes (/dsa/live/<node>/...); the server answers a request it cannot take with a message, shown on the node.
// Each prompt or threshold change is marked on the chart at the chunk it took effect at. A page opened (or
// reloaded) while a run plays, or after it, asks /dsa/live/<node> where it stands and shows it.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const LIVE_CLASS = "DSALive";
const MARK_COLOURS = { prompt: "#f0d24a", threshold: "#f05a5a" };

function liveState(node) {
  if (!node.__dsaLive) node.__dsaLive = { running: false, changes: [], message: "", chunks: 0 };
  return node.__dsaLive;
}

function publishLive(node) {
  const s = liveState(node);
  window.__dsa.live = window.__dsa.live || {};
  window.__dsa.live[node.id] = { running: s.running, changes: s.changes.slice(), message: s.message,
                                 chunks: s.chunks, marks: s.marks || 0 };
}

async function send(node, what, body) {
  const s = liveState(node);
  const r = await api.fetchApi(`/dsa/live/${node.id}/${what}`, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const answer = await r.json().catch(() => ({}));
  s.message = r.ok ? `${what} sent: takes effect at the next chunk` : answer.error || r.statusText;
  s.lastStatus = r.status;
  publishLive(node);
  drawMarks(node);
  return r.ok;
}

// The chart's own geometry (dsa.js draws bars in columns of equal width between these paddings).
function drawMarks(node) {
  const canvas = node.__dsaCanvas;
  const s = liveState(node);
  if (!canvas || !s.chunks) return;
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, padL = 26, padR = 6;
  const col = (W - padL - padR) / s.chunks;
  let marks = 0;
  for (const c of s.changes) {
    if (c.chunk >= s.chunks) continue;
    const x = Math.round(padL + c.chunk * col) + 0.5;
    ctx.strokeStyle = MARK_COLOURS[c.kind] || "#fff";
    ctx.setLineDash([2, 2]);
    ctx.beginPath(); ctx.moveTo(x, 14); ctx.lineTo(x, H - 2); ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = MARK_COLOURS[c.kind] || "#fff";
    ctx.font = "9px sans-serif";
    ctx.fillText(c.kind === "prompt" ? "P" : "T", x + 2, 22);
    marks += 1;
  }
  if (s.message) {
    ctx.fillStyle = s.lastStatus && s.lastStatus >= 400 ? "#f08080" : "#9c9";
    ctx.font = "9px sans-serif";
    ctx.fillText(s.message.slice(0, 70), 4, H - 3);
  }
  s.marks = marks;
  publishLive(node);
}

function liveNodes() {
  return (app.graph?._nodes || []).filter((n) => n.comfyClass === LIVE_CLASS);
}

function nodeFor(detail) {
  return app.graph?.getNodeById?.(Number(detail.node)) ?? app.graph?.getNodeById?.(detail.node);
}

function addControls(node) {
  liveState(node);
  const prompt = node.widgets?.find((w) => w.name === "live_prompt");
  // buttons are controls, not inputs: never in the prompt or the saved workflow's widget values
  const button = (label, onClick) => {
    const w = node.addWidget("button", label, null, onClick, { serialize: false });
    w.serialize = false;
    return w;
  };
  button("apply prompt", () => {
    const text = String(prompt?.value ?? "").trim();
    if (!text) { liveState(node).message = "type a prompt in live_prompt first"; drawMarks(node); return; }
    send(node, "prompt", { text });
  });
  button("stop", () => send(node, "stop", {}));
  const thr = node.widgets?.find((w) => w.name === "threshold");
  if (thr) {
    let timer = null;
    const onThr = thr.callback;
    thr.callback = function (value, ...rest) {
      const out = onThr?.call(this, value, ...rest);
      if (liveState(node).running) {
        clearTimeout(timer);
        timer = setTimeout(() => send(node, "threshold", { value: thr.value }), 250);
      }
      return out;
    };
  }
  publishLive(node);
}

// A page that was not there when the run started: replay the run's state through the same events dsa.js draws.
async function catchUp(node) {
  const r = await api.fetchApi(`/dsa/live/${node.id}`);
  if (!r.ok) return;
  const snap = await r.json();
  if (!snap.ran) return;
  const s = liveState(node);
  s.running = snap.running;
  // the snapshot keeps a long run's latest chunks: the chart starts at the first one it has
  const offset = snap.chunks?.length ? snap.chunks[0].chunk : 0;
  s.changes = (snap.changes || []).filter((c) => c.chunk >= offset).map((c) => ({ ...c, chunk: c.chunk - offset }));
  for (const c of snap.chunks || []) {
    api.dispatchEvent(new CustomEvent("dsa.steps", { detail: {
      node: snap.node, chunk: c.chunk - offset, record: c.record, threshold: snap.threshold, base_steps: 4,
      policy: "", live: true, changes: [], replay: true,
    } }));
  }
  const frames = snap.frames || [];
  if (frames.length) {
    api.dispatchEvent(new CustomEvent("dsa.frames", { detail: {
      node: snap.node, chunk: null, frame_start: frames[0].index, frames: frames.map((f) => f.url),
      frame_rate: snap.frame_rate, total_frames: 0, width: snap.width, height: snap.height, first_frame_s: null,
    } }));
  }
  s.chunks = (snap.chunks || []).length;
  s.caughtUp = true;
  drawMarks(node);
}

app.registerExtension({
  name: "comfyui-dsa.live",
  async nodeCreated(node) {
    if (node.comfyClass !== LIVE_CLASS) return;
    addControls(node);
    window.__dsa.growToFit(node); // the controls came after dsa.js sized the node: grow to fit them too
  },
  async afterConfigureGraph() {
    for (const node of liveNodes()) catchUp(node).catch(() => {});
  },
  async setup() {
    api.addEventListener("dsa.steps", ({ detail }) => {
      if (!detail.live) return;
      const node = nodeFor(detail);
      if (!node) return;
      const s = liveState(node);
      if (detail.done) {
        s.running = false;
        s.message = `stopped (${detail.report?.live?.stop_reason || "done"})`;
      } else {
        if (detail.chunk === 0 && !detail.replay) { s.changes = []; s.message = ""; }
        s.running = !detail.replay || s.running;
        s.chunks = Math.max(detail.chunk + 1, detail.chunk === 0 ? 1 : s.chunks);
        for (const c of detail.changes || []) {
          if (!s.changes.some((x) => x.chunk === c.chunk && x.kind === c.kind)) s.changes.push(c);
        }
      }
      // after dsa.js has redrawn the chart for this event
      requestAnimationFrame(() => drawMarks(node));
      publishLive(node);
    });
    api.addEventListener("dsa.live", ({ detail }) => {
      const node = nodeFor(detail);
      if (!node) return;
      const s = liveState(node);
      if (detail.change) s.message = `${detail.change.kind} changed at chunk ${detail.change.chunk}`;
      if (detail.done) s.running = false;
      publishLive(node);
    });
  },
});
