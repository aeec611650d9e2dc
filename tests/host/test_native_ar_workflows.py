"""The Causal Forcing templates: the front end's download metadata (the same as the host's own template), and the
image-to-video template run end to end on tiny stand-in files of the same names."""

import json
import sys
from pathlib import Path

import pytest
import torch
from workflow_tools import ui_to_api

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
import make_workflows  # noqa: E402

WORKFLOWS = {p.stem: json.loads(p.read_text()) for p in sorted((REPO / "workflows").glob("*.json"))}
CAUSAL = ("dsa_causal_forcing_i2v", "dsa_causal_forcing_t2v")


def _models_entries(wf: dict) -> list[dict]:
    nodes = list(wf.get("nodes", []))
    for sg in wf.get("definitions", {}).get("subgraphs", []):
        nodes += sg.get("nodes", [])
    return [m for n in nodes for m in (n.get("properties") or {}).get("models", [])]


def _host_template():
    """The host's video_causal_forcing_i2v template, from its comfyui-workflow-templates packages (if installed)."""
    import importlib.util

    for pkg in (
        "comfyui_workflow_templates_json",
        "comfyui_workflow_templates_media_video",
        "comfyui_workflow_templates_core",
        "comfyui_workflow_templates",
    ):
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            continue
        for root in spec.submodule_search_locations:
            hit = next(Path(root).rglob("video_causal_forcing_i2v.json"), None)
            if hit is not None:
                return json.loads(hit.read_text())
    return None


@pytest.mark.parametrize("name", CAUSAL)
def test_causal_forcing_loaders_offer_their_downloads(name):
    wf = WORKFLOWS[name]
    by_type = {n["type"]: n for n in wf["nodes"]}
    for typ, file in (
        ("UNETLoader", make_workflows.CAUSAL_FORCING),
        ("CLIPLoader", make_workflows.TEXT_ENCODER),
        ("VAELoader", make_workflows.VAE),
    ):
        models = by_type[typ]["properties"].get("models")
        assert models == [make_workflows.MODEL_DOWNLOADS[file]], (typ, models)
        assert models[0]["url"].startswith("https://") and models[0]["url"].endswith("/" + file)


def test_every_loader_naming_a_public_file_offers_it():
    for name, wf in WORKFLOWS.items():
        for node in wf["nodes"]:
            named = {v for v in node.get("widgets_values") or [] if v in make_workflows.MODEL_DOWNLOADS}
            offered = {m["name"] for m in node.get("properties", {}).get("models", [])}
            assert named == offered, (name, node["type"], named, offered)
    # the Self-Forcing templates offer the text encoder and VAE; their generator has no public safetensors file
    t2v = {m["name"] for m in _models_entries(WORKFLOWS["dsa_text_to_video"])}
    assert t2v == {make_workflows.TEXT_ENCODER, make_workflows.VAE}


def test_download_metadata_equals_the_hosts_own_template(inprocess_host):
    host = _host_template()
    if host is None:
        pytest.skip(
            "this host's comfyui-workflow-templates has no video_causal_forcing_i2v (ComfyUI 0.3.75 and slim "
            "hosts); the metadata is compared on hosts that ship it"
        )
    host_entries = {m["name"]: m for m in _models_entries(host)}
    ours = [m for name in CAUSAL for m in _models_entries(WORKFLOWS[name])]
    assert {m["name"] for m in ours} == set(host_entries)
    for m in ours:
        assert m == host_entries[m["name"]]


@pytest.fixture(scope="module")
def i2v_stand_ins(inprocess_host, workflow_model_files, tiny_models):
    """Tiny files under the template's own names: the causal-AR-flagged generator (written by workflow_model_files),
    a real (tiny) Wan 2.1 VAE in place of the empty placeholder, and the start image in the host's input folder."""
    import folder_paths
    from PIL import Image
    from testdata import write_tiny_wan_vae

    write_tiny_wan_vae(workflow_model_files / "vae" / make_workflows.VAE)
    img = Path(folder_paths.get_input_directory()) / make_workflows.START_IMAGE
    img.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (48, 40), (200, 120, 40)).save(img)
    return tiny_models


def test_causal_forcing_i2v_template_runs_end_to_end(inprocess_host, server_host, i2v_stand_ins):
    """The template as the front end queues it, on stand-ins of the same names. Two changes, both forced by the
    CPU test machine: the UMT5-XXL encoder cannot be built small (the prompt comes from a stored embedding instead
    of CLIPLoader + CLIPTextEncode) and the video is 32x32, 9 frames instead of 832x480, 81."""
    prompt = ui_to_api(WORKFLOWS["dsa_causal_forcing_i2v"], server_host.object_info)
    enc = [k for k, n in prompt.items() if n["class_type"] == "CLIPTextEncode"]
    assert len(enc) == 1
    prompt[enc[0]] = {"class_type": "DSAPromptEmbedding", "inputs": {"embedding": i2v_stand_ins["prompt_a"]}}
    for k in [k for k, n in prompt.items() if n["class_type"] == "CLIPLoader"]:
        del prompt[k]
    sampler = next(k for k, n in prompt.items() if n["class_type"] == "DSASampler")
    s = prompt[sampler]["inputs"]
    assert (s["frames_per_chunk"], s["schedule"]) == (1, "model") and "start_image" in s and "vae" in s
    s.update(width=32, height=32, length=9)
    res = inprocess_host.run(prompt)
    assert res.success, res.error()
    latent = res.outputs[sampler][0][0]["samples"]
    assert latent.shape == (1, 16, 3, 4, 4) and torch.isfinite(latent).all()
    save = next(k for k, n in prompt.items() if n["class_type"] == "SaveAnimatedWEBP")
    assert len(res.ui[save]["images"]) == 1 and res.ui[save]["images"][0]["filename"].endswith(".webp")
    # the video is decoded once, chunk by chunk by the sampler (its VAE also encodes the start image)
    assert prompt[save]["inputs"]["images"] == [sampler, 3]
    assert not [n for n in prompt.values() if n["class_type"] == "VAEDecode"]
    assert res.outputs[sampler][3][0].shape == (9, 32, 32, 3)
    report = res.outputs[sampler][2][0]
    assert [c["frame_start"] for c in report["chunks"]] == [1, 2] and report["extra_nfe"] == 1
