"""The DSA nodes inside the real host (tier a): the full graph, host nodes around it, caching, LoRA, errors."""

import copy

import pytest
import torch
from graphs import dsa_graph
from safetensors.torch import save_file
from testdata import write_tiny_wan_vae

HEAD_AUTO = "auto (embedded in the generator file, else none)"


@pytest.fixture(scope="module")
def tiny_vae(inprocess_host, models_dir):
    """A random Wan 2.1 VAE at dim 8 (the host detects Wan 2.1 VAEs by key names and takes dim from a shape)."""
    return write_tiny_wan_vae(models_dir / "vae" / "tiny_wan_vae.safetensors").name


@pytest.fixture(scope="module")
def tiny_lora(tiny_models, models_dir):
    """A rank-4 LoRA on every block's self-attention q/k/v of the tiny Wan (kohya-style up/down keys)."""
    g = torch.Generator().manual_seed(5)
    sd = {}
    for b in range(2):
        for p in ("q", "k", "v"):
            base = f"diffusion_model.blocks.{b}.self_attn.{p}"
            sd[f"{base}.lora_up.weight"] = torch.randn(128, 4, generator=g) * 0.5
            sd[f"{base}.lora_down.weight"] = torch.randn(4, 128, generator=g) * 0.5
    path = models_dir / "loras" / "tiny_lora.safetensors"
    save_file(sd, str(path))
    return path.name


def _samples(res, node):
    return res.outputs[node][0][0]["samples"]


def test_full_graph_runs(inprocess_host, tiny_models):
    res = inprocess_host.run(
        dsa_graph(
            tiny_models["wan_with_head"], tiny_models["prompt_a"], tiny_models["prompt_b"], length=9, add_frames=12
        )
    )
    assert res.success, res.error()
    first, whole = _samples(res, "3"), _samples(res, "5")
    assert first.shape == (1, 16, 3, 4, 4) and whole.shape == (1, 16, 6, 4, 4)
    # the extended video starts with the sampler's frames, unchanged
    assert torch.equal(whole[:, :, :3], first)
    chart, summary = res.outputs["6"][0][0], res.outputs["6"][1][0]
    assert chart.shape == (1, 288, 512, 3) and 0 <= chart.min() and chart.max() <= 1 and chart.std() > 0.01
    assert "steps/frame" in summary and "speed-up" in summary
    steps_events = [d for e, d in res.events if e == "dsa.steps"]
    per_chunk = [d for d in steps_events if "chunk" in d]
    assert [(d["node"], d["chunk"]) for d in per_chunk] == [("3", 0), ("5", 0)]
    assert any(d.get("done") for d in steps_events)
    report_events = [d for e, d in res.events if e == "dsa.report"]
    assert {d["node"] for d in report_events} == {"6", "8"}
    report = res.outputs["3"][2][0]
    assert report["chunks"][0]["steps"] == len(report["chunks"][0]["confidence"])
    progress = [d for e, d in res.events if e == "progress" and d["node"] == "3"]
    assert progress and progress[-1]["value"] == progress[-1]["max"]


def test_host_vae_decodes_sampler_latent(inprocess_host, tiny_models, tiny_vae):
    g = dsa_graph(tiny_models["wan_with_head"], tiny_models["prompt_a"], extend=False, length=9)
    g["10"] = {"class_type": "VAELoader", "inputs": {"vae_name": tiny_vae}}
    g["11"] = {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["10", 0]}}
    g["12"] = {"class_type": "PreviewImage", "inputs": {"images": ["11", 0]}}
    res = inprocess_host.run(g)
    assert res.success, res.error()
    frames = res.outputs["11"][0][0]
    assert frames.shape == (9, 32, 32, 3) and torch.isfinite(frames).all()


def test_unet_loader_model_with_separate_head(inprocess_host, tiny_models):
    g = dsa_graph(tiny_models["wan"], tiny_models["prompt_a"], extend=False)
    g["1"] = {"class_type": "UNETLoader", "inputs": {"unet_name": tiny_models["wan"], "weight_dtype": "default"}}
    g["20"] = {"class_type": "DSAHeadLoader", "inputs": {"head": tiny_models["head"]}}
    g["3"]["inputs"]["head"] = ["20", 0]
    res = inprocess_host.run(g)
    assert res.success, res.error()
    assert res.outputs["3"][2][0]["chunks"][0]["confidence"][0] is not None


def test_lora_through_host_loader_changes_output(inprocess_host, tiny_models, tiny_lora):
    base = dsa_graph(tiny_models["wan_with_head"], tiny_models["prompt_a"], extend=False, policy="fixed", max_steps=4)
    with_lora = copy.deepcopy(base)
    with_lora["30"] = {
        "class_type": "LoraLoaderModelOnly",
        "inputs": {"model": ["1", 0], "lora_name": tiny_lora, "strength_model": 1.0},
    }
    with_lora["3"]["inputs"]["model"] = ["30", 0]
    a = _samples(inprocess_host.run(base), "3")
    b = _samples(inprocess_host.run(with_lora), "3")
    assert (a - b).abs().max() > 1e-3
    # and the LoRA is gone again for the plain graph (the host unpatches; nothing leaked into the weights)
    c = _samples(inprocess_host.run(base), "3")
    assert torch.equal(a, c)


