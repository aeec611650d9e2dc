"""Streaming decode inside the real host: the sampler's and extender's images (decoded chunk by chunk, the causal
cache carried across chunks and nodes) equal the host's own VAE Decode of the same latent, with a random Wan 2.1 VAE
built by the host's own code; frames reach the GUI per chunk; cached states are never changed."""

import pytest
import torch
from graphs import dsa_graph, host_decode, images, with_vae
from safetensors.torch import save_file
from testdata import random_wan_vae

ATOL = 2e-5


@pytest.fixture(scope="module")
def stream_vae(inprocess_host, models_dir):
    """A random Wan 2.1 VAE at dim 16, built by the host's own module and saved as safetensors (the host detects
    Wan 2.1 VAEs by key names and takes dim from a shape)."""
    sd = random_wan_vae(16, seed=3, bias_std=0.05).state_dict()
    path = models_dir / "vae" / "stream_wan_vae.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path.name


def test_sampler_streamed_frames_equal_host_vae_decode(inprocess_host, tiny_models, stream_vae):
    # 6 latent frames = 2 chunks -> 1 + 4 * 5 = 21 frames
    g = with_vae(dsa_graph(tiny_models["wan_with_head"], tiny_models["prompt_a"], extend=False, length=21), stream_vae)
    host_decode(g, "3", "11")
    res = inprocess_host.run(g)
    assert res.success, res.error()
    ours, host = images(res, "3"), res.outputs["11"][0][0]
    assert ours.shape == host.shape == (21, 32, 32, 3)
    assert host.std() > 0.01  # a real picture, not a constant
    torch.testing.assert_close(ours, host, atol=ATOL, rtol=0)
    frames = [d for e, d in res.events if e == "dsa.frames"]
    assert [(d["chunk"], d["frame_start"], len(d["frames"])) for d in frames] == [(0, 0, 9), (1, 9, 12)]
    assert frames[0]["frames"][0].startswith("data:image/jpeg;base64,")
    assert frames[0]["total_frames"] == 21 and frames[0]["frame_rate"] == 16
    report = res.outputs["3"][2][0]
    st = report["streaming"]
    assert st["new_video_frames"] == 21 and 0 < st["first_frame_s"] <= report["wall_time_s"] + 1.0
    assert st["decoded_fps"] > 0 and "first frame after" in report["summary"]


@pytest.mark.parametrize("source", ["state", "state_made_without_vae", "latent"])
def test_extender_continues_the_decode(inprocess_host, tiny_models, stream_vae, source):
    """Sampler (3 latent frames) + extender (+3): the extender's images (the whole video) equal the host's VAE Decode
    of the extender's whole latent, whether it continues the sampler's decoder cache, catches up a state decoded
    without a VAE, or continues a plain latent."""
    g = dsa_graph(
        tiny_models["wan_with_head"], tiny_models["prompt_a"], tiny_models["prompt_b"], length=9, add_frames=12
    )
    with_vae(g, stream_vae, nodes=("5",) if source == "state_made_without_vae" else ("3", "5"))
    if source == "latent":
        del g["5"]["inputs"]["state"]
        g["5"]["inputs"]["latent"] = ["3", 0]
    host_decode(g, "5", "11")
    res = inprocess_host.run(g)
    assert res.success, res.error()
    ours, host = images(res, "5"), res.outputs["11"][0][0]
    assert ours.shape == host.shape == (1 + 4 * 5, 32, 32, 3)
    torch.testing.assert_close(ours, host, atol=ATOL, rtol=0)
    frames = [d for e, d in res.events if e == "dsa.frames" and d["node"] == "5"]
    new = [d for d in frames if d["chunk"] is not None]
    assert [(d["chunk"], d["frame_start"], len(d["frames"])) for d in new] == [(0, 9, 12)]
    caught_up = sum(len(d["frames"]) for d in frames if d["chunk"] is None)
    assert caught_up == (0 if source == "state" else 9)  # the state's own cache: nothing decoded twice
    if source == "state":  # the same frames, not decoded again
        torch.testing.assert_close(ours[:9], images(res, "3"), atol=0, rtol=0)


