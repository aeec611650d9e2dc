"""Streaming through the host's tiny video autoencoders (comfy/taesd/taehv.py: taew2_1, lighttaew2_1): the
sampler's and extender's images, decoded chunk by chunk with each MemBlock's memory carried across chunks and
across nodes, equal the host's own VAE Decode of the same latent with the same tiny VAE (random weights built by
the host's class, saved where Load VAE finds them), with the Wan VAE path's frame count and alignment."""

import sys

import pytest
import torch
from graphs import dsa_graph, host_decode, images, with_vae
from testdata import write_tiny_video_vae

# float32 weights: the host takes them as lighttaew2_1 (no latent scaling); float16: as taehv (HunyuanVideo scaling)
TINY_VAES = {"lighttaew2_1.safetensors": torch.float32, "taehv.safetensors": torch.float16}


@pytest.fixture(scope="module")
def tiny_vaes(inprocess_host, models_dir):
    for name, dtype in TINY_VAES.items():
        write_tiny_video_vae(models_dir / "vae_approx" / name, seed=5, dtype=dtype)
    return list(TINY_VAES)


@pytest.mark.parametrize("vae_name", list(TINY_VAES))
def test_tiny_vae_streams_the_host_decode(inprocess_host, tiny_models, tiny_vaes, vae_name):
    """Sampler (6 latent frames, 2 chunks) + extender (+3): both nodes' images equal VAE Decode of their latent,
    exactly; the frames come per chunk as the Wan VAE's do (1 + 4 * 5 = 21, then 12); the extender continues the
    sampler's decoder memory (nothing decoded twice)."""
    g = dsa_graph(
        tiny_models["wan_with_head"], tiny_models["prompt_a"], tiny_models["prompt_b"], length=21, add_frames=12
    )
    with_vae(g, vae_name)
    host_decode(g, "3", "11")
    host_decode(g, "5", "12")
    res = inprocess_host.run(g)
    assert res.success, res.error()
    sampled, extended = images(res, "3"), images(res, "5")
    assert sampled.shape == res.outputs["11"][0][0].shape == (21, 32, 32, 3)
    assert extended.shape == res.outputs["12"][0][0].shape == (33, 32, 32, 3)
    assert sampled.std() > 0.05  # a real picture, not a constant
    torch.testing.assert_close(sampled, res.outputs["11"][0][0], atol=0, rtol=0)
    torch.testing.assert_close(extended, res.outputs["12"][0][0], atol=0, rtol=0)
    assert torch.equal(extended[:21], sampled)  # the sampler's frames, carried, not decoded again
    events = [(d["node"], d["chunk"], d["frame_start"], len(d["frames"])) for e, d in res.events if e == "dsa.frames"]
    assert events == [("3", 0, 0, 9), ("3", 1, 9, 12), ("5", 0, 21, 12)]
    decoded = res.outputs["3"][1][0].decoded
    assert (decoded.state.latent_frames, decoded.state.video_frames) == (6, 21) and decoded.state.pending is None
    assert decoded.state.nbytes > 0  # the MemBlocks' memory travels in the DSA_STATE


def test_tiny_vae_memory_is_not_changed_by_continuations(inprocess_host, tiny_models, tiny_vaes):
    """Two extenders with different seeds branch from one sampler: the sampler's decode state (a cached node
    output) is the same as from the sampler alone, and both branches start from the same frames."""
    name = tiny_vaes[0]
    alone = with_vae(dsa_graph(tiny_models["wan_with_head"], tiny_models["prompt_a"], extend=False, length=9), name)
    branched = with_vae(dsa_graph(tiny_models["wan_with_head"], tiny_models["prompt_a"], length=9), name)
    branched["12"] = {"class_type": "DSAExtend", "inputs": {**branched["5"]["inputs"], "seed": 99}}
    branched["13"] = {"class_type": "PreviewImage", "inputs": {"images": ["12", 3]}}
    r1, r2 = inprocess_host.run(alone), inprocess_host.run(branched)
    assert r1.success and r2.success, (r1.error(), r2.error())
    a, b = r1.outputs["3"][1][0].decoded, r2.outputs["3"][1][0].decoded
    assert len(a.state.cache) == len(b.state.cache) and sum(isinstance(c, torch.Tensor) for c in a.state.cache) > 3
    for x, y in zip(a.state.cache, b.state.cache):
        assert (x is None and y is None) or torch.equal(x, y)
    assert torch.equal(a.images, b.images)
    e1, e2 = images(r2, "5"), images(r2, "12")
    assert torch.equal(e1[:9], e2[:9]) and (e1[9:] - e2[9:]).abs().max() > 1e-4  # same start, different seeds


def test_tiny_vae_for_another_latent_is_one_clear_error(inprocess_host, tiny_models, models_dir):
    """A tiny VAE for Wan 2.2's 48-channel latent (lighttaew2_2, the host's class) cannot decode Wan 2.1 latents:
    one message naming the VAEs that can, before any chunk is sampled."""
    import comfy.taesd.taehv as taehv
    from safetensors.torch import save_file

    vae = taehv.TAEHV(latent_channels=48)
    with torch.no_grad():
        for p in vae.parameters():
            p.normal_(0.0, 0.02)
    save_file(
        {k: v.contiguous() for k, v in vae.state_dict().items()}, str(models_dir / "vae" / "tae_wan22.safetensors")
    )
    g = with_vae(
        dsa_graph(tiny_models["wan_with_head"], tiny_models["prompt_a"], extend=False), "tae_wan22.safetensors"
    )
    res = inprocess_host.run(g)
    assert not res.success
    msg = str(res.error())
    assert "48-channel" in msg and "taew2_1" in msg and "lighttaew2_1" in msg
    assert not [d for e, d in res.events if e == "dsa.steps"]


def test_vae_message_says_when_the_host_has_no_tiny_vaes(inprocess_host, monkeypatch):
    """A VAE that is neither the Wan VAE nor a tiny one (the host's pixel-space VAE): the message names the tiny
    VAEs, and on a host without comfy/taesd/taehv.py (ComfyUI before it; hidden here from the import system) says
    that this ComfyUI cannot load them."""
    import nodes as host_nodes

    pack = sys.modules[next(m for m in sys.modules if m.endswith(".nodes.streaming"))]
    (vae,) = host_nodes.VAELoader().load_vae("pixel_space")
    with pytest.raises(Exception) as e:
        pack.decoder_for(vae)
    assert "taew2_1" in str(e.value) and "no tiny video autoencoders" not in str(e.value)
    monkeypatch.setitem(sys.modules, "comfy.taesd.taehv", None)
    assert not pack.host_has_tiny_vae()
    with pytest.raises(Exception) as e:
        pack.decoder_for(vae)
    assert "This ComfyUI has no tiny video autoencoders" in str(e.value) and "update ComfyUI" in str(e.value)


def test_tiny_vs_wan_benchmark_runs(inprocess_host):
    """benchmarks/bench_tiny_vae.py at the tiniest size (its figures are measured by running it, never here): both
    decoders give the Wan frame count chunk by chunk and the report prints the per-chunk ratio."""
    from benchmarks import bench_tiny_vae

    r = bench_tiny_vae.measure((32, 32), chunks=2, wan_dim=8, threads=1)
    assert r["frames"] == {"wan": 1 + 4 * 5, "tiny": 1 + 4 * 5}
    assert all(t > 0 for ts in r["times"].values() for t in ts) and len(r["times"]["tiny"]) == 2
    text = bench_tiny_vae.report(r, (32, 32), 2, 8, 1, "?")
    assert "Wan / tiny" in text and "ratio median" in text
