"""Wan 2.1 module tree: key names and shapes of the real configs, checked on the meta device."""

import math

import torch

from dsa_core.checkpoint import expected_shapes, infer_config
from dsa_core.config import TINY, WAN21_T2V_1_3B, WAN21_T2V_14B
from dsa_core.wan_model import WanDiT, init_random_weights


def wan21_layout(dim, ffn, layers, text_dim=4096, freq_dim=256):
    """The Wan 2.1 T2V checkpoint layout, written out by hand (independent of WanDiT)."""
    keys = {
        "patch_embedding.weight": (dim, 16, 1, 2, 2),
        "patch_embedding.bias": (dim,),
        "text_embedding.0.weight": (dim, text_dim),
        "text_embedding.0.bias": (dim,),
        "text_embedding.2.weight": (dim, dim),
        "text_embedding.2.bias": (dim,),
        "time_embedding.0.weight": (dim, freq_dim),
        "time_embedding.0.bias": (dim,),
        "time_embedding.2.weight": (dim, dim),
        "time_embedding.2.bias": (dim,),
        "time_projection.1.weight": (6 * dim, dim),
        "time_projection.1.bias": (6 * dim,),
        "head.head.weight": (64, dim),
        "head.head.bias": (64,),
        "head.modulation": (1, 2, dim),
    }
    for i in range(layers):
        p = f"blocks.{i}."
        for a in ("self_attn", "cross_attn"):
            for proj in "qkvo":
                keys[p + f"{a}.{proj}.weight"] = (dim, dim)
                keys[p + f"{a}.{proj}.bias"] = (dim,)
            keys[p + f"{a}.norm_q.weight"] = (dim,)
            keys[p + f"{a}.norm_k.weight"] = (dim,)
        keys[p + "norm3.weight"] = (dim,)
        keys[p + "norm3.bias"] = (dim,)
        keys[p + "ffn.0.weight"] = (ffn, dim)
        keys[p + "ffn.0.bias"] = (ffn,)
        keys[p + "ffn.2.weight"] = (dim, ffn)
        keys[p + "ffn.2.bias"] = (dim,)
        keys[p + "modulation"] = (1, 6, dim)
    return keys


def test_1_3b_keys_and_shapes_on_meta():
    model = WanDiT(WAN21_T2V_1_3B, device="meta")
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == wan21_layout(1536, 8960, 30)
    assert len(got) == 30 * 27 + 15
    assert all(p.is_meta for p in model.parameters())
    n = sum(math.prod(s) for s in got.values())
    assert 1.40e9 < n < 1.45e9, n  # Wan2.1-T2V-1.3B has ~1.42 B parameters


def test_14b_keys_and_shapes_on_meta():
    got = expected_shapes(WAN21_T2V_14B)
    assert got == wan21_layout(5120, 13824, 40)
    n = sum(math.prod(s) for s in got.values())
    assert 13.5e9 < n < 14.5e9, n


def test_infer_config_from_meta_state_dicts():
    for cfg in (WAN21_T2V_1_3B, WAN21_T2V_14B, TINY):
        assert infer_config(WanDiT(cfg, device="meta").state_dict()) == cfg


def test_init_random_weights_is_seeded_and_nonzero_modulation():
    a = init_random_weights(WanDiT(TINY), seed=3)
    b = init_random_weights(WanDiT(TINY), seed=3)
    c = init_random_weights(WanDiT(TINY), seed=4)
    for (k, va), vb, vc in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(va, vb), k
        assert not torch.equal(va, vc), k
    assert a.blocks[0].modulation.abs().mean() > 0.01
    assert a.patch_embedding.weight.dtype == torch.float32


def test_dit_forward_shape_and_dtype_bf16():
    model = init_random_weights(WanDiT(TINY, dtype=torch.bfloat16), seed=0)
    assert model.blocks[0].self_attn.q.weight.dtype == torch.bfloat16
    assert model.patch_embedding.weight.dtype == torch.float32  # as the host keeps it
    x = torch.randn(1, 16, 2, 4, 6, dtype=torch.bfloat16)
    out = model(x, torch.tensor([500.0]), torch.randn(1, 3, 4096, dtype=torch.bfloat16))
    assert out.shape == x.shape and out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()
