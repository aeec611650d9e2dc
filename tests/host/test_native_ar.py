"""DSA with the host's own autoregressive video support: the schedule from the MODEL's sampling, image-to-video
with a start image, the host's native causal-AR models (WAN21_CausalAR, on hosts that have it) through every DSA
node, and DSA's fixed policy against the host's own Sampler AR Video on the same graph inputs."""

import pytest
import torch
from graphs import POLICY_DEFAULTS

FIXED4 = {**POLICY_DEFAULTS, "policy": "fixed", "min_steps": 1, "max_steps": 4, "schedule": "model"}


@pytest.fixture
def native_ar(inprocess_host):
    """Skips (visibly) on hosts without native causal AR: comfy.model_base.WAN21_CausalAR arrived after 0.3.75."""
    import comfy.model_base

    if not hasattr(comfy.model_base, "WAN21_CausalAR"):
        pytest.skip("this host has no native causal AR (comfy.model_base.WAN21_CausalAR, ComfyUI after 0.3.75)")


needs_native_ar = pytest.mark.usefixtures("native_ar")


def _pack_module(name):
    import sys

    return next(m for k, m in sys.modules.items() if k.endswith(".nodes." + name) and "DSA" in k)


@pytest.fixture(scope="module")
def ar_files(inprocess_host, tiny_models, models_dir):
    from testdata import write_causal_ar_wan, write_tiny_wan_vae

    return {
        "causal": write_causal_ar_wan(models_dir / "diffusion_models" / "tiny_causal_ar.safetensors").name,
        "vae": write_tiny_wan_vae(models_dir / "vae" / "tiny_wan_vae_i2v.safetensors").name,
        "prompt": tiny_models["prompt_a"],
        "plain": tiny_models["wan"],
    }


def _sampler(model, seed=3, width=32, height=32, length=9, fpc=3, **widgets):
    inputs = {
        "model": model,
        "positive": ["2", 0],
        "seed": seed,
        "width": width,
        "height": height,
        "length": length,
        "frames_per_chunk": fpc,
        **FIXED4,
    }
    inputs.update(widgets)
    return {"class_type": "DSASampler", "inputs": inputs}


def _base(unet, prompt, vae=None, color=0x3366CC, size=32):
    g = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": unet, "weight_dtype": "default"}},
        "2": {"class_type": "DSAPromptEmbedding", "inputs": {"embedding": prompt}},
    }
    if vae:
        g["20"] = {"class_type": "VAELoader", "inputs": {"vae_name": vae}}
        g["21"] = {
            "class_type": "EmptyImage",
            "inputs": {"width": size + 8, "height": size, "batch_size": 1, "color": color},
        }
    return g


LATENT_NODES = {"DSASampler", "DSAExtend", "SamplerCustomAdvanced", "VAEEncode"}


def _run(host, g):
    """Run ``g`` with a sink on every node whose output the tests read (only output nodes make a prompt run)."""
    sinks = {}
    for nid, node in g.items():
        if node["class_type"] in LATENT_NODES:
            sinks[f"s{nid}"] = {"class_type": "SaveLatent", "inputs": {"samples": [nid, 0], "filename_prefix": "t"}}
        elif node["class_type"] == "BasicScheduler":
            sinks[f"s{nid}"] = {"class_type": "PreviewAny", "inputs": {"source": [nid, 0]}}
    return host.run({**g, **sinks})


def _latent(res, node):
    return res.outputs[node][0][0]["samples"]


def _report(res, node):
    return res.outputs[node][2][0]


# ---- the schedule from the MODEL's own sampling ------------------------------------------------------------------


