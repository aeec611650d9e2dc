"""Chunk-by-chunk generation through the KV cache equals one block-causal masked forward."""

import pytest
import torch
from wan_testutil import make_inputs

from dsa_core.causal_wan import sinusoidal_embedding
from dsa_core.config import TINY
from dsa_core.kv_cache import KVCache
from dsa_core.reference import block_causal_frame_mask, chunk_bounds, forward_block_causal

TOL = 1e-5


def run_chunks(cw, x, t, text, chunk, window=None, sink=0, junk_passes=0, seed=123):
    """Generate chunk by chunk. junk_passes > 0 first writes each chunk's slot with other inputs
    (like earlier denoising steps) before the final pass, which must overwrite them."""
    b, _, f, h, w = x.shape
    cache = cw.new_cache(
        b, h, w, chunk, window_frames=window, sink_frames=sink, total_frames=f if window is None else None
    )
    g = torch.Generator().manual_seed(seed)
    flows, hiddens = [], []
    for s, e in chunk_bounds(f, chunk):
        for _ in range(junk_passes):
            cw.forward_chunk(
                torch.randn(x[:, :, s:e].shape, generator=g), torch.rand(b, generator=g) * 1000, text, cache, s
            )
        out = cw.forward_chunk(x[:, :, s:e], t[:, s:e], text, cache, s)
        flows.append(out.flow)
        hiddens.append(out.hidden)
        assert cache.frames_written == e
    return torch.cat(flows, 2), torch.cat(hiddens, 1), cache


@pytest.mark.parametrize("chunk,window,sink", [(1, None, 0), (3, None, 0), (1, 3, 1), (3, 3, 1), (3, 4, 2)])
def test_chunked_equals_block_causal(tiny_cw, chunk, window, sink):
    x, t, ctx = make_inputs(frames=7)
    text = tiny_cw.encode_text(ctx)
    with torch.no_grad():
        ref = forward_block_causal(tiny_cw, x, t, text, chunk, window, sink)
        flow, hidden, _ = run_chunks(tiny_cw, x, t, text, chunk, window, sink)
    assert (flow - ref.flow).abs().max() <= TOL
    assert (hidden - ref.hidden).abs().max() <= TOL


def test_overwrite_then_commit_equals_reference(tiny_cw):
    """Denoising passes at other noise levels write the chunk's slot; the final pass overwrites them."""
    x, t, ctx = make_inputs(frames=7, seed=5)
    text = tiny_cw.encode_text(ctx)
    with torch.no_grad():
        ref = forward_block_causal(tiny_cw, x, t, text, 3, 3, 1)
        flow, _, _ = run_chunks(tiny_cw, x, t, text, 3, 3, 1, junk_passes=2)
    assert (flow - ref.flow).abs().max() <= TOL


def test_mask_actually_matters(tiny_cw):
    """The references differ from each other, so the equalities above are not vacuous."""
    x, t, ctx = make_inputs(frames=7)
    text = tiny_cw.encode_text(ctx)
    with torch.no_grad():
        full = tiny_cw.forward_full(x, t, text).flow
        causal = forward_block_causal(tiny_cw, x, t, text, 3).flow
        rolled = forward_block_causal(tiny_cw, x, t, text, 3, 3, 1).flow
    assert (full[:, :, :3] - causal[:, :, :3]).abs().max() > 1e-3  # the first chunk cannot see the future
    assert torch.allclose(causal[:, :, :3], rolled[:, :, :3], atol=TOL)  # nothing evicted yet
    assert (causal[:, :, 3:] - rolled[:, :, 3:]).abs().max() > 1e-3  # frames 1, 2 fall out of the window


def test_cache_holds_roped_k_at_absolute_positions(tiny_cw):
    """After the window has rolled, each slot holds K rotated by its frame's absolute index."""
    x, t, ctx = make_inputs(frames=7, seed=4)
    text = tiny_cw.encode_text(ctx)
    captured = {}

    def capture(layer, q, k, v):
        captured.setdefault(layer, k)
        return tiny_cw.attention(q, k, v)

    with torch.no_grad():
        _, _, cache = run_chunks(tiny_cw, x, t, text, 1, 3, 1)
        tiny_cw.run(x, t, text, 0, capture)  # layer 0 K of a full pass equals the chunked one
    k_all = captured[0].unflatten(2, (7, 6))  # [B, H, F, tokens, D]
    assert cache.visible_frames(7) == [0, 4, 5, 6]
    for f in cache.visible_frames(7):
        assert torch.allclose(cache._kv[0][0][:, :, cache.slot(f)], k_all[:, :, f], atol=1e-6), f
    # and RoPE is relative: one isolated chunk gives the same output at any start position
    with torch.no_grad():
        a0 = tiny_cw.forward_chunk(x[:, :, :3], t[:, :3], text, None, 0).flow
        a40 = tiny_cw.forward_chunk(x[:, :, :3], t[:, :3], text, None, 40).flow
    assert torch.allclose(a0, a40, atol=1e-4)


