"""Bad numbers and resource limits in dsa_core: non-finite steps fail with their likely source, the memory
estimate refuses what cannot fit (and says how to fix it), a stop hook runs between transformer blocks."""

import math

import pytest
import torch

from dsa_core.ar_sampler import sample_video
from dsa_core.causal_wan import CausalWan
from dsa_core.confidence_head import ConfidenceHead, HeadConfig
from dsa_core.config import TINY, WAN21_T2V_1_3B
from dsa_core.finite import NonFiniteError
from dsa_core.kv_cache import KVCache
from dsa_core.memory_estimate import GIB, USABLE_SHARE, estimate_sampling_memory, refusal_message
from dsa_core.policies import ConfidencePolicy, FixedSteps
from dsa_core.wan_model import WanDiT, init_random_weights

H, W = 4, 6


def tiny(seed=0):
    return CausalWan(init_random_weights(WanDiT(TINY), seed=seed).eval(), TINY)


def text_of(model, value=None, seed=0):
    ctx = torch.randn(1, 5, TINY.text_dim, generator=torch.Generator().manual_seed(seed))
    if value is not None:
        ctx[0, 2, 7] = value
    with torch.no_grad():
        return model.encode_text(ctx)


def run(model, text, **kw):
    return sample_video(model, text, num_frames=3, latent_h=H, latent_w=W, chunk_frames=3, seed=0, **kw)


def test_finite_run_is_untouched():
    model = tiny()
    frames, _, record = run(model, text_of(model), policy=FixedSteps(2))
    assert torch.isfinite(frames).all() and record.chunks[0].steps == 2


def test_nan_weights_are_named():
    model = tiny()
    with torch.no_grad():
        model.dit.blocks[1].ffn[0].weight[0, 0] = float("nan")
    # the fixed policy reads no confidence, so the chunk's output is checked once, after its last (4th) step
    with pytest.raises(NonFiniteError, match=r"chunk 0, step 4.*weights hold NaN/Inf.*blocks\.1\.ffn\.0\.weight"):
        run(model, text_of(model))


def test_nan_weights_that_also_poison_the_prompt_kv_are_named_as_weights():
    """NaN in the text embedding makes every prompt K/V NaN too: the weights are the source."""
    model = tiny()
    with torch.no_grad():
        model.dit.text_embedding[0].weight[2, 1] = float("nan")
    text = text_of(model)
    assert not all(torch.isfinite(t).all() for kv in text.kv for t in kv)
    with pytest.raises(NonFiniteError, match=r"weights hold NaN/Inf.*text_embedding\.0\.weight"):
        run(model, text)


def test_nan_conditioning_is_named():
    model = tiny()
    with pytest.raises(NonFiniteError, match="prompt conditioning holds NaN"):
        run(model, text_of(model, value=float("nan")))


def test_inf_head_is_named():
    model = tiny()
    head = ConfidenceHead(HeadConfig(dim=TINY.dim, hidden_dim=16))
    with torch.no_grad():
        head.fc1.weight.fill_(float("inf"))  # inf weights meet signed inputs: inf - inf = NaN confidences
    with pytest.raises(NonFiniteError, match="confidence head returned NaN/Inf"):
        run(model, text_of(model), head=head, policy=ConfidencePolicy(0.5, min_steps=1, max_steps=4))


def test_fp16_overflow_is_named():
    model = tiny()
    with torch.no_grad():
        model.dit.head.head.weight.mul_(1e4)  # finite weights whose output overflows fp16
        model.dit.head.head.bias.fill_(6e4)
    model.dit.half()
    with pytest.raises(NonFiniteError, match="overflowed fp16"):
        run(model, text_of(model).to(dtype=torch.float16), dtype=torch.float16)


def test_between_blocks_hook_runs_once_per_block_and_its_exception_stops_the_run():
    model = tiny()
    calls = []
    model.between_blocks = lambda: calls.append(1)
    run(model, text_of(model), policy=FixedSteps(2))
    assert len(calls) == TINY.num_layers * 3  # 2 steps + the commit pass, each over every block

    class Stop(Exception):
        pass

    def stop_at_second_block():
        calls.append(1)
        if len(calls) == 2:
            raise Stop

    calls.clear()
    model.between_blocks = stop_at_second_block
    with pytest.raises(Stop):
        run(model, text_of(model), policy=FixedSteps(2))
    assert len(calls) == 2  # stopped inside the first step, after one block