def test_model_schedule_walks_basic_scheduler_simple_then_extends_lower(inprocess_host, ar_files):
    g = _base(ar_files["plain"], ar_files["prompt"])
    g["3"] = _sampler(["1", 0], max_steps=6)
    g["4"] = {
        "class_type": "BasicScheduler",
        "inputs": {"model": ["1", 0], "scheduler": "simple", "steps": 4, "denoise": 1.0},
    }
    res = _run(inprocess_host, g)
    assert res.success, res.error()
    host_sigmas = [float(s) for s in res.outputs["4"][0][0].tolist()]
    assert host_sigmas[-1] == 0.0 and len(host_sigmas) == 5
    walked = _report(res, "3")["chunks"][0]["sigmas"]
    assert len(walked) == 6
    assert walked[:4] == pytest.approx(host_sigmas[:4], abs=0, rel=1e-12)
    # the two extra levels lie below the last one, halving its unwarped time under the model's shift
    shift = res.outputs["1"][0][0].get_model_object("model_sampling").shift
    u = walked[3] / (shift - (shift - 1) * walked[3])
    assert walked[4] == pytest.approx(shift * u / 2 / (1 + (shift - 1) * u / 2))
    assert walked[3] > walked[4] > walked[5] > 0
    assert _report(res, "3")["ladder"]["name"] == "model+extended"


def test_model_schedule_differs_from_fixed_ladders_where_the_shift_does(inprocess_host, ar_files):
    """A plain Wan 2.1 T2V (shift 8 in the host) walks other levels than Self-Forcing's shift-5 ladder."""
    g = _base(ar_files["plain"], ar_files["prompt"])
    g["3"] = _sampler(["1", 0])
    g["5"] = _sampler(["1", 0], schedule="self_forcing")
    res = _run(inprocess_host, g)
    assert res.success, res.error()
    model_s, sf_s = (_report(res, n)["chunks"][0]["sigmas"] for n in ("3", "5"))
    assert model_s[0] == sf_s[0] == 1.0
    assert model_s[1] != pytest.approx(sf_s[1])


# ---- image to video -----------------------------------------------------------------------------------------------


def _i2v_graph(files, fpc, length, noise="dsa", extend_frames=0):
    g = _base(files["causal"], files["prompt"], vae=files["vae"])
    g["3"] = _sampler(["1", 0], fpc=fpc, length=length, start_image=["21", 0], vae=["20", 0], noise=noise)
    g["9"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["22", 0], "vae": ["20", 0]}}
    g["22"] = {
        "class_type": "ImageScale",
        "inputs": {"image": ["21", 0], "upscale_method": "bilinear", "width": 32, "height": 32, "crop": "center"},
    }
    if extend_frames:
        g["5"] = {
            "class_type": "DSAExtend",
            "inputs": {
                "model": ["1", 0],
                "positive": ["2", 0],
                "state": ["3", 1],
                "seed": 4,
                "add_frames": extend_frames,
                "frames_per_chunk": fpc,
                "recache": "none",
                **FIXED4,
            },
        }
    return g


@pytest.mark.parametrize("fpc,length,chunks", [(1, 9, 2), (3, 13, 1)], ids=["frame-wise", "chunk-wise"])
def test_start_image_is_the_first_latent_frame_committed_as_context(inprocess_host, ar_files, fpc, length, chunks):
    res = _run(inprocess_host, _i2v_graph(ar_files, fpc, length, extend_frames=4 * fpc))
    assert res.success, res.error()
    video, encoded = _latent(res, "3"), _latent(res, "9")
    t = (length - 1) // 4 + 1
    assert video.shape == (1, 16, t, 4, 4)
    # frame 0 is the start image as the host's VAE encodes it (resized and center-cropped as AR Video I2V does)
    assert torch.allclose(video[:, :, :1], encoded.to(video), atol=1e-5)
    rep = _report(res, "3")
    assert len(rep["chunks"]) == chunks and rep["chunks"][0]["frame_start"] == 1
    assert all(c["num_frames"] == fpc for c in rep["chunks"])
    assert rep["extra_nfe"] == 1  # one t = 0 pass commits the start frame
    # the extender's whole video keeps the start frame and the sampler's frames, unchanged
    whole = _latent(res, "5")
    assert whole.shape[2] == t + fpc and torch.equal(whole[:, :, :t], video)


