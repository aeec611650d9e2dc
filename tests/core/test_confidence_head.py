import pytest
import torch
from safetensors.torch import save_file

from dsa_core.checkpoint import CheckpointError
from dsa_core.confidence_head import (
    HEAD_PREFIX,
    META_CONFIG,
    ConfidenceHead,
    HeadConfig,
    head_state_dict,
    load_head,
    save_head,
)
from dsa_core.config import TINY, TINY2, WAN21_T2V_1_3B
from dsa_core.wan_model import WanDiT, init_random_weights


def test_shape_range_and_time_broadcast():
    head = ConfidenceHead(HeadConfig(dim=128, hidden_dim=32))
    h, e = torch.randn(2, 3, 128), torch.randn(2, 3, 128) * 100
    c = head(h, e)
    assert c.shape == (2, 3) and c.dtype == torch.float32 and torch.all((c >= 0) & (c <= 1))
    assert torch.allclose(head(h, e[:, 0]), head(h, e[:, :1].expand(-1, 3, -1)))
    assert head(h.bfloat16(), e.bfloat16()).dtype == torch.float32
    with pytest.raises(ValueError, match="hidden size 128"):
        head(torch.randn(1, 3, 64), torch.randn(1, 3, 128))


def test_saturated_sigmoid_is_exactly_one():
    head = ConfidenceHead(HeadConfig(dim=128, hidden_dim=8))
    with torch.no_grad():
        head.out.bias.fill_(100.0)
    assert torch.all(head(torch.randn(1, 3, 128), torch.randn(1, 3, 128)) == 1.0)


def test_param_ratio_at_1_3b_shape():
    gen = WanDiT(WAN21_T2V_1_3B, device="meta")
    n_gen = sum(p.numel() for p in gen.parameters())
    n_head = sum(p.numel() for p in ConfidenceHead(WAN21_T2V_1_3B.dim, device="meta").parameters())
    assert n_head / n_gen < 0.01


def test_save_load_roundtrip(tmp_path):
    head = ConfidenceHead(HeadConfig(dim=128, hidden_dim=16))
    p = tmp_path / "head.safetensors"
    save_head(head, p, {"note": "test"})
    from safetensors import safe_open

    with safe_open(str(p), "pt") as f:
        assert all(k.startswith(HEAD_PREFIX) for k in f.keys())
        assert HeadConfig.from_json(f.metadata()[META_CONFIG]) == head.config
    loaded = load_head(p, expected_dim=128)
    assert loaded.config == head.config
    h, e = torch.randn(1, 3, 128), torch.randn(1, 3, 128)
    assert torch.equal(loaded(h, e), head(h, e))


def test_combined_file_and_config_from_shapes(tmp_path):
    gen = init_random_weights(WanDiT(TINY))
    head = ConfidenceHead(HeadConfig(dim=128, hidden_dim=16))
    sd = {"model.diffusion_model." + k: v.contiguous() for k, v in gen.state_dict().items()}
    sd.update({"model.diffusion_model." + k: v for k, v in head_state_dict(head).items()})
    p = tmp_path / "combined.safetensors"
    save_file(sd, str(p))  # no metadata: config inferred from shapes
    loaded = load_head(p)
    assert loaded.config == head.config


def test_clear_errors(tmp_path):
    gen = init_random_weights(WanDiT(TINY))
    g = tmp_path / "generator.safetensors"
    save_file({k: v.contiguous() for k, v in gen.state_dict().items()}, str(g))
    with pytest.raises(CheckpointError, match="generator checkpoint"):
        load_head(g)
    h = tmp_path / "head.safetensors"
    save_head(ConfidenceHead(TINY2.dim), h)
    with pytest.raises(CheckpointError, match="dim 256.*dim 128"):
        load_head(h, expected_dim=TINY.dim)
    with pytest.raises(CheckpointError, match="dim 256"):
        ConfidenceHead(TINY2.dim).check_generator(TINY)
    with pytest.raises(CheckpointError, match="no such file"):
        load_head(tmp_path / "missing.safetensors")
    o = tmp_path / "other.safetensors"
    save_file({"foo.weight": torch.zeros(2)}, str(o))
    with pytest.raises(CheckpointError, match="no confidence head"):
        load_head(o)
