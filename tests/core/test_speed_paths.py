"""The forward's speed properties, checked on the CPU: what would be a host-device sync on CUDA (one value read
per denoising step, nothing in the forward), the KV window read as a view with a fixed shape once the window is
full, the block-wide modulation with the host's per-block rounding, and the RoPE against complex rotation."""

from __future__ import annotations

import pytest
import torch

from dsa_core.ar_sampler import sample_video
from dsa_core.confidence_head import ConfidenceHead
from dsa_core.policies import ConfidencePolicy, FixedSteps, HeuristicPolicy
from dsa_core.rope import apply_rope, rope_cos_sin, rope_freqs

# Tensor -> Python conversions: on CUDA each one waits for the device (a host-device sync).
CONVERSIONS = ("item", "tolist", "__float__", "__int__", "__bool__", "__index__", "numpy")


@pytest.fixture
def count_conversions(monkeypatch):
    calls = []
    for name in CONVERSIONS:
        orig = getattr(torch.Tensor, name)

        def wrapper(self, *a, _orig=orig, _name=name, **k):
            calls.append(_name)
            return _orig(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, wrapper)
    return calls


@pytest.mark.parametrize("policy_kind", ["confidence", "heuristic", "fixed"])
def test_one_device_read_per_step(tiny_cw, count_conversions, policy_kind):
    """The stopping rule, the records and the non-finite check read one transfer per step (per chunk when no
    confidence is computed); the forward reads none."""
    text = tiny_cw.encode_text(torch.randn(1, 6, 4096, generator=torch.Generator().manual_seed(1)))
    head = ConfidenceHead(tiny_cw.config.dim).eval() if policy_kind == "confidence" else None
    policy = {
        "confidence": ConfidencePolicy(threshold=0.999, min_steps=1, max_steps=4),
        "heuristic": HeuristicPolicy(threshold=0.999, min_steps=1, max_steps=4),
        "fixed": FixedSteps(),
    }[policy_kind]
    count_conversions.clear()
    _, _, rec = sample_video(
        tiny_cw,
        text,
        num_frames=9,
        latent_h=4,
        latent_w=6,
        chunk_frames=3,
        policy=policy,
        head=head,
        seed=3,
        record_confidence=False,
    )
    steps = rec.total_steps
    # one transfer per step that has a confidence (it carries the non-finite flag too); without one, one per chunk
    reads = {"confidence": steps, "heuristic": steps - len(rec.chunks), "fixed": len(rec.chunks)}[policy_kind]
    assert steps >= 9
    assert count_conversions == ["tolist"] * reads, count_conversions
    if policy_kind == "confidence":
        assert all(len(c.frame_confidence) == c.steps and len(c.frame_confidence[0]) == 3 for c in rec.chunks)
        assert all(c.confidence[i] == min(c.frame_confidence[i]) for c in rec.chunks for i in range(c.steps))


def test_visible_window_is_a_view_with_a_static_shape_once_full(tiny_cw):
    text = tiny_cw.encode_text(torch.randn(1, 6, 4096))
    cache = tiny_cw.new_cache(1, 4, 6, 3, window_frames=6, sink_frames=1)
    shapes = []
    with torch.no_grad():
        for start in range(0, 18, 3):
            tiny_cw.forward_chunk(torch.randn(1, 16, 3, 4, 6), torch.full((1,), 500.0), text, cache, start)
            k, v = cache.visible(0, start + 3)
            storage_k, storage_v = cache._kv[0]
            assert k.data_ptr() == storage_k.data_ptr() and v.data_ptr() == storage_v.data_ptr()  # no copy
            assert k._base is not None
            shapes.append(tuple(k.shape))
    full = cache.capacity_frames * cache.tokens_per_frame
    assert [s[2] for s in shapes] == [3 * 6, 6 * 6, full, full, full, full]
    assert len(set(shapes[2:])) == 1


def test_ring_wrap_writes_each_frame_to_its_slot(tiny_cw):
    """A chunk whose frames wrap the ring is written as two slice copies, each frame at cache.slot(frame)."""
    cache = tiny_cw.new_cache(1, 2, 2, 3, window_frames=5, sink_frames=1)
    n, d, tpf = cache.num_heads, cache.head_dim, cache.tokens_per_frame
    for start in (0, 3, 6, 9):
        cache.begin_chunk(start, 3)
        k = torch.arange(start, start + 3, dtype=torch.float32).repeat_interleave(tpf)[None, None, :, None]
        k = k.expand(1, n, 3 * tpf, d).contiguous()
        cache.write(0, start, k, -k)
    assert [cache.slot(f) for f in (9, 10, 11)] == [4, 5, 1]
    ks, vs = cache._kv[0]
    frame_in_slot = ks[0, 0, :, 0, 0].tolist()
    assert frame_in_slot == [0.0, 11.0, 7.0, 8.0, 9.0, 10.0]
    assert (vs == -ks).all()


def test_block_modulations_round_as_the_host(tiny_cw):
    """All blocks' modulation vectors in one add equal the host's per-block (modulation + e0), then 1 + scale,
    bit for bit in bf16."""
    cw = tiny_cw
    g = torch.Generator().manual_seed(0)
    e0 = torch.randn(2, 3, 6, cw.config.dim, generator=g).bfloat16()
    x = torch.zeros(1, dtype=torch.bfloat16)
    mods = cw._modulations(e0, x)
    assert mods.shape == (cw.config.num_layers, 2, 3, 6, cw.config.dim) and mods.dtype == torch.bfloat16
    for i, blk in enumerate(cw.dit.blocks):
        e = (blk.modulation.to(torch.bfloat16).unsqueeze(0) + e0).unbind(2)
        for j in range(6):
            want = 1 + e[j] if j in (1, 4) else e[j]
            assert torch.equal(mods[i, :, :, j], want), (i, j)


def test_rope_is_a_complex_rotation():
    cos, sin = rope_cos_sin(128, 5, 2, 3, 4)
    x = torch.randn(2, 24, 3, 128)
    got = apply_rope(x, rope_freqs(cos, sin))
    z = torch.view_as_complex(x.double().unflatten(-1, (-1, 2)).contiguous())
    rot = torch.polar(torch.ones_like(cos.double()), torch.atan2(sin.double(), cos.double()))
    want = torch.view_as_real(z * rot[None, :, None, :]).flatten(-2)
    assert (got.double() - want).abs().max() <= 1e-5
    xb = x.bfloat16()
    assert apply_rope(xb, rope_freqs(cos, sin)).dtype == torch.bfloat16
