"""What the GUI sees of and sends to a running DSA Live node: one LiveSession per live node, its HTTP routes.

The node runs in the host's executor thread; the routes run in the server's event loop. They meet in a
LiveSession: the routes put requests into its dsa_core.live.LiveControls (read by the loop at chunk boundaries)
and read a snapshot of where the run stands (for a second browser tab or a page loaded late), which the loop
updates after every chunk under the session's lock. A finished run's session stays (until the node runs again),
so a page loaded after the run still shows it.

Routes (the pack's own, nodes/routes.py registers them):
  GET  /dsa/live/{node}          the snapshot ({"ran": false} when the node never ran live in this server)
  POST /dsa/live/{node}/prompt   {"text": ...}: a new prompt from the next chunk on (400 with a message when it
                                 cannot be used: no text encoder and no stored prompt of that name)
  POST /dsa/live/{node}/threshold {"value": 0..1}
  POST /dsa/live/{node}/stop     end the run at the next chunk boundary (its outputs are returned as usual)
"""

from __future__ import annotations

import collections
import threading
import time

from ..dsa_core.live import LiveControls

SNAPSHOT_CHUNKS = 400  # chunk records a snapshot keeps (the chart of a long run shows its latest ones)
SNAPSHOT_FRAMES = 120  # preview frames a snapshot keeps (what the live player buffers)

_sessions: dict[str, "LiveSession"] = {}
_lock = threading.Lock()


class LiveRefused(ValueError):
    """A request a running session cannot take (the message says why and what to do)."""


class LiveSession:
    def __init__(self, node_id: str, *, prompt: str, threshold, has_threshold: bool, resolve_prompt, frame_rate):
        self.node_id = str(node_id)
        self.controls = LiveControls()
        self.resolve_prompt = resolve_prompt  # text -> payload for the loop's encode_prompt; raises LiveRefused
        self.has_threshold = has_threshold
        self._lock = threading.Lock()
        self._chunks = collections.deque(maxlen=SNAPSHOT_CHUNKS)  # (chunk index, dsa.steps-style record)
        self._frames = collections.deque(maxlen=SNAPSHOT_FRAMES)  # (video frame index, JPEG data URL)
        self._state = {
            "node": self.node_id,
            "running": True,
            "chunks_done": 0,
            "frames_done": 0,
            "prompt": prompt,
            "threshold": threshold,
            "changes": [],
            "stop_reason": None,
            "frame_rate": frame_rate,
            "width": None,
            "height": None,
            "started": time.time(),
        }

    # ---- the loop's side ----------------------------------------------------------------------------------
    def chunk_done(self, chunk: int, record: dict, frames: int) -> None:
        with self._lock:
            self._chunks.append((chunk, record))
            self._state["chunks_done"] = chunk + 1
            self._state["frames_done"] = frames

    def frames_sent(self, data: dict) -> None:
        with self._lock:
            for i, url in enumerate(data.get("frames") or []):
                self._frames.append((data["frame_start"] + i, url))
            self._state.update(width=data.get("width"), height=data.get("height"))
            self._state["frame_rate"] = data.get("frame_rate") or self._state["frame_rate"]

    def changed(self, change: dict) -> None:
        with self._lock:
            self._state["changes"].append(change)
            self._state[change["kind"]] = change["value"]

    def finished(self, stop_reason: str | None) -> None:
        with self._lock:
            self._state.update(running=False, stop_reason=stop_reason)

    # ---- the GUI's side -----------------------------------------------------------------------------------
    def snapshot(self) -> dict:
        with self._lock:
            snap = dict(self._state, changes=list(self._state["changes"]))
            snap["chunks"] = [{"chunk": c, "record": r} for c, r in self._chunks]
            snap["frames"] = [{"index": i, "url": u} for i, u in self._frames]
        return snap

    def request_prompt(self, text: str) -> None:
        if not self._state["running"]:
            raise LiveRefused("this live run has ended: queue the graph to start a new one")
        text = (text or "").strip()
        if not text:
            raise LiveRefused("the prompt is empty: type what the video should show")
        self.controls.change_prompt(text, self.resolve_prompt(text))

    def request_threshold(self, value) -> None:
        if not self._state["running"]:
            raise LiveRefused("this live run has ended: queue the graph to start a new one")
        if not self.has_threshold:
            raise LiveRefused("this run's policy is fixed (no threshold): choose policy confidence or heuristic")
        try:
            self.controls.change_threshold(float(value))
        except (TypeError, ValueError) as e:
            raise LiveRefused(f"the threshold must be a number in [0, 1]: {e}") from None

    def request_stop(self) -> None:
        self.controls.stop()


def open_session(node_id, **kwargs) -> LiveSession:
    """A new session for ``node_id`` (a running one of the same node is asked to stop first)."""
    with _lock:
        old = _sessions.get(str(node_id))
        if old is not None:
            old.request_stop()
        session = _sessions[str(node_id)] = LiveSession(node_id, **kwargs)
    return session


def get_session(node_id) -> LiveSession | None:
    with _lock:
        return _sessions.get(str(node_id))


def register_routes(routes, web) -> None:
    """The live routes on the host's route table (``web``: aiohttp.web)."""

    def _session(request):
        s = get_session(request.match_info["node"])
        if s is None:
            raise web.HTTPNotFound(text="no live run of this node in this server: queue the graph first")
        return s

    async def _json(request) -> dict:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text="send a JSON object")
        return body

    def _refused(e: Exception):
        return web.json_response({"error": str(e)}, status=400)

    @routes.get("/dsa/live/{node}")
    async def live_state(request):
        s = get_session(request.match_info["node"])
        if s is None:  # a page asks for every live node it shows: not having run is an answer, not an error
            return web.json_response({"node": request.match_info["node"], "ran": False, "running": False})
        return web.json_response({**s.snapshot(), "ran": True})

    @routes.post("/dsa/live/{node}/prompt")
    async def live_prompt(request):
        s, body = _session(request), await _json(request)
        try:
            s.request_prompt(str(body.get("text", "")))
        except LiveRefused as e:
            return _refused(e)
        return web.json_response({"ok": True})

    @routes.post("/dsa/live/{node}/threshold")
    async def live_threshold(request):
        s, body = _session(request), await _json(request)
        try:
            s.request_threshold(body.get("value"))
        except LiveRefused as e:
            return _refused(e)
        return web.json_response({"ok": True})

    @routes.post("/dsa/live/{node}/stop")
    async def live_stop(request):
        _session(request).request_stop()
        return web.json_response({"ok": True})
