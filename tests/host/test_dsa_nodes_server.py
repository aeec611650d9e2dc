"""The DSA graph through a real ComfyUI server (tier b): HTTP, websocket progress, interrupt, node errors."""

import json

import pytest
from graphs import dsa_graph
from server_host import PromptRejected
from testdata import write_head


@pytest.fixture(scope="module")
def bad_files(tiny_models, models_dir):
    dm = models_dir / "diffusion_models"
    good = dm / tiny_models["wan_with_head"]
    truncated = dm / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    head_as_generator = dm / "head_in_wrong_folder.safetensors"
    write_head(head_as_generator)
    return {"truncated": truncated.name, "head_as_generator": head_as_generator.name}


def test_dsa_graph_over_http_with_progress_and_step_events(server_host, tiny_models):
    ws = server_host.websocket()
    try:
        g = dsa_graph(
            tiny_models["wan_with_head"], tiny_models["prompt_a"], tiny_models["prompt_b"], length=21, add_frames=12
        )
        pid = server_host.queue(g, ws.client_id)
        assert ws.wait_prompt_end(pid, timeout=180) == "success"
        progress_nodes = {e["data"]["node"] for e in ws.of_type("progress", pid)}
        assert {"3", "5"} <= progress_nodes
        steps = [e["data"] for e in ws.events if e["type"] == "dsa.steps" and "chunk" in e["data"]]
        assert [(d["node"], d["chunk"]) for d in steps] == [("3", 0), ("3", 1), ("5", 0)]
        assert all(d["record"]["steps"] >= 1 for d in steps)
        reports = [e["data"] for e in ws.events if e["type"] == "dsa.report"]
        assert {r["node"] for r in reports} == {"6", "8"}
        executed = {e["data"]["node"]: e["data"]["output"] for e in ws.of_type("executed", pid)}
        assert "steps/frame" in executed["6"]["text"][0]
    finally:
        ws.close()
    assert server_host.wait_history(pid)["status"]["status_str"] == "success"


def test_interrupt_during_sampling_then_next_prompt_succeeds(server_host, tiny_models):
    ws = server_host.websocket()
    try:
        long = dsa_graph(
            tiny_models["wan_with_head"],
            tiny_models["prompt_a"],
            extend=False,
            width=512,
            height=512,
            length=4 * 3 * 40 - 3,
            policy="fixed",
            max_steps=6,
        )
        pid = server_host.queue(long, ws.client_id)
        ws.recv_until(lambda e: e["type"] == "progress" and e["data"].get("node") == "3", timeout=120)
        server_host.interrupt()
        assert ws.wait_prompt_end(pid, timeout=120) == "interrupted"
        chunks_done = [
            e for e in ws.events if e["type"] == "dsa.steps" and e["data"].get("node") == "3" and "chunk" in e["data"]
        ]
        assert len(chunks_done) < 40
        pid2 = server_host.queue(
            dsa_graph(tiny_models["wan_with_head"], tiny_models["prompt_b"], extend=False), ws.client_id
        )
        assert ws.wait_prompt_end(pid2, timeout=120) == "success"
    finally:
        ws.close()


@pytest.mark.parametrize(
    "case, fragment",
    [
        ("truncated", "truncated"),
        ("head_as_generator", "confidence-head file"),
    ],
)
def test_bad_files_are_node_errors_from_prompt(server_host, tiny_models, bad_files, case, fragment):
    g = dsa_graph(bad_files[case], tiny_models["prompt_a"], extend=False)
    with pytest.raises(PromptRejected) as e:
        server_host.queue(g, "tests")
    errors = e.value.body["node_errors"]
    assert "1" in errors and fragment in json.dumps(errors["1"])