def test_same_graph_twice_is_identical_and_inputs_are_not_mutated(inprocess_host, tiny_models):
    g = dsa_graph(tiny_models["wan_with_head"], tiny_models["prompt_a"], tiny_models["prompt_b"], add_frames=24)
    r1 = inprocess_host.run(g)
    r2 = inprocess_host.run(g)
    assert r1.success and r2.success
    for node in ("3", "5"):
        assert torch.equal(_samples(r1, node), _samples(r2, node))
    # the extender ran on the sampler's state; that state (a cached output) must be as the sampler left it
    state = r1.outputs["3"][1][0].state
    assert state.frames == 3 and state.cache.frames_written == 3 and state.next_chunk_index == 1
    import comfy.model_management

    assert state.cache.device == comfy.model_management.intermediate_device()  # parked where outputs live
    assert torch.equal(state.latents, r1.outputs["3"][1][0].state.latents)


def test_threshold_change_reruns_only_sampler_and_downstream(inprocess_host, tiny_models):
    ex = inprocess_host.executor("classic")
    g = dsa_graph(tiny_models["wan_with_head"], tiny_models["prompt_a"], tiny_models["prompt_b"])
    first = inprocess_host.run(g, executor=ex)
    state_before = first.outputs["3"][1][0].state.latents.clone()
    g2 = copy.deepcopy(g)
    g2["3"]["inputs"].update(threshold_preset="custom", threshold=0.2)
    second = inprocess_host.run(g2, executor=ex)
    assert second.success
    cached = next(d for e, d in second.events if e == "execution_cached")["nodes"]
    executed = {d["node"] for e, d in second.events if e == "executing" and d.get("node")}
    assert {"1", "2", "4"} <= set(cached)
    assert {"3", "5", "6", "8"} <= executed and not ({"1", "2", "4"} & executed)
    assert torch.equal(first.outputs["3"][1][0].state.latents, state_before)


def test_threshold_controls_steps(inprocess_host, tiny_models, models_dir):
    """With an embedded head whose confidence is high, threshold 0 exits after min_steps; threshold 1 never exits
    early."""
    low = dsa_graph(
        tiny_models["wan_with_head"],
        tiny_models["prompt_a"],
        extend=False,
        length=21,
        threshold_preset="custom",
        threshold=0.0,
        min_steps=2,
    )
    high = dsa_graph(
        tiny_models["wan_with_head"],
        tiny_models["prompt_a"],
        extend=False,
        length=21,
        threshold_preset="custom",
        threshold=1.0,
        max_steps=5,
    )
    r_low, r_high = inprocess_host.run(low), inprocess_host.run(high)
    assert [c["steps"] for c in r_low.outputs["3"][2][0]["chunks"]] == [2, 2]
    assert [c["steps"] for c in r_high.outputs["3"][2][0]["chunks"]] == [5, 5]


def test_confidence_policy_without_head_is_a_clear_error(inprocess_host, tiny_models):
    g = dsa_graph(tiny_models["wan"], tiny_models["prompt_a"], head="none", extend=False)
    res = inprocess_host.run(g)
    assert not res.success
    assert "needs a confidence head" in res.error()["exception_message"]
    # the heuristic fallback runs without a head and says what it is
    g["3"]["inputs"]["policy"] = "heuristic"
    res = inprocess_host.run(g)
    assert res.success and "heuristic" in res.outputs["3"][2][0]["policy"]["label"]


def test_previews_through_host_latent_previewer(inprocess_host, tiny_models):
    """With the host's latent previews on (latent2rgb), every step and chunk sends a preview."""
    res = inprocess_host.run(
        dsa_graph(
            tiny_models["wan_with_head"], tiny_models["prompt_a"], extend=False, length=21, policy="fixed", max_steps=2
        ),
        preview_method="latent2rgb",
    )
    assert res.success, res.error()
    previews = [d for e, d in res.events if e == "preview" and d["node"] == "3"]
    # 2 chunks x (2 steps + 1 chunk-end preview)
    assert len(previews) == 6
    fmt, image, _ = previews[0]["image"]
    assert fmt == "JPEG" and image.size[0] > 0


@pytest.mark.parametrize("weight_dtype", ["bf16", "fp16", "fp8_e4m3fn"])
def test_weight_dtype_choice(inprocess_host, tiny_models, weight_dtype):
    g = dsa_graph(tiny_models["wan_with_head"], tiny_models["prompt_a"], extend=False, policy="fixed", max_steps=4)
    g["1"]["inputs"]["weight_dtype"] = weight_dtype
    res = inprocess_host.run(g)
    assert res.success, res.error()
    ref = inprocess_host.run(
        dsa_graph(tiny_models["wan_with_head"], tiny_models["prompt_a"], extend=False, policy="fixed", max_steps=4)
    )
    a, b = _samples(res, "3"), _samples(ref, "3")
    assert torch.isfinite(a).all()
    # lower-precision weights: close to the fp32 result, but not identical
    assert 0 < (a - b).abs().max() < 0.25 * b.abs().max()