def test_extender_pairs_the_frame_the_sampler_held_back(inprocess_host, tiny_models, stream_vae):
    """Sampler (6 latent frames) + extender (+3). On hosts whose VAE Decode takes latent frames in pairs after the
    first, the sampler's last latent frame is decoded alone for its images (as VAE Decode of its latent does) but
    held back in its DSA_STATE, so the extender decodes it paired with its next frame, replaces those provisional
    frames, and its whole video equals VAE Decode of the whole latent. On one-frame-per-call hosts nothing waits."""
    import comfy.ldm.wan.vae as wan_vae

    pairs = hasattr(wan_vae, "count_cache_layers")
    g = with_vae(
        dsa_graph(
            tiny_models["wan_with_head"], tiny_models["prompt_a"], tiny_models["prompt_b"], length=21, add_frames=12
        ),
        stream_vae,
    )
    host_decode(g, "3", "11")
    host_decode(g, "5", "12")
    res = inprocess_host.run(g)
    assert res.success, res.error()
    sampled, extended = images(res, "3"), images(res, "5")
    assert sampled.shape == (21, 32, 32, 3) and extended.shape == (33, 32, 32, 3)
    torch.testing.assert_close(sampled, res.outputs["11"][0][0], atol=ATOL, rtol=0)
    torch.testing.assert_close(extended, res.outputs["12"][0][0], atol=ATOL, rtol=0)
    decoded = res.outputs["3"][1][0].decoded
    kept = 17 if pairs else 21  # frames the state's decode has committed; the rest are provisional
    assert (decoded.state.latent_frames, decoded.state.video_frames) == (6, kept)
    assert (decoded.state.pending is not None) == pairs and not decoded.state.flushed
    assert decoded.images.shape[1] == 21
    torch.testing.assert_close(extended[:kept], sampled[:kept], atol=0, rtol=0)  # not decoded again
    new = [
        (d["chunk"], d["frame_start"], len(d["frames"]))
        for e, d in res.events
        if e == "dsa.frames" and d["node"] == "5"
    ]
    assert new == [(0, kept, 33 - kept)]  # the held-back frame's 4 frames arrive with the extender's first chunk


def test_cached_state_keeps_its_decode(inprocess_host, tiny_models, stream_vae):
    """The extender continues the sampler's decoder cache from a copy: the sampler's output (a cached node output)
    is the same after two extenders branched from it as from the sampler alone."""
    alone = with_vae(
        dsa_graph(tiny_models["wan_with_head"], tiny_models["prompt_a"], extend=False, length=9), stream_vae
    )
    branched = with_vae(
        dsa_graph(tiny_models["wan_with_head"], tiny_models["prompt_a"], length=9, add_frames=12), stream_vae
    )
    branched["12"] = {"class_type": "DSAExtend", "inputs": {**branched["5"]["inputs"], "seed": 99}}
    branched["13"] = {"class_type": "PreviewImage", "inputs": {"images": ["12", 3]}}
    r1, r2 = inprocess_host.run(alone), inprocess_host.run(branched)
    assert r1.success and r2.success, (r1.error(), r2.error())
    a, b = r1.outputs["3"][1][0].decoded, r2.outputs["3"][1][0].decoded
    assert a.state.latent_frames == b.state.latent_frames == 3 and b.state.video_frames == 9
    assert len(a.state.cache) == len(b.state.cache) and any(isinstance(c, torch.Tensor) for c in a.state.cache)
    for x, y in zip(a.state.cache, b.state.cache):
        if isinstance(x, torch.Tensor):
            assert torch.equal(x, y)
        else:
            assert x == y
    assert torch.equal(a.images, b.images)
    e1, e2 = images(r2, "5"), images(r2, "12")
    assert torch.equal(e1[:9], e2[:9]) and (e1[9:] - e2[9:]).abs().max() > 1e-4  # same start, different seeds