def test_start_image_changes_the_generated_frames(inprocess_host, ar_files):
    a = _run(inprocess_host, _i2v_graph(ar_files, 1, 9))
    g = _i2v_graph(ar_files, 1, 9)
    g["21"]["inputs"]["color"] = 0xFFEE00
    b = _run(inprocess_host, g)
    assert a.success and b.success, (a.error(), b.error())
    va, vb = _latent(a, "3"), _latent(b, "3")
    assert not torch.allclose(va[:, :, 1:], vb[:, :, 1:], atol=1e-4)


def test_start_image_errors_name_the_fix(inprocess_host, ar_files):
    g = _i2v_graph(ar_files, 3, 9)  # 3 latent frames: 2 after the start frame is no whole 3-frame chunk
    res = _run(inprocess_host, g)
    assert not res.success and "2 to generate after the start image" in str(res.error()) and "13" in str(res.error())
    g = _i2v_graph(ar_files, 1, 9)
    del g["3"]["inputs"]["vae"]
    res = _run(inprocess_host, g)
    assert not res.success and "needs the Wan 2.1 VAE" in str(res.error())


def test_without_start_image_chunkwise_length_still_checked_when_run(inprocess_host, ar_files):
    g = _base(ar_files["plain"], ar_files["prompt"])
    g["3"] = _sampler(["1", 0], length=13)  # 4 latent frames: valid only with a start image
    res = _run(inprocess_host, g)
    assert not res.success and "not a multiple of frames_per_chunk 3" in str(res.error())


# ---- the host's native causal-AR models ---------------------------------------------------------------------------


@needs_native_ar
@pytest.mark.parametrize("loader", ["UNETLoader", "DSAModelLoader"])
def test_causal_ar_checkpoint_loads_as_the_hosts_causal_ar_model(inprocess_host, ar_files, loader):
    import comfy.model_base

    g = _base(ar_files["causal"], ar_files["prompt"])
    if loader == "DSAModelLoader":
        g["1"] = {
            "class_type": "DSAModelLoader",
            "inputs": {"generator": ar_files["causal"], "head": "none", "weight_dtype": "default"},
        }
    res = _run(inprocess_host, g | {"3": _sampler(["1", 0])})
    assert res.success, res.error()
    assert type(res.outputs["1"][0][0].model) is comfy.model_base.WAN21_CausalAR


@pytest.mark.parametrize("fpc,length,add", [(1, 9, 8), (3, 9, 12)], ids=["frame-wise", "chunk-wise"])
def test_causal_ar_model_through_sampler_and_extender(inprocess_host, ar_files, tiny_models, fpc, length, add):
    """A causal-AR-flagged file through UNETLoader: the host's WAN21_CausalAR where it has one, a WAN21 elsewhere."""
    g = _base(ar_files["causal"], ar_files["prompt"])
    g["6"] = {"class_type": "DSAHeadLoader", "inputs": {"head": tiny_models["head"]}}
    g["3"] = _sampler(["1", 0], fpc=fpc, length=length, policy="confidence", max_steps=6, head=["6", 0])
    g["5"] = {
        "class_type": "DSAExtend",
        "inputs": {
            "model": ["1", 0],
            "positive": ["2", 0],
            "head": ["6", 0],
            "state": ["3", 1],
            "seed": 9,
            "add_frames": add,
            "frames_per_chunk": fpc,
            "recache": "none",
            **{**FIXED4, "policy": "confidence", "max_steps": 6},
        },
    }
    g["7"] = {
        "class_type": "DSAExtend",
        "inputs": {
            "model": ["1", 0],
            "positive": ["2", 0],
            "latent": ["3", 0],
            "seed": 9,
            "add_frames": add,
            "frames_per_chunk": fpc,
            "recache": "none",
            **FIXED4,
        },
    }
    g["8"] = {"class_type": "DSAStepReport", "inputs": {"report": ["5", 2], "width": 256, "height": 160}}
    res = _run(inprocess_host, g)
    assert res.success, res.error()
    t = (length - 1) // 4 + 1
    first, whole, from_latent = _latent(res, "3"), _latent(res, "5"), _latent(res, "7")
    assert first.shape == (1, 16, t, 4, 4) and torch.isfinite(first).all()
    assert whole.shape[2] == t + add // 4 and torch.equal(whole[:, :, :t], first)
    assert from_latent.shape == whole.shape
    chunks = _report(res, "3")["chunks"]
    assert len(chunks) == t // fpc and all(c["num_frames"] == fpc for c in chunks)


