"""DSA Live inside the real host (in-process): the bundled toy model plays chunk after chunk; requests made while
it runs (from another thread, as the HTTP routes make them) take effect at chunk boundaries and are recorded; the
frame limit ends a run by itself; the stopped run's outputs are a video, a state an extender continues, a report.
The same through a real server and its routes: tests/host/test_live_server.py."""

import threading
import time

import pytest
import torch

TOY = "dsa_toy_wan.safetensors"
HEAD_AUTO = "auto (embedded in the generator file, else none)"
MAGENTA = "toy_magenta_square_sitting_still_on_black.safetensors"


def live_graph(**widgets) -> dict:
    w = {
        "seed": 4,
        "width": 64,
        "height": 64,
        "frames_per_chunk": 3,
        "max_frames": 0,
        "policy": "confidence",
        "threshold_preset": "custom",
        "threshold": 0.5,
        "min_steps": 1,
        "max_steps": 6,
        "schedule": "self_forcing",
        "cache_window": 6,
        "sink_frames": 0,
        "recache": "none",
        "live_prompt": "",
        **widgets,
    }
    return {
        "1": {
            "class_type": "DSAModelLoader",
            "inputs": {"generator": TOY, "head": HEAD_AUTO, "weight_dtype": "default"},
        },
        "2": {"class_type": "DSAPromptEmbedding", "inputs": {"embedding": MAGENTA}},
        "10": {"class_type": "DSAToyVAE", "inputs": {"scale": 2}},
        "3": {
            "class_type": "DSALive",
            "inputs": {"model": ["1", 0], "positive": ["2", 0], "head": ["1", 1], "vae": ["10", 0], **w},
        },
        "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 3]}},
    }


def live_module():
    import sys

    return sys.modules[next(m for m in sys.modules if m.endswith(".nodes.live_session"))]


def extend_the_stopped_state(g: dict) -> dict:
    """An extender (node 5, previewed by node 6) continuing the live node's state by 24 frames, fixed 4 steps."""
    g["5"] = {
        "class_type": "DSAExtend",
        "inputs": {
            "model": ["1", 0],
            "positive": ["2", 0],
            "seed": 1,
            "add_frames": 24,
            "frames_per_chunk": 3,
            "policy": "fixed",
            "threshold_preset": "balanced",
            "threshold": 0.5,
            "min_steps": 1,
            "max_steps": 4,
            "schedule": "self_forcing",
            "cache_window": 0,
            "sink_frames": 0,
            "recache": "none",
            "state": ["3", 1],
            "vae": ["10", 0],
        },
    }
    g["6"] = {"class_type": "PreviewImage", "inputs": {"images": ["5", 3]}}
    return g


def steer(node_id: str, actions: list, timeout=120.0):
    """A thread that waits for the node's session to reach each (chunks_done, action) and then acts, as the
    GUI's requests do; returns (thread, errors)."""
    errors = []

    def go():
        ls = live_module()
        deadline = time.time() + timeout
        try:
            for at, act in actions:
                while True:
                    s = ls.get_session(node_id)
                    if s is not None and s.snapshot()["running"] and s.snapshot()["chunks_done"] >= at:
                        break
                    if time.time() > deadline:
                        raise TimeoutError(f"the live run never reached chunk {at}")
                    time.sleep(0.005)
                act(s)
        except Exception as e:  # noqa: BLE001  (reported by the test)
            errors.append(e)

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t, errors


@pytest.fixture
def fresh_node_id():
    """A node id no earlier test used (sessions are kept per node id)."""
    fresh_node_id.n = getattr(fresh_node_id, "n", 100) + 1
    return str(fresh_node_id.n)


def test_frame_limit_ends_the_run_with_the_whole_video(inprocess_host):
    g = live_graph(max_frames=4 * 3 * 5 - 3)  # 15 latent frames = 5 chunks of 3
    res = inprocess_host.run(g)
    assert res.success, res.error()
    latent, state, report, images = (
        res.outputs["3"][0][0],
        res.outputs["3"][1][0],
        res.outputs["3"][2][0],
        res.outputs["3"][3][0],
    )
    assert latent["samples"].shape[2] == 15 and state.state.frames == 15
    assert images.shape == (15, 16, 16, 3)  # the toy codec: one frame per latent frame, 8x8 latent at scale 2
    assert report["live"] == {"stop_reason": "frame_limit", "changes": [], "chunks": 5}
    steps = [d for e, d in res.events if e == "dsa.steps" and "chunk" in d]
    assert [d["chunk"] for d in steps] == list(range(5)) and all(d["live"] for d in steps)
    frames = [d for e, d in res.events if e == "dsa.frames"]
    assert sum(len(d["frames"]) for d in frames) == 15
    assert state.state.cache.window_frames == 6  # the rolling window: flat memory


