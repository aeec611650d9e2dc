"""DSA Live through a real ComfyUI server: the toy model plays while the test, as the GUI does, posts two prompt
changes and a threshold change to the pack's routes, reads the run's state as a second client would, and stops
it after 250 chunks; the server's memory stays flat over those chunks (rolling cache window), each change took
effect at the chunk after its request, the frames come back, and the stopped run's state feeds an extender."""

import json
import os
import urllib.error

from test_live_inprocess import extend_the_stopped_state, live_graph

CHUNKS = 250


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS")


def post(server_host, path, body):
    try:
        return server_host.request(path, body, method="POST")[0], None
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_live_run_steered_over_http(server_host):
    g = live_graph(seed=7)
    extend_the_stopped_state(g)
    ws = server_host.websocket()
    pid = server_host.queue(g, ws.client_id)
    requested = {}
    rss = {}

    def chunk_reached(n):
        def pred(e):
            return e["type"] == "dsa.steps" and e["data"].get("node") == "3" and e["data"].get("chunk", -1) >= n

        ws.recv_until(pred, timeout=300)
        return max(e["data"]["chunk"] for e in ws.events if e["type"] == "dsa.steps" and "chunk" in e["data"])

    try:
        requested["prompt1"] = chunk_reached(3)
        assert post(server_host, "/dsa/live/3/prompt", {"text": "cyan disc drifting up on grey"})[0] == 200
        requested["threshold"] = chunk_reached(6)
        assert post(server_host, "/dsa/live/3/threshold", {"value": 0.9})[0] == 200
        requested["prompt2"] = chunk_reached(9)
        assert post(server_host, "/dsa/live/3/prompt", {"text": "Red square drifting right on black"})[0] == 200
        # refused requests: one message each, the run goes on
        code, body = post(server_host, "/dsa/live/3/prompt", {"text": "a purple elephant"})
        assert code == 400 and "stored prompts" in body["error"]
        code, body = post(server_host, "/dsa/live/3/threshold", {"value": 7})
        assert code == 400 and "[0, 1]" in body["error"]
        chunk_reached(50)
        rss[50] = rss_mib(server_host.proc.pid)
        # a second client (another tab, a page loaded late) sees where the run stands
        snap = server_host.get_json("/dsa/live/3")
        assert snap["running"] and snap["chunks_done"] >= 50 and snap["threshold"] == 0.9
        assert [c["kind"] for c in snap["changes"]] == ["prompt", "threshold", "prompt"]
        assert snap["prompt"] == "Red square drifting right on black"
        assert snap["frames"] and snap["frames"][-1]["url"].startswith("data:image/jpeg")
        assert snap["chunks"][-1]["chunk"] == snap["chunks_done"] - 1
        chunk_reached(150)
        rss[150] = rss_mib(server_host.proc.pid)
        chunk_reached(CHUNKS)
        rss[CHUNKS] = rss_mib(server_host.proc.pid)
        assert post(server_host, "/dsa/live/3/stop", {})[0] == 200
        assert ws.wait_prompt_end(pid, timeout=300) == "success"
    finally:
        ws.close()
    changes = [e["data"]["change"] for e in ws.events if e["type"] == "dsa.live" and "change" in e["data"]]
    assert [c["kind"] for c in changes] == ["prompt", "threshold", "prompt"]
    # each change takes effect at the next chunk boundary after its request: the chunk the request saw done + 1,
    # or one later when the request arrived while that chunk was already being denoised
    for c, key in zip(changes, ("prompt1", "threshold", "prompt2")):
        assert requested[key] + 1 <= c["chunk"] <= requested[key] + 2, (c, requested)
    done = next(e["data"]["report"] for e in ws.events if e["type"] == "dsa.steps" and e["data"].get("done"))
    n = done["live"]["chunks"]
    assert done["live"]["stop_reason"] == "stopped" and n >= CHUNKS
    assert [c["chunk"] for c in done["live"]["changes"]] == [c["chunk"] for c in changes]
    # memory: flat over 200 chunks (the video kept for the outputs grows by ~7 KB per chunk at this size)
    assert rss[CHUNKS] - rss[50] < 24, rss
    history = server_host.wait_history(pid)
    assert history["status"]["status_str"] == "success"
    assert len(history["outputs"]["4"]["images"]) == 3 * n  # the live run's frames
    assert len(history["outputs"]["6"]["images"]) == 3 * n + 6  # the extender continued its state
    snap = server_host.get_json("/dsa/live/3")
    assert not snap["running"] and snap["stop_reason"] == "stopped" and snap["chunks_done"] == n
    code, body = post(server_host, "/dsa/live/3/prompt", {"text": "red square drifting right on black"})
    assert code == 400 and "has ended" in body["error"]
    print(f"live server RSS MiB at chunks 50/150/{CHUNKS}: {rss}; pid {os.getpid()}")