def test_toy_vae_streams_the_toy_codec(inprocess_host, tiny_models):
    g = dsa_graph(tiny_models["wan_with_head"], tiny_models["prompt_a"], length=21, add_frames=12)
    g["10"] = {"class_type": "DSAToyVAE", "inputs": {"scale": 4}}
    g["3"]["inputs"]["vae"] = g["5"]["inputs"]["vae"] = ["10", 0]
    g["11"] = {"class_type": "DSAToyDecode", "inputs": {"samples": ["5", 0], "scale": 4}}
    g["12"] = {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["10", 0]}}
    g["13"] = {"class_type": "PreviewImage", "inputs": {"images": ["11", 0]}}
    g["14"] = {"class_type": "PreviewImage", "inputs": {"images": ["12", 0]}}
    res = inprocess_host.run(g)
    assert res.success, res.error()
    ours, ext = images(res, "3"), images(res, "5")
    assert ours.shape == (6, 16, 16, 3) and ext.shape == (9, 16, 16, 3)  # the toy codec: 1 latent frame -> 1 frame
    torch.testing.assert_close(ours, res.outputs["12"][0][0], atol=1e-6, rtol=0)
    torch.testing.assert_close(ext, res.outputs["11"][0][0], atol=1e-6, rtol=0)
    frames = [d for e, d in res.events if e == "dsa.frames"]
    assert [(d["node"], len(d["frames"])) for d in frames] == [("3", 3), ("3", 3), ("5", 3)]
    assert frames[0]["frame_rate"] == 4


def test_images_without_vae_is_one_clear_error(inprocess_host, tiny_models):
    g = dsa_graph(tiny_models["wan_with_head"], tiny_models["prompt_a"], extend=False)
    g["11"] = {"class_type": "PreviewImage", "inputs": {"images": ["3", 3]}}
    res = inprocess_host.run(g)
    assert not res.success
    assert "images output needs a VAE" in str(res.error())
    assert not [d for e, d in res.events if e == "dsa.steps"]  # refused before sampling anything
    # without the images in use, a graph without a VAE runs as before
    plain = inprocess_host.run(dsa_graph(tiny_models["wan_with_head"], tiny_models["prompt_a"], extend=False))
    assert plain.success and plain.outputs["3"][3][0] is None
    assert not [d for e, d in plain.events if e == "dsa.frames"]


def test_workflow_saved_before_streaming_runs_unchanged(inprocess_host, server_host):
    """The toy template as saved before the vae input and images output existed (tests/host/legacy_workflows):
    it loads, converts and runs as it did, its sampler outputs unchanged in number and meaning, no frames sent.
    (Its prompt file is renamed to one the bundled toy model ships now; the graph is as it was saved.)"""
    import json
    from pathlib import Path

    from workflow_tools import ui_to_api

    ui = json.loads((Path(__file__).with_name("legacy_workflows") / "dsa_toy_demo_before_streaming.json").read_text())
    sampler = next(n for n in ui["nodes"] if n["type"] == "DSASampler")
    assert [o["name"] for o in sampler["outputs"]] == ["latent", "state", "report"]
    assert "vae" not in [i["name"] for i in sampler["inputs"]]
    prompt = ui_to_api(ui, server_host.object_info)
    res = inprocess_host.run(prompt)
    assert res.success, res.error()
    sid = str(sampler["id"])
    latent, state, report, images = (
        res.outputs[sid][0][0],
        res.outputs[sid][1][0],
        res.outputs[sid][2][0],
        res.outputs[sid][3][0],
    )
    assert latent["samples"].shape[2] == state.state.frames and report["chunks"] and images is None
    assert not [d for e, d in res.events if e == "dsa.frames"]
