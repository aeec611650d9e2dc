"""Bad graph inputs through the host's own validation and execution (tests/bad_inputs.py holds the cases): one
clear message each, at queue time filed under the input it concerns, or one execution error from the node."""

import pytest
from bad_inputs import CASES, case_graph, check_execution_errors, check_node_errors, expected_when
from graphs import dsa_graph


def host_version() -> str:
    import comfyui_version

    return comfyui_version.__version__


@pytest.fixture(scope="module")
def files(tiny_models, models_dir):
    from testdata import write_tiny_wan_vae

    return {**tiny_models, "vae": write_tiny_wan_vae(models_dir / "vae" / "tiny_wan_vae_bad_input.safetensors").name}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_one_problem_one_message_on_its_input(inprocess_host, files, case):
    g = case_graph(case, files)
    ok, _err, _, node_errors = inprocess_host.validate(g)
    when = expected_when(case, host_version())
    if when == "ok":
        assert ok, node_errors
        res = inprocess_host.run(g, executor=inprocess_host.executor("none"))
        assert res.success, res.error()
        return
    if when == "queue":
        assert not ok
        check_node_errors(case, node_errors)
        return
    assert ok, node_errors
    res = inprocess_host.run(g, executor=inprocess_host.executor("none"))
    assert not res.success
    check_execution_errors(case, [d for e, d in res.events if e == "execution_error"])


def test_ranges_follow_the_schema(inprocess_host, tiny_models):
    """The checks read the declared ranges: what the schema allows passes, one past it fails."""
    import nodes

    schema = nodes.NODE_CLASS_MAPPINGS["DSASampler"].INPUT_TYPES()["required"]
    hi = schema["max_steps"][1]["max"]
    g = dsa_graph(tiny_models["wan_with_head"], tiny_models["prompt_a"], extend=False, max_steps=hi)
    assert inprocess_host.validate(g)[0]
    g["3"]["inputs"]["max_steps"] = hi + 1
    assert not inprocess_host.validate(g)[0]


def test_suggested_lengths_stay_inside_the_widget_range(inprocess_host, tiny_models):
    g = dsa_graph(tiny_models["wan_with_head"], tiny_models["prompt_a"], extend=False, length=4097)
    res = inprocess_host.run(g, executor=inprocess_host.executor("none"))
    msg = res.error()["exception_message"]
    assert "use length 4089" in msg and "4101" not in msg


@pytest.mark.parametrize(
    "shape, poke, fragment",
    [
        ((1, 0, 32, 3), None, "start_image is 32x0 pixels"),
        ((1, 32, 0, 3), None, "start_image is 0x32 pixels"),
        ((1, 32, 32, 1), None, "1 channel; the VAE encodes RGB"),
        ((1, 32, 32, 2), None, "2 channels; the VAE encodes RGB"),
        ((0, 32, 32, 3), None, "an empty batch"),
        ((32, 32, 3), None, "expected an IMAGE [frames, height, width, channels]"),
        ((1, 32, 32, 3), float("nan"), "holds NaN/Inf"),
        ((1, 32, 32, 3), float("inf"), "holds NaN/Inf"),
    ],
)
def test_start_images_the_vae_cannot_encode_are_named(inprocess_host, shape, poke, fragment):
    """Image tensors no stock node makes (zero sides, 1-2 channels, NaN): one message each, before any encoding."""
    import sys

    import torch

    native_ar = next(m for k, m in sys.modules.items() if k.endswith(".nodes.native_ar") and "DSA" in k)
    image = torch.rand(shape)
    if poke is not None:
        image[0, 3, 4, 1] = poke
    assert fragment in native_ar.start_image_problem(image)
    assert native_ar.start_image_problem(torch.rand(1, 32, 32, 4)) is None  # RGBA: the alpha is dropped


def test_the_toy_vae_on_a_real_wan_model_is_refused(inprocess_host):
    """A Wan-sized model (no file of that size is made here: the rule reads the model's dim) with the Toy VAE."""
    import sys

    toy_vae = next(m for k, m in sys.modules.items() if k.endswith(".nodes.toy_vae") and "DSA" in k)
    assert "Wan 2.1 model (dim 1536)" in toy_vae.vae_mismatch(True, False, 1536)
    assert "connect DSA Toy VAE" in toy_vae.vae_mismatch(False, True, 256)
    assert toy_vae.vae_mismatch(True, True, 256) is None and toy_vae.vae_mismatch(False, False, 1536) is None
    assert toy_vae.vae_mismatch(True, False, 128) is None  # small test models may stream through the toy codec