def test_frame_mask_shape():
    m = block_causal_frame_mask(7, 3, 3, 1)
    assert m[6].tolist() == [True, False, False, False, True, True, True]
    assert m[3].tolist() == [True, False, False, True, True, True, False]
    assert m[0].tolist() == [True, True, True, False, False, False, False]


def test_outputs_shapes_and_time_emb(tiny_cw, tiny_dit):
    x, t, ctx = make_inputs(batch=2, frames=3, h=6, w=8)
    text = tiny_cw.encode_text(ctx)
    with torch.no_grad():
        out = tiny_cw.forward_chunk(x, t, text, None, 0)
        e = tiny_dit.time_embedding(sinusoidal_embedding(TINY.freq_dim, t.reshape(-1))).reshape(2, 3, -1)
        same = tiny_cw.forward_chunk(x, t[:, :1].expand(2, 3), text, None, 0)
        scalar_t = tiny_cw.forward_chunk(x, t[:, 0], text, None, 0)
    assert out.flow.shape == (2, 16, 3, 6, 8)
    assert out.hidden.shape == (2, 3, TINY.dim) and out.time_emb.shape == (2, 3, TINY.dim)
    assert torch.equal(out.time_emb, e)
    assert torch.allclose(same.flow, scalar_t.flow, atol=1e-6)  # t [B] == t [B, F] with equal frames


def test_text_batch_broadcast(tiny_cw):
    x, t, ctx = make_inputs(batch=2, frames=2)
    text1 = tiny_cw.encode_text(ctx[:1])
    with torch.no_grad():
        a = tiny_cw.forward_chunk(x, t, text1, None, 0).flow
        b = tiny_cw.forward_chunk(x, t, tiny_cw.encode_text(ctx[:1].expand(2, -1, -1)), None, 0).flow
    assert torch.allclose(a, b, atol=1e-6)


def test_frame_start_must_append_or_overwrite(tiny_cw):
    x, t, ctx = make_inputs(frames=3)
    text = tiny_cw.encode_text(ctx)
    cache = tiny_cw.new_cache(1, 4, 6, 3, window_frames=6)
    with torch.no_grad():
        tiny_cw.forward_chunk(x, t, text, cache, 0)
        with pytest.raises(ValueError, match="neither the start of the last chunk"):
            tiny_cw.forward_chunk(x, t, text, cache, 4)
        tiny_cw.forward_chunk(x, t, text, cache, 3)
        with pytest.raises(ValueError, match="neither the start of the last chunk"):
            tiny_cw.forward_chunk(x, t, text, cache, 0)  # an older chunk cannot be rewritten
        with pytest.raises(ValueError, match="keeps its size"):
            tiny_cw.forward_chunk(x[:, :, :2], t[:, :2], text, cache, 3)
    assert cache.frames_written == 6


def test_cache_full_without_window(tiny_cw):
    x, t, ctx = make_inputs(frames=3)
    text = tiny_cw.encode_text(ctx)
    cache = tiny_cw.new_cache(1, 4, 6, 3, total_frames=3)
    with torch.no_grad():
        tiny_cw.forward_chunk(x, t, text, cache, 0)
        with pytest.raises(ValueError, match="cache full"):
            tiny_cw.forward_chunk(x, t, text, cache, 3)
    with pytest.raises(ValueError, match="pass total_frames"):
        tiny_cw.new_cache(1, 4, 6, 3)
    with pytest.raises(ValueError, match="must be >= chunk_frames"):
        tiny_cw.new_cache(1, 4, 6, 3, window_frames=2)


def test_snapshot_is_copy_on_write(tiny_cw):
    x, t, ctx = make_inputs(frames=6, seed=9)
    text = tiny_cw.encode_text(ctx)
    other = torch.randn(1, 16, 3, 4, 6)
    with torch.no_grad():
        cache = tiny_cw.new_cache(1, 4, 6, 3, window_frames=6)
        tiny_cw.forward_chunk(x[:, :, :3], t[:, :3], text, cache, 0)
        snap = cache.snapshot()
        assert snap._kv[0][0].data_ptr() == cache._kv[0][0].data_ptr()  # O(1): nothing copied yet
        # the branch writes other content at frames 3..5; the original must not see it
        tiny_cw.forward_chunk(other, t[:, 3:], text, snap, 3)
        assert snap.frames_written == 6 and cache.frames_written == 3
        a = tiny_cw.forward_chunk(x[:, :, 3:], t[:, 3:], text, cache, 3).flow
        fresh = tiny_cw.new_cache(1, 4, 6, 3, window_frames=6)
        tiny_cw.forward_chunk(x[:, :, :3], t[:, :3], text, fresh, 0)
        b = tiny_cw.forward_chunk(x[:, :, 3:], t[:, 3:], text, fresh, 3).flow
        # and the original's later writes do not reach the snapshot
        k_snap = snap.visible(0, 6)[0].clone()
        again = tiny_cw.forward_chunk(other, t[:, 3:], text, snap, 3).flow
        first = tiny_cw.forward_chunk(other, t[:, 3:], text, snap.snapshot(), 3).flow
    assert torch.equal(a, b)
    assert torch.equal(snap.visible(0, 6)[0], k_snap)
    assert torch.equal(again, first)
    assert not torch.equal(cache.visible(0, 6)[0], snap.visible(0, 6)[0])


