"""The example workflows: in sync with the node schemas, listed as templates, and valid against the host."""

import json
import sys
from pathlib import Path

import pytest
from workflow_tools import FRONTEND_ONLY, host_neutral, ui_to_api

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
import make_workflows  # noqa: E402

WORKFLOWS = sorted((REPO / "workflows").glob("*.json"))
PACK_MODULE = "custom_nodes.ComfyUI-DSA"
DEFAULT_HOST_VERSION = "0.3.75"  # the host make_workflows.py is run on (scripts/host.py's default)


def _host_version(server_host) -> str:
    return server_host.get_json("/system_stats")["system"]["comfyui_version"]


def test_every_template_exists():
    assert {p.stem for p in WORKFLOWS} == set(make_workflows.WORKFLOWS)


def test_committed_workflows_are_up_to_date(server_host):
    """The committed files are what make_workflows.py writes (on the default host); on any supported host they
    agree with a rebuild except for what the host version alone decides (see workflow_tools.host_neutral)."""
    info = server_host.object_info
    built = make_workflows.build_all(info)
    for path in WORKFLOWS:
        committed, rebuilt = json.loads(path.read_text()), json.loads(make_workflows.dump(built[path.stem]))
        assert host_neutral(committed, info, PACK_MODULE) == host_neutral(rebuilt, info, PACK_MODULE), (
            f"{path.name} is out of date with the node schemas: run scripts/make_workflows.py"
        )
        if _host_version(server_host) == DEFAULT_HOST_VERSION:
            assert path.read_text() == make_workflows.dump(built[path.stem]), (
                f"{path.name} is not what scripts/make_workflows.py writes: run it with the default host's python "
                "(DSA_HOST_TREE unset)"
            )


def test_templates_listed_by_host(server_host):
    listing = server_host.get_json("/api/workflow_templates")
    assert sorted(listing["ComfyUI-DSA"]) == sorted(p.stem for p in WORKFLOWS)
    status, body = server_host.request("/api/workflow_templates/ComfyUI-DSA/dsa_toy_demo.json")
    assert status == 200 and json.loads(body)["nodes"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_validates_in_host(inprocess_host, server_host, workflow_model_files, path):
    ui = json.loads(path.read_text())
    types = {n["type"] for n in ui["nodes"]} - FRONTEND_ONLY
    assert types <= set(server_host.object_info), f"unknown node types {types - set(server_host.object_info)}"
    prompt = ui_to_api(ui, server_host.object_info)
    ok, err, outputs, node_errors = inprocess_host.validate(prompt)
    assert ok, (err, node_errors)
    assert outputs, "a template must have an output node"


def test_host_neutral_ignores_only_unconnected_outputs_of_host_nodes():
    info = {
        "SaveAnimatedWEBP": {"python_module": "comfy_extras.nodes_images"},
        "DSASampler": {"python_module": PACK_MODULE},
    }
    unlinked, linked = {"name": "IMAGE", "type": "IMAGE", "links": []}, {"name": "l", "type": "LATENT", "links": [3]}
    newer = {
        "nodes": [
            {"id": 1, "type": "SaveAnimatedWEBP", "outputs": [unlinked]},
            {"id": 2, "type": "DSASampler", "outputs": [linked, unlinked]},
        ],
        "links": [],
    }
    older = {
        "nodes": [
            {"id": 1, "type": "SaveAnimatedWEBP", "outputs": []},
            {"id": 2, "type": "DSASampler", "outputs": [linked, unlinked]},
        ],
        "links": [],
    }
    assert host_neutral(newer, info, PACK_MODULE) == host_neutral(older, info, PACK_MODULE)
    # a pack node's new output, or a host node's connected one, still counts
    stale_pack = {**older, "nodes": [older["nodes"][0], {**older["nodes"][1], "outputs": [linked]}]}
    assert host_neutral(newer, info, PACK_MODULE) != host_neutral(stale_pack, info, PACK_MODULE)
    linked_host = {**newer, "nodes": [{**newer["nodes"][0], "outputs": [linked]}, newer["nodes"][1]]}
    assert host_neutral(linked_host, info, PACK_MODULE) != host_neutral(older, info, PACK_MODULE)