def test_changes_take_effect_at_chunk_boundaries_and_stop_returns_the_video(inprocess_host):
    """Prompt, threshold and a second prompt requested while it runs (from another thread), then Stop: each change
    is recorded at the chunk it took effect at, the chunk records follow the threshold, the prompt change changes
    the picture (a grey background), and the outputs hold every chunk made."""
    g = live_graph()
    t, errors = steer(
        "3",
        [
            (3, lambda s: s.request_prompt("cyan disc drifting up on grey")),
            (6, lambda s: s.request_threshold(0.9)),
            (9, lambda s: s.request_prompt("red square drifting right on black")),
            (14, lambda s: s.request_stop()),
        ],
    )
    res = inprocess_host.run(g)
    t.join(30)
    assert not errors, errors
    assert res.success, res.error()
    report = res.outputs["3"][2][0]
    live = report["live"]
    assert live["stop_reason"] == "stopped"
    kinds = [(c["kind"], c["value"]) for c in live["changes"]]
    assert kinds == [
        ("prompt", "cyan disc drifting up on grey"),
        ("threshold", 0.9),
        ("prompt", "red square drifting right on black"),
    ]
    at = [c["chunk"] for c in live["changes"]]
    assert at[0] >= 3 and at[1] >= 6 and at[2] >= 9 and at == sorted(at)
    n = live["chunks"]
    assert n >= 14 and len(report["chunks"]) == n
    images = res.outputs["3"][3][0]
    assert images.shape[0] == 3 * n and res.outputs["3"][0][0]["samples"].shape[2] == 3 * n
    # the threshold in effect: chunks after the change to 0.9 stop only when confident to 0.9 (or at max_steps)
    for rec in report["chunks"][at[1] :]:
        assert rec["stop_reason"] == "max_steps" or rec["confidence"][-1] >= 0.9
    # a grey background after the switch to "on grey", black again after "on black"
    bright = images.mean(dim=(1, 2, 3))
    before, grey = bright[: 3 * at[0]].mean(), bright[3 * (at[0] + 2) : 3 * at[2]].mean()
    assert grey > before + 0.1, (before, grey)
    # the steps events carry each change at its chunk (the chart's marks)
    marks = {d["chunk"]: d["changes"] for e, d in res.events if e == "dsa.steps" and "chunk" in d}
    assert [c["kind"] for k in sorted(marks) for c in marks[k]] == ["prompt", "threshold", "prompt"]


def test_stopped_state_feeds_the_extender(inprocess_host):
    g = live_graph()
    extend_the_stopped_state(g)
    t, errors = steer("3", [(4, lambda s: s.request_stop())])
    res = inprocess_host.run(g)
    t.join(30)
    assert not errors and res.success, (errors, res.error())
    n = res.outputs["3"][2][0]["live"]["chunks"]
    live_images, ext_images = res.outputs["3"][3][0], res.outputs["5"][3][0]
    assert ext_images.shape[0] == 3 * n + 6  # the whole video: the live run's frames, then 2 more chunks
    assert torch.equal(ext_images[: 3 * n], live_images)  # continued, not decoded again
    ext_state = res.outputs["5"][1][0].state
    assert ext_state.frames == 3 * n + 6 and ext_state.cache.window_frames == 6  # the live run's rolling cache


def test_refused_requests_say_why(inprocess_host):
    """Requests a run cannot take are refused with a message and change nothing: a name that is no stored prompt
    (no text encoder connected), a threshold for a fixed policy, anything after the run ended."""
    ls = live_module()
    g = live_graph(policy="fixed", max_frames=4 * 3 * 40 - 3)
    seen = {}

    def probe(s):
        for key, call in (
            ("prompt", lambda: s.request_prompt("a purple elephant")),
            ("threshold", lambda: s.request_threshold(0.3)),
        ):
            try:
                call()
            except ls.LiveRefused as e:
                seen[key] = str(e)
        s.request_stop()

    t, errors = steer("3", [(1, probe)])
    res = inprocess_host.run(g)
    t.join(30)
    assert not errors and res.success, (errors, res.error())
    assert "stored prompts" in seen["prompt"] and "a red square drifting right on black" in seen["prompt"]
    assert "clip input" in seen["prompt"]
    assert "policy is fixed" in seen["threshold"]
    assert res.outputs["3"][2][0]["live"]["changes"] == []
    with pytest.raises(ls.LiveRefused, match="has ended"):
        ls.get_session("3").request_prompt("red square drifting right on black")


def test_live_needs_a_rolling_window(inprocess_host):
    g = live_graph(cache_window=0)
    with pytest.raises(AssertionError, match="cache_window"):
        inprocess_host.run(g)


def test_cancel_interrupts_a_live_run(inprocess_host):
    """ComfyUI's Cancel (the host's interrupt) stops a live run inside its chunk, as for any node: no outputs, and
    the session says it was cancelled, so a page loaded later does not show it as still playing."""
    import comfy.model_management as mm

    t, errors = steer("3", [(2, lambda s: mm.interrupt_current_processing(True))])
    try:
        res = inprocess_host.run(live_graph(seed=11))
    finally:
        mm.interrupt_current_processing(False)
    t.join(30)
    assert not errors, errors
    assert not res.success
    snap = live_module().get_session("3").snapshot()
    assert snap["running"] is False and snap["stop_reason"] == "cancelled" and snap["chunks_done"] >= 2