@pytest.mark.parametrize(
    "window,sink,total,dtype", [(6, 3, None, torch.bfloat16), (3, 0, None, torch.float32), (None, 0, 7, torch.float16)]
)
def test_bytes_required_matches_allocation(tiny_cw, window, sink, total, dtype):
    cache = tiny_cw.new_cache(2, 6, 8, 3, window_frames=window, sink_frames=sink, total_frames=total, dtype=dtype)
    pred = KVCache.bytes_required(TINY, 6, 8, window, 3, sink_frames=sink, batch=2, dtype=dtype, total_frames=total)
    assert pred == cache.nbytes
    frames = total if window is None else window + sink
    assert pred == 2 * TINY.num_layers * 2 * frames * 12 * TINY.dim * torch.empty((), dtype=dtype).element_size()


def test_bytes_required_1_3b_480p():
    from dsa_core.config import WAN21_T2V_1_3B

    # 21 latent frames of 30x52 -> 1560 tokens each, K and V, 30 layers, 1536 channels, bf16
    n = KVCache.bytes_required(WAN21_T2V_1_3B, 60, 104, None, 3, total_frames=21)
    assert n == 2 * 30 * 21 * 1560 * 1536 * 2


def test_bf16_cache_with_fp32_compute(tiny_cw):
    x, t, ctx = make_inputs(frames=6)
    text = tiny_cw.encode_text(ctx)
    with torch.no_grad():
        ref = forward_block_causal(tiny_cw, x, t, text, 3).flow
        cache = tiny_cw.new_cache(1, 4, 6, 3, window_frames=6, dtype=torch.bfloat16)
        out = torch.cat(
            [tiny_cw.forward_chunk(x[:, :, s:e], t[:, s:e], text, cache, s).flow for s, e in chunk_bounds(6, 3)], 2
        )
    err = (out - ref).abs().max()
    assert 0 < err < 0.1  # bf16 K/V round-off only


def test_works_with_tiny2_multi_head(tiny2_cw):
    x, t, ctx = make_inputs(frames=4, h=4, w=4)
    text = tiny2_cw.encode_text(ctx)
    with torch.no_grad():
        ref = forward_block_causal(tiny2_cw, x, t, text, 2, 2, 1).flow
        flow, _, _ = run_chunks(tiny2_cw, x, t, text, 2, 2, 1)
    assert (flow - ref).abs().max() <= TOL


def test_grown_and_rewind_keep_all(tiny_cw):
    """Grow a full keep-all cache to continue the video, and rewind to regenerate the last chunk."""
    x, t, ctx = make_inputs(frames=6, seed=8)
    text = tiny_cw.encode_text(ctx)
    with torch.no_grad():
        ref = forward_block_causal(tiny_cw, x, t, text, 3).flow
        cache = tiny_cw.new_cache(1, 4, 6, 3, total_frames=3)
        a = tiny_cw.forward_chunk(x[:, :, :3], t[:, :3], text, cache, 0).flow
        big = cache.grown(6)
        assert big.capacity_frames == 6 and big.nbytes == 2 * cache.nbytes
        b = tiny_cw.forward_chunk(x[:, :, 3:], t[:, 3:], text, big, 3).flow
        assert (torch.cat([a, b], 2) - ref).abs().max() <= TOL
        big.rewind(3)
        assert big.frames_written == 3
        b2 = tiny_cw.forward_chunk(x[:, :, 3:], t[:, 3:], text, big, 3).flow
    assert torch.equal(b, b2)
    with pytest.raises(ValueError, match="only a keep-all cache"):
        tiny_cw.new_cache(1, 4, 6, 3, window_frames=3).grown(9)


def test_rewind_refuses_after_eviction(tiny_cw):
    x, t, ctx = make_inputs(frames=6)
    text = tiny_cw.encode_text(ctx)
    with torch.no_grad():
        _, _, cache = run_chunks(tiny_cw, x, t, text, 3, 3, 0)
    with pytest.raises(ValueError, match="evicted"):
        cache.rewind(3)