def test_estimate_counts_the_kv_cache_at_capacity_and_grows_with_size():
    kw = dict(latent_h=60, latent_w=104, chunk_frames=3, dtype=torch.bfloat16)
    est = estimate_sampling_memory(WAN21_T2V_1_3B, total_frames=21, **kw)
    assert est.kv_cache == KVCache.bytes_required(
        WAN21_T2V_1_3B, 60, 104, None, 3, dtype=torch.bfloat16, total_frames=21
    )
    longer = estimate_sampling_memory(WAN21_T2V_1_3B, total_frames=81, **kw)
    rolling = estimate_sampling_memory(WAN21_T2V_1_3B, total_frames=81, window_frames=12, sink_frames=3, **kw)
    assert longer.kv_cache > est.kv_cache > rolling.kv_cache
    assert (
        rolling.kv_cache
        == estimate_sampling_memory(WAN21_T2V_1_3B, total_frames=810, window_frames=12, sink_frames=3, **kw).kv_cache
    )
    chunked = estimate_sampling_memory(WAN21_T2V_1_3B, total_frames=21, attention="chunked", **kw)
    assert chunked.attention > 0 == est.attention


def test_refusal_states_estimate_free_memory_and_fixes():
    est = estimate_sampling_memory(
        WAN21_T2V_1_3B, latent_h=1024, latent_w=1024, chunk_frames=3, total_frames=21, dtype=torch.bfloat16
    )
    # admitted up to 90% of the free memory, refused just above it (4096x4096x81 at 18.44 GiB of 18.79 free was not)
    fits = math.ceil(est.total / USABLE_SHARE)
    assert refusal_message(est, fits, device="cuda:0", window_frames=None, dtype=torch.bfloat16) is None
    assert "at most 90%" in refusal_message(est, fits - 64, device="cuda:0", window_frames=None, dtype=torch.bfloat16)
    assert refusal_message(est, est.total, device="cuda:0", window_frames=None, dtype=torch.bfloat16) is not None
    msg = refusal_message(est, 8 * GIB, device="cuda:0", window_frames=None, dtype=torch.bfloat16)
    assert f"{est.total / GIB:.2f} GiB" in msg and "8.00 GiB is free" in msg
    for fix in ("cache_window", "sink_frames", "width/height or length", "frames_per_chunk", "fp8"):
        assert fix in msg
    windowed = refusal_message(est, 8 * GIB, device="cpu", window_frames=12, dtype=torch.bfloat16)
    assert "cache_window" not in windowed


def test_chunked_attention_follows_the_hosts_block_choice():
    from dsa_core.memory_estimate import chunked_attention_bytes

    bh, q, k = 12, 9000, 30000
    assert chunked_attention_bytes(bh, q, k, None) == 2 * bh * 1024 * k * 4
    roomy = bh * 4 * 4096 * 4 * k  # just room for the largest block (scores <= free / 4)
    assert chunked_attention_bytes(bh, q, k, roomy) == 2 * bh * 4096 * k * 4
    assert chunked_attention_bytes(bh, q, k, roomy // 2) == 2 * bh * 2048 * k * 4
    assert chunked_attention_bytes(bh, q, k, 1000) == 2 * bh * 512 * 512 * 4  # keys chunked too
    assert chunked_attention_bytes(bh, 100, k, roomy) == 2 * bh * 100 * k * 4  # a short chunk: all its queries


def test_sliced_attention_is_the_same_attention_with_a_hook_between_slices():
    from dsa_core.attention import sdpa_attention
    from dsa_core.attention_slices import attention_flops, sliced_attention

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, n, 16, generator=g) for n in (50, 70, 70))
    calls = []
    budget = attention_flops(q, k) / 7
    attn = sliced_attention(sdpa_attention, lambda: calls.append(1), slice_flops=budget)
    assert torch.allclose(attn(q, k, v), sdpa_attention(q, k, v), atol=1e-6)
    assert len(calls) == 7  # one check before each slice
    calls.clear()
    whole = sliced_attention(sdpa_attention, lambda: calls.append(1), slice_flops=attention_flops(q, k))
    assert torch.equal(whole(q, k, v), sdpa_attention(q, k, v)) and not calls  # small calls run whole


def test_a_stop_inside_a_long_attention_call_lands_before_the_next_slice():
    from dsa_core.attention import sdpa_attention
    from dsa_core.attention_slices import attention_flops, sliced_attention

    class Stop(Exception):
        pass

    q = k = v = torch.randn(1, 1, 64, 8)
    seen = []

    def stop_on_third():
        seen.append(1)
        if len(seen) == 3:
            raise Stop

    attn = sliced_attention(sdpa_attention, stop_on_third, slice_flops=attention_flops(q, k) / 8)
    with pytest.raises(Stop):
        attn(q, k, v)
    assert len(seen) == 3
