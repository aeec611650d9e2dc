"""The host's MODEL patches through a real ComfyUI server (tier b), as a Wan user stacks them between the loader and
the DSA sampler: torch.compile (TorchCompileModel), an attention override (made the way set_model_optimized_attention
makes it), a wrapper DSA cannot run (EasyCache), and a shift patch (ModelSamplingSD3) the chosen schedule ignores."""

import json

import torch
from graphs import POLICY_DEFAULTS
from safetensors.torch import load_file

FIXED = {**POLICY_DEFAULTS, "policy": "fixed", "min_steps": 1}
TINY_LAYERS = 2  # testdata.write_tiny_wan: 2 blocks, each one self- and one cross-attention call per forward


def _base(models) -> dict:
    return {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": models["wan"], "weight_dtype": "default"}},
        "2": {"class_type": "DSAPromptEmbedding", "inputs": {"embedding": models["prompt_a"]}},
    }


def _dsa(g, nid, model, seed=5, length=9, max_steps=2, schedule="self_forcing", report=False):
    """A DSA sampler (fixed policy) on ``model`` with a SaveLatent (id s<nid>) and optionally a Step Report (r<nid>)."""
    g[nid] = {
        "class_type": "DSASampler",
        "inputs": {
            "model": model,
            "positive": ["2", 0],
            "seed": seed,
            "width": 32,
            "height": 32,
            "length": length,
            "frames_per_chunk": 3,
            **{**FIXED, "max_steps": max_steps, "schedule": schedule},
        },
    }
    g[f"s{nid}"] = {"class_type": "SaveLatent", "inputs": {"samples": [nid, 0], "filename_prefix": f"patch_{nid}"}}
    if report:
        g[f"r{nid}"] = {"class_type": "DSAStepReport", "inputs": {"report": [nid, 2], "width": 256, "height": 160}}
    return g


def _run(server_host, g, timeout=300):
    """Queue ``g``; returns (history, {node: its final DSA report}) once it succeeded."""
    ws = server_host.websocket()
    try:
        pid = server_host.queue(g, ws.client_id)
        end = ws.wait_prompt_end(pid, timeout=timeout)
        assert end == "success", server_host.log()[-3000:]
        reports = {e["data"]["node"]: e["data"]["report"] for e in ws.of_type("dsa.steps") if e["data"].get("done")}
    finally:
        ws.close()
    return server_host.wait_history(pid), reports


def _latent(server_host, history, save_id) -> torch.Tensor:
    (entry,) = history["outputs"][save_id]["latents"]
    return load_file(str(server_host.base / "output" / entry["subfolder"] / entry["filename"]))["latent_tensor"]


def _probe_calls(server_host) -> dict:
    return server_host.get_json("/dsa_probe/calls")


# ---- attention override ------------------------------------------------------------------------------------------


def _override_graph(models, scale):
    """The same MODEL, each branch with its own counting override: the host's KSampler and the DSA sampler."""
    g = _base(models)
    for nid, label in (("10", "host"), ("11", "dsa")):
        g[nid] = {
            "class_type": "DSAProbeAttentionOverride",
            "inputs": {"model": ["1", 0], "label": label, "scale": scale},
        }
    g["3"] = {
        "class_type": "EmptyHunyuanLatentVideo",
        "inputs": {"width": 32, "height": 32, "length": 9, "batch_size": 1},
    }
    g["4"] = {
        "class_type": "KSampler",
        "inputs": {
            "model": ["10", 0],
            "positive": ["2", 0],
            "negative": ["2", 0],
            "latent_image": ["3", 0],
            "seed": 5,
            "steps": 2,
            "cfg": 1.0,
            "sampler_name": "euler",
            "scheduler": "simple",
            "denoise": 1.0,
        },
    }
    g["s4"] = {"class_type": "SaveLatent", "inputs": {"samples": ["4", 0], "filename_prefix": "patch_host"}}
    _dsa(g, "6", ["11", 0])
    _dsa(g, "8", ["1", 0])  # the same DSA run without the override
    return g


def test_attention_override_is_called_once_per_attention_like_the_hosts_sampler(server_host, tiny_models):
    out = {}
    for scale in (1.0, 0.5):
        server_host.request("/dsa_probe/reset", {}, method="POST")
        history, reports = _run(server_host, _override_graph(tiny_models, scale))
        calls = _probe_calls(server_host)
        out[scale] = {k: _latent(server_host, history, f"s{k}") for k in ("4", "6", "8")}
        nfe = reports["6"]["total_nfe"]
        print(
            f"\nscale {scale}: override calls host {calls.get('host')} (2 steps), "
            f"DSA {calls.get('dsa')} ({nfe} forwards)"
        )
        # once per attention call: self + cross attention of every block, every forward, in both samplers
        assert calls.get("host") == 2 * 2 * TINY_LAYERS
        assert calls.get("dsa") == nfe * 2 * TINY_LAYERS and nfe == 3
        assert "attention override (optimized_attention_override)" in reports["6"]["host_patches"]["applied"]
    # an identity override changes nothing; the scaling one changes both samplers' output
    assert torch.equal(out[1.0]["6"], out[1.0]["8"])
    for node in ("4", "6"):
        ref = out[1.0][node]
        change = float((out[0.5][node] - ref).abs().max() / ref.abs().max())
        print(f"node {node}: relative change {change:.3f}")
        assert change > 0.01