def test_the_toy_prompts_are_not_offered_as_diffusion_models(inprocess_host):
    """The host lists model folders recursively: the toy's prompt embeddings must not appear in UNETLoader's list
    (it cannot load them); DSA Model Loader still offers the toy model."""
    import nodes

    unet = nodes.NODE_CLASS_MAPPINGS["UNETLoader"].INPUT_TYPES()["required"]["unet_name"][0]
    assert not [n for n in unet if "toy_" in n or n.startswith("prompts")]
    dsa = nodes.NODE_CLASS_MAPPINGS["DSAModelLoader"].INPUT_TYPES()["required"]["generator"]
    options = dsa[1]["options"] if isinstance(dsa[0], str) else dsa[0]
    assert "dsa_toy_wan.safetensors" in options and not [n for n in options if "prompts" in n]


def test_every_pack_node_checks_its_widgets_when_it_runs(inprocess_host):
    """Nodes and inputs added later are covered with no list to keep (nodes/__init__.py wraps every node)."""
    import nodes

    assert len(inprocess_host.pack_nodes) >= 9
    for name in inprocess_host.pack_nodes:
        assert getattr(nodes.NODE_CLASS_MAPPINGS[name].execute.__func__, "_checks_widgets", False), name


def test_latents_the_extender_cannot_continue_are_named(inprocess_host):
    """Tensors no stock node makes (NaN/Inf, odd sides, 4-channel video): one message each, before sampling."""
    import sys

    import torch

    from dsa_core.config import TINY

    sampler_nodes = next(m for k, m in sys.modules.items() if k.endswith(".nodes.sampler_nodes") and "DSA" in k)
    good = torch.randn(1, 16, 3, 4, 4)
    assert sampler_nodes.latent_problem(good, TINY) is None
    for value in (float("nan"), float("inf")):
        bad = good.clone()
        bad[0, 2, 1, 1, 1] = value
        assert "holds NaN/Inf" in sampler_nodes.latent_problem(bad, TINY)
    assert "has 4 channels" in sampler_nodes.latent_problem(torch.randn(1, 4, 3, 4, 4), TINY)
    assert "multiples of 16" in sampler_nodes.latent_problem(torch.randn(1, 16, 3, 5, 4), TINY)


def test_every_combo_is_checked_at_queue_time_on_this_host(inprocess_host):
    """Where the host reads a V3 combo's options at queue time (0.33.0) the combo stays a V3 COMBO; where it
    does not (0.3.75) it is declared in the classic form, its option list, which every host checks."""
    import sys

    import nodes

    combo_input = next(m for k, m in sys.modules.items() if k.endswith(".nodes.combo_input") and "DSA" in k)
    v3 = combo_input.host_checks_v3_combos()
    assert v3 == (host_version() != "0.3.75"), host_version()
    seen = 0
    for name in inprocess_host.pack_nodes:
        cls = nodes.NODE_CLASS_MAPPINGS[name]
        types = {**cls.INPUT_TYPES().get("required", {}), **cls.INPUT_TYPES().get("optional", {})}
        for inp in cls.define_schema().inputs:
            if isinstance(inp, combo_input.io.Combo.Input):
                assert isinstance(inp, combo_input.Combo), (name, inp.id)  # no plain io.Combo in the pack
                kind = types[inp.id][0]
                assert kind == ("COMBO" if v3 or not inp.options else list(inp.options)), (name, inp.id, kind)
                seen += 1
    assert seen >= 12


def test_a_combo_value_is_checked_again_when_the_node_runs(inprocess_host):
    """The node's own schema check stays behind the host's (a caller that skips queue validation)."""
    import nodes

    ladder = nodes.NODE_CLASS_MAPPINGS["DSANoiseLadder"]
    with pytest.raises(Exception, match="schedule 'bogus' is not one of its options"):
        ladder.execute(schedule="bogus", extra_steps=2, custom_timesteps="1000, 750, 500, 250", custom_shift=5.0)