@needs_native_ar
def test_causal_ar_model_equals_plain_wan_in_dsa(inprocess_host, ar_files, models_dir):
    """The same weights give the same video whether the host made a WAN21_CausalAR or a WAN21 of them."""
    from testdata import write_tiny_wan

    plain = write_tiny_wan(models_dir / "diffusion_models" / "tiny_unflagged_copy.safetensors").name
    g = _base(ar_files["causal"], ar_files["prompt"])
    g["3"] = _sampler(["1", 0])
    g["11"] = {"class_type": "UNETLoader", "inputs": {"unet_name": plain, "weight_dtype": "default"}}
    g["12"] = _sampler(["11", 0], schedule="self_forcing")
    g["3"]["inputs"]["schedule"] = "self_forcing"
    res = _run(inprocess_host, g)
    assert res.success, res.error()
    assert torch.equal(_latent(res, "3"), _latent(res, "12"))


def test_unsupported_model_error_names_the_families(inprocess_host, ar_files):
    import comfy.model_patcher

    host_model = _pack_module("host_model")
    with pytest.raises(host_model.DSAInputError) as e:  # a MODEL around something that is not a Wan 2.1
        host_model.wan_config_of(comfy.model_patcher.ModelPatcher(torch.nn.Linear(4, 4), "cpu", "cpu"))
    msg = str(e.value)
    assert "Self-Forcing" in msg and "CausVid" in msg and "Causal Forcing" in msg and "KSampler" in msg


# ---- DSA's fixed policy equals the host's own Sampler AR Video ------------------------------------------------------


def _native_graph(files, fpc, length, seed, i2v=False):
    g = _base(files["causal"], files["prompt"], vae=files["vae"] if i2v else None)
    g["30"] = {
        "class_type": "EmptyARVideoLatent",
        "inputs": {"width": 32, "height": 32, "length": length, "batch_size": 1},
    }
    model, latent = ["1", 0], ["30", 0]
    if i2v:
        g["31"] = {
            "class_type": "ARVideoI2V",
            "inputs": {
                "model": ["1", 0],
                "vae": ["20", 0],
                "start_image": ["21", 0],
                "width": 32,
                "height": 32,
                "length": length,
                "batch_size": 1,
            },
        }
        model, latent = ["31", 0], ["31", 1]
    g["32"] = {"class_type": "SamplerARVideo", "inputs": {"num_frame_per_block": fpc}}
    g["33"] = {
        "class_type": "BasicScheduler",
        "inputs": {"model": model, "scheduler": "simple", "steps": 4, "denoise": 1.0},
    }
    g["34"] = {"class_type": "RandomNoise", "inputs": {"noise_seed": seed}}
    g["35"] = {
        "class_type": "CFGGuider",
        "inputs": {"model": model, "positive": ["2", 0], "negative": ["2", 0], "cfg": 1.0},
    }
    g["36"] = {
        "class_type": "SamplerCustomAdvanced",
        "inputs": {
            "noise": ["34", 0],
            "guider": ["35", 0],
            "sampler": ["32", 0],
            "sigmas": ["33", 0],
            "latent_image": latent,
        },
    }
    extra = {"start_image": ["21", 0], "vae": ["20", 0]} if i2v else {}
    g["3"] = _sampler(["1", 0], seed=seed, fpc=fpc, length=length, noise="sampler_ar_video", **extra)
    return g


