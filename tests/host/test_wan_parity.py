"""Parity with the real host: our forward equals ComfyUI 0.3.75's WanModel.forward on the same weights,
and CausalWan runs over the host's own WanModel modules."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import host_env  # noqa: E402

host_env.import_comfy_cpu()
import comfy.ldm.wan.model  # noqa: E402
import comfy.ops  # noqa: E402
from comfy.ldm.modules.attention import optimized_attention  # noqa: E402

from dsa_core.causal_wan import CausalWan  # noqa: E402
from dsa_core.checkpoint import load_state_dict_file, save_generator  # noqa: E402
from dsa_core.config import TINY, TINY2, WAN21_T2V_1_3B  # noqa: E402
from dsa_core.reference import chunk_bounds, forward_block_causal  # noqa: E402
from dsa_core.wan_model import WanDiT, init_random_weights  # noqa: E402

TOL = 1e-5


def host_model(cfg, device=None):
    return comfy.ldm.wan.model.WanModel(
        dim=cfg.dim,
        ffn_dim=cfg.ffn_dim,
        num_heads=cfg.num_heads,
        num_layers=cfg.num_layers,
        device=device,
        operations=comfy.ops.disable_weight_init,
    )


@pytest.fixture(scope="module", params=[TINY, TINY2], ids=["tiny", "tiny2"])
def pair(request):
    cfg = request.param
    ours = init_random_weights(WanDiT(cfg), seed=7).eval()
    host = host_model(cfg).eval()
    host.load_state_dict(ours.state_dict(), strict=True)
    return cfg, ours, host


def inputs(batch, frames, h, w, per_frame, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 16, frames, h, w, generator=g)
    t = torch.rand(batch, frames, generator=g) * 1000 if per_frame else torch.rand(batch, generator=g) * 1000
    return x, t, torch.randn(batch, 9, 4096, generator=g)


@pytest.mark.parametrize(
    "batch,frames,h,w,per_frame", [(1, 5, 6, 8, False), (2, 5, 6, 8, True), (1, 7, 4, 6, True), (2, 3, 5, 7, True)]
)
def test_full_forward_matches_host(pair, batch, frames, h, w, per_frame):
    cfg, ours, host = pair
    x, t, ctx = inputs(batch, frames, h, w, per_frame)
    with torch.no_grad():
        ref = host(x, t, ctx)
        got = ours(x, t, ctx)
    assert got.shape == ref.shape == x.shape
    assert ref.abs().mean() > 0.1  # a non-trivial output
    assert (got - ref).abs().max() <= TOL


def test_causal_wan_over_host_modules(pair):
    """The same CausalWan runs over the host-built WanModel (no weight copy), full and chunked."""
    cfg, ours, host = pair
    x, t, ctx = inputs(1, 6, 4, 6, True, seed=3)
    cw_host, cw_ours = CausalWan(host, cfg), CausalWan(ours, cfg)
    with torch.no_grad():
        ref = host(x, t, ctx)
        text_h = cw_host.encode_text(ctx)
        assert (cw_host.forward_full(x, t, text_h).flow - ref).abs().max() <= TOL
        cache_h = cw_host.new_cache(1, 4, 6, 3, window_frames=3, sink_frames=1)
        chunked = torch.cat(
            [cw_host.forward_chunk(x[:, :, s:e], t[:, s:e], text_h, cache_h, s).flow for s, e in chunk_bounds(6, 3)], 2
        )
        masked = forward_block_causal(cw_ours, x, t, cw_ours.encode_text(ctx), 3, 3, 1).flow
    assert (chunked - masked).abs().max() <= TOL


def test_host_optimized_attention_plugs_in(pair):
    cfg, ours, host = pair
    attn = lambda q, k, v: optimized_attention(q, k, v, q.shape[1], skip_reshape=True)  # noqa: E731
    cw = CausalWan(host, cfg, attention=attn)
    x, t, ctx = inputs(1, 3, 6, 8, True, seed=5)
    with torch.no_grad():
        assert (cw.forward_full(x, t, cw.encode_text(ctx)).flow - host(x, t, ctx)).abs().max() <= TOL


def test_saved_file_loads_into_host(tmp_path, pair):
    cfg, ours, _ = pair
    path = tmp_path / "g.safetensors"
    save_generator(ours, path)
    sd, _ = load_state_dict_file(path)
    host = host_model(cfg)
    host.load_state_dict(sd, strict=True)
    x, t, ctx = inputs(1, 2, 4, 4, False)
    with torch.no_grad():
        assert (host(x, t, ctx) - ours(x, t, ctx)).abs().max() <= TOL


def test_1_3b_key_set_equals_host_on_meta():
    ours = {k: tuple(v.shape) for k, v in WanDiT(WAN21_T2V_1_3B, device="meta").state_dict().items()}
    host = {k: tuple(v.shape) for k, v in host_model(WAN21_T2V_1_3B, device="meta").state_dict().items()}
    assert ours == host
