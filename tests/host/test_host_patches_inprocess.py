"""The host's transformer_options inside DSA's forward, one forward at a time against the host's own WanModel.forward
(in-process, the pack's modules as the host imported them): the same attention override is called the same number of
times, with the same block_index / total_blocks, and changes the output exactly as it changes the host's."""

import sys

import pytest
import torch

TOL = 1e-5


def _pack(name):
    return next(m for k, m in sys.modules.items() if k.endswith(".nodes." + name) and "DSA" in k)


@pytest.fixture(scope="module")
def pair(inprocess_host):
    import comfy.ldm.wan.model
    import comfy.ops

    from dsa_core.config import TINY2
    from dsa_core.wan_model import WanDiT, init_random_weights

    cfg = TINY2
    host = comfy.ldm.wan.model.WanModel(
        dim=cfg.dim,
        ffn_dim=cfg.ffn_dim,
        num_heads=cfg.num_heads,
        num_layers=cfg.num_layers,
        operations=comfy.ops.disable_weight_init,
    ).eval()
    host.load_state_dict(init_random_weights(WanDiT(cfg), seed=7).state_dict(), strict=True)
    return cfg, host


def _options(scale, seen):
    def optimized_attention_override(func, *args, **kwargs):
        to = kwargs["transformer_options"]
        seen.append((to.get("block_index"), to.get("total_blocks"), to.get("block_type")))
        return func(*args, **kwargs) * scale

    return {"optimized_attention_override": optimized_attention_override}


def _dsa_forward(cfg, host, to, x, t, ctx):
    host_model, host_forward = _pack("host_model"), _pack("host_forward")
    cw = host_forward.HostCausalWan(host, cfg, to, host_model.host_attention(to), None)
    return cw.forward_full(x, t, cw.encode_text(ctx)).flow


@pytest.mark.parametrize("scale", [1.0, 0.5, -1.0])
def test_override_changes_dsas_forward_exactly_as_the_hosts(pair, scale):
    cfg, host = pair
    g = torch.Generator().manual_seed(3)
    x, t, ctx = torch.randn(1, 16, 3, 6, 8, generator=g), torch.tensor([700.0]), torch.randn(1, 9, 4096, generator=g)
    seen_host, seen_dsa = [], []
    with torch.no_grad():
        plain = host(x, t, ctx)
        ref = host(x, t, ctx, transformer_options=_options(scale, seen_host))
        got = _dsa_forward(cfg, host, _options(scale, seen_dsa), x, t, ctx)
    # self- and cross-attention of every block, in order, with the per-block options newer hosts set (0.3.75 sets none)
    expected = [(i, cfg.num_layers, "double") for i in range(cfg.num_layers) for _ in range(2)]
    assert seen_dsa == expected
    assert seen_host in (expected, [(None, None, None)] * len(expected))
    assert (got - ref).abs().max() <= TOL * ref.abs().max()
    change = float((ref - plain).abs().max() / plain.abs().max())
    assert (change == 0.0) if scale == 1.0 else (change > 0.05)


def test_transformer_options_of_the_model_are_copied_not_changed(inprocess_host, pair):
    """A cached MODEL is never changed: the run's options are a copy, with the patcher's wrappers merged in."""
    import comfy.model_patcher

    cfg, host = pair
    patcher = comfy.model_patcher.ModelPatcher(host, torch.device("cpu"), torch.device("cpu"))
    patcher.model_options["transformer_options"]["patches"] = {"attn1_patch": [lambda a: a]}
    patcher.add_wrapper_with_key("outer_sample", "probe", lambda executor, *a: executor(*a))
    before = repr(patcher.model_options)
    to = _pack("host_patches").transformer_options(patcher)
    to["block_index"] = 5
    to["patches"]["attn1_patch"].append(None)
    assert repr(patcher.model_options) == before
    assert list(to["wrappers"]["outer_sample"]) == ["probe"]