@needs_native_ar
@pytest.mark.parametrize(
    "fpc,length,i2v",
    [(1, 13, False), (3, 21, False), (1, 13, True)],
    ids=["frame-wise", "chunk-wise", "frame-wise-i2v"],
)
def test_fixed_policy_equals_hosts_sampler_ar_video(inprocess_host, ar_files, fpc, length, i2v):
    res = _run(inprocess_host, _native_graph(ar_files, fpc, length, seed=123, i2v=i2v))
    assert res.success, res.error()
    native, dsa = _latent(res, "36"), _latent(res, "3")
    assert native.shape == dsa.shape
    scale = native.abs().max()
    err = (native - dsa).abs().max() / scale
    print(f"\nmax |native - DSA| / max |native| = {float(err):.2e} ({'i2v ' if i2v else ''}fpc {fpc})")
    assert err < 1e-5
    # and a different seed moves both away (the comparison is not vacuous)
    other = _run(inprocess_host, _native_graph(ar_files, fpc, length, seed=124, i2v=i2v))
    assert (_latent(other, "36") - native).abs().max() / scale > 1e-2


def test_loader_error_names_the_supported_families(inprocess_host, ar_files, models_dir):
    import shutil

    wrong = models_dir / "diffusion_models" / "not_a_wan_generator.safetensors"
    shutil.copy(models_dir / "vae" / ar_files["vae"], wrong)
    ok, err, _, node_errors = inprocess_host.validate(
        {
            "1": {
                "class_type": "DSAModelLoader",
                "inputs": {"generator": wrong.name, "head": "none", "weight_dtype": "default"},
            },
            "2": {"class_type": "DSAPromptEmbedding", "inputs": {"embedding": ar_files["prompt"]}},
            "3": _sampler(["1", 0]),
            "4": {"class_type": "SaveLatent", "inputs": {"samples": ["3", 0], "filename_prefix": "t"}},
        }
    )
    assert not ok
    msg = str(node_errors["1"])
    assert "not a Wan 2.1 checkpoint" in msg and "Causal Forcing" in msg and "Self-Forcing" in msg


@pytest.mark.parametrize("loader", ["UNETLoader", "DSAModelLoader"])
def test_causal_ar_file_walks_its_own_schedule_through_the_dsa_loader_on_every_host(inprocess_host, ar_files, loader):
    """schedule 'model' on a causal-AR repack: Causal Forcing's shift-5 levels 1.0, 0.9375, 0.8333, 0.625 through
    DSA Model Loader on every host (it reads the file's metadata); UNETLoader gets them only where the host knows
    causal-AR files (0.33), and plain Wan 2.1's shift 8 on 0.3.75 (README says so)."""
    import comfy.model_base

    g = _base(ar_files["causal"], ar_files["prompt"])
    if loader == "DSAModelLoader":
        g["1"] = {
            "class_type": "DSAModelLoader",
            "inputs": {"generator": ar_files["causal"], "head": "none", "weight_dtype": "default"},
        }
    res = _run(inprocess_host, g | {"3": _sampler(["1", 0])})
    assert res.success, res.error()
    walked = _report(res, "3")["chunks"][0]["sigmas"]
    native = hasattr(comfy.model_base, "WAN21_CausalAR")
    if loader == "DSAModelLoader" or native:
        assert walked == pytest.approx([1.0, 0.9375, 5 / 6, 0.625], rel=1e-6)
    else:
        assert walked == pytest.approx([1.0, 0.96, 0.8889, 0.7273], abs=1e-4)  # Wan 2.1's shift 8
    # a plain Wan 2.1 file through the DSA loader keeps the host's shift 8
    g["1"] = {
        "class_type": "DSAModelLoader",
        "inputs": {"generator": ar_files["plain"], "head": "none", "weight_dtype": "default"},
    }
    res = _run(inprocess_host, g | {"3": _sampler(["1", 0])})
    assert _report(res, "3")["chunks"][0]["sigmas"][1] == pytest.approx(0.96, abs=1e-4)