# ---- torch.compile -----------------------------------------------------------------------------------------------


def test_torch_compile_model_compiles_dsas_forward_once(server_host, tiny_models):
    g = _base(tiny_models)
    g["12"] = {"class_type": "TorchCompileModel", "inputs": {"model": ["1", 0], "backend": "inductor"}}
    _dsa(g, "6", ["12", 0], length=21, report=True)  # 2 chunks x (2 steps + commit)
    _dsa(g, "8", ["1", 0], length=21)
    history, reports = _run(server_host, g, timeout=600)
    patches = reports["6"]["host_patches"]
    print(f"\nfirst run: {patches}")
    assert any(a.startswith("torch.compile (backend inductor)") for a in patches["applied"])
    assert patches["compiled_graphs"] > 0
    assert reports["8"]["host_patches"]["compiled_graphs"] is None  # the uncompiled MODEL is not compiled
    compiled, eager = _latent(server_host, history, "s6"), _latent(server_host, history, "s8")
    err = float((compiled - eager).abs().max() / eager.abs().max())
    print(f"max |compiled - eager| / max |eager| = {err:.2e}")
    assert err < 1e-4
    assert "torch.compile:" in history["outputs"]["r6"]["text"][0]
    # more chunks, more steps, another seed: no graph is made again (static shapes per chunk, reused across runs)
    g2 = _dsa(_base(tiny_models), "6", ["12", 0], seed=6, length=33, max_steps=3)
    g2["12"] = g["12"]
    g2["9"] = {  # the extender's forwards (and its commit passes) go through the same compiled pieces
        "class_type": "DSAExtend",
        "inputs": {
            "model": ["12", 0],
            "positive": ["2", 0],
            "state": ["6", 1],
            "seed": 7,
            "add_frames": 12,
            "frames_per_chunk": 3,
            "recache": "none",
            **{**FIXED, "max_steps": 2},
        },
    }
    g2["s9"] = {"class_type": "SaveLatent", "inputs": {"samples": ["9", 0], "filename_prefix": "patch_ext"}}
    _, reports2 = _run(server_host, g2)
    assert reports2["6"]["total_nfe"] == 3 * 4 and reports2["9"]["total_nfe"] == 1 * 3
    assert reports2["6"]["host_patches"]["compiled_graphs"] == 0
    assert reports2["9"]["host_patches"]["compiled_graphs"] == 0


# ---- what DSA cannot run is named --------------------------------------------------------------------------------


def test_wrapper_dsa_cannot_run_is_named_once_in_report_and_console(server_host, tiny_models):
    g = _base(tiny_models)
    g["13"] = {
        "class_type": "EasyCache",
        "inputs": {
            "model": ["1", 0],
            "reuse_threshold": 0.2,
            "start_percent": 0.15,
            "end_percent": 0.95,
            "verbose": False,
        },
    }
    _dsa(g, "61", ["13", 0], max_steps=1, report=True)
    _dsa(g, "62", ["1", 0], max_steps=1)
    history, reports = _run(server_host, g)
    name = "wrapper easycache (outer_sample, calc_cond_batch, diffusion_model)"
    assert reports["61"]["host_patches"]["ignored"] == [name]
    assert reports["62"]["host_patches"]["ignored"] == []
    text = history["outputs"]["r61"]["text"][0]
    assert f"ignored: {name}" in text
    console = [line for line in server_host.log().splitlines() if "DSA (node 61): ignored host patches" in line]
    assert len(console) == 1 and name in console[0]


# ---- a shift patch the schedule ignores --------------------------------------------------------------------------


def test_shift_patch_the_schedule_ignores_is_pointed_out(server_host, tiny_models):
    g = _base(tiny_models)
    for nid, shift in (("14", 3.0), ("15", 5.0)):
        g[nid] = {"class_type": "ModelSamplingSD3", "inputs": {"model": ["1", 0], "shift": shift}}
    _dsa(g, "63", ["14", 0], max_steps=1, report=True)  # shift 3, self_forcing's fixed shift-5 levels: ignored
    _dsa(g, "64", ["14", 0], max_steps=1, schedule="model")  # walked
    _dsa(g, "65", ["15", 0], max_steps=1)  # shift 5 gives self_forcing's own levels: nothing lost
    history, reports = _run(server_host, g)
    hints = reports["63"]["host_patches"]["hints"]
    print("\n" + json.dumps(hints))
    assert len(hints) == 1 and "shift 3.0" in hints[0] and "schedule 'self_forcing'" in hints[0]
    assert "use schedule 'model'" in hints[0]
    assert f"hint: {hints[0]}" in history["outputs"]["r63"]["text"][0]
    for nid in ("64", "65"):
        patches = reports[nid]["host_patches"]
        assert patches["hints"] == [] and any(a.startswith("model_sampling patch") for a in patches["applied"])
    assert any("DSA (node 63): the MODEL's sampling is patched" in line for line in server_host.log().splitlines())
