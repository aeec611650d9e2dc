"""Tier (b): a real ComfyUI server with the pack loaded, driven over HTTP and the websocket."""

import json

import pytest
from graphs import host_ksampler_graph, ladder_graph
from host_events import assert_progress_reaches
from server_host import PackImportError, PromptRejected, ServerHost, pack_import_problems

PACK = "ComfyUI-DSA"


def test_pack_nodes_in_object_info(server_host):
    info = server_host.object_info
    mine = {k: v for k, v in info.items() if v["python_module"] == f"custom_nodes.{PACK}"}
    assert {"DSANoiseLadder", "DSAPromptEmbedding"} <= set(mine)
    for node_id, spec in mine.items():
        for section in ("required", "optional"):
            for name, (typ, *opts) in spec["input"].get(section, {}).items():
                assert opts and opts[0].get("tooltip"), f"{node_id}.{name} has no tooltip"


def test_front_end_extension_served(server_host):
    exts = server_host.get_json("/extensions")
    assert f"/extensions/{PACK}/dsa.js" in exts
    status, body = server_host.request(f"/extensions/{PACK}/dsa.js")
    assert status == 200 and b"registerExtension" in body


def test_ladder_prompt_over_http(server_host):
    ws = server_host.websocket()
    try:
        pid = server_host.queue(ladder_graph("causvid"), ws.client_id)
        assert ws.wait_prompt_end(pid) == "success"
        executed = ws.of_type("executed", pid)
        assert executed and executed[-1]["data"]["node"] == "2"
        text = executed[-1]["data"]["output"]["text"][0]
        assert "causvid: 3 levels" in text
    finally:
        ws.close()
    hist = server_host.wait_history(pid)
    assert hist["status"]["status_str"] == "success"


def test_invalid_prompt_rejected_with_node_error(server_host):
    with pytest.raises(PromptRejected) as e:
        server_host.queue(ladder_graph("custom", custom="1000, abc"), "tests")
    assert "could not read the ladder" in json.dumps(e.value.body["node_errors"]["1"])


def test_sampling_streams_progress_over_websocket(server_host, tiny_models):
    ws = server_host.websocket()
    try:
        pid = server_host.queue(host_ksampler_graph(tiny_models["wan"], tiny_models["prompt_a"], steps=4), ws.client_id)
        assert ws.wait_prompt_end(pid) == "success"
        assert_progress_reaches([e["data"] for e in ws.of_type("progress", pid)], 4)
        kinds = [e["type"] for e in ws.events if e.get("data", {}).get("prompt_id") == pid]
        assert kinds[0] == "execution_start" and "executing" in kinds
    finally:
        ws.close()


def test_interrupt_mid_run_then_next_prompt_succeeds(server_host, tiny_models):
    ws = server_host.websocket()
    try:
        long = host_ksampler_graph(
            tiny_models["wan"], tiny_models["prompt_a"], steps=5000, width=256, height=256, length=9
        )
        pid = server_host.queue(long, ws.client_id)
        ws.recv_until(lambda e: e["type"] == "progress" and e["data"].get("prompt_id") == pid, timeout=60)
        server_host.interrupt()
        assert ws.wait_prompt_end(pid, timeout=60) == "interrupted"
        done = max(e["data"]["value"] for e in ws.of_type("progress", pid))
        assert done < 5000
        pid2 = server_host.queue(
            host_ksampler_graph(tiny_models["wan"], tiny_models["prompt_b"], steps=2), ws.client_id
        )
        assert ws.wait_prompt_end(pid2) == "success"
    finally:
        ws.close()
    assert server_host.wait_history(pid)["status"]["status_str"] == "error"  # how the host records an interrupt


def test_import_failure_detector_catches_broken_pack(tmp_path):
    """A pack whose import raises: the server starts and exits 0 all the same, the detector must fail it."""
    packs = tmp_path / "packs"
    broken = packs / "BrokenDSA"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('deliberately broken pack')\n")
    host = ServerHost(tmp_path / "srv", packs, "BrokenDSA", slim=True)
    (tmp_path / "srv").mkdir()
    with pytest.raises(PackImportError) as e:
        host.start()
    assert "BrokenDSA" in str(e.value) and "IMPORT FAILED" in str(e.value)


def test_detector_accepts_loaded_pack(server_host):
    assert pack_import_problems(server_host.log(), server_host.object_info, PACK) == []
