"""How much memory one sampling call will allocate, from sizes alone (no tensor is made), so a request that
cannot fit is refused before anything large is allocated instead of growing until the OS kills the host.

Counted (the generator's weights are not: the host's model management holds and accounts for them):
- the KV cache at its capacity (every frame kept, or sink + rolling window), K and V of every layer;
- the prompt's cross-attention K/V of every layer;
- the video's latents: the frames kept in the state, the list of new chunks, their concatenation and the
  float32 copy handed to the host;
- the largest chunk's forward: patch embedding, the residual stream and the temporaries of one transformer
  block (q/k/v with float32 RoPE, the self-attention over the visible window, the FFN), the head and the
  float64 update of the denoising step;
- attention workspace: "fused" kernels (SDPA / flash / xformers / sage) keep no score matrix; "chunked" ones
  (the host's sub-quadratic attention, its CPU default) hold scores of a block of queries against the visible
  keys, the block sized by the free memory (see chunked_attention_bytes).

The per-tensor counts follow causal_wan.CausalWan._block; benchmarks/bench_memory_estimate.py measures the
total against the real peak RSS on CPU (results in benchmarks/README.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .kv_cache import KVCache, tokens_per_frame

GIB = 1024**3
# Live [tokens, dim]-sized tensors at a block's peak (residual, norm, modulated input, q, k, v, attention
# output, projection), of float32 [tokens, dim] tensors (RoPE of q and k), of [tokens, ffn_dim] ones (FFN
# hidden and its activation): read off CausalWan._block, checked by the benchmark.
BLOCK_DIM_TENSORS = 8
BLOCK_DIM_TENSORS_F32 = 3
BLOCK_FFN_TENSORS = 2
# A request is admitted only while its estimate stays under this share of the free memory: the estimate is
# within 30% of the measured peak (benchmarks/README.md), and what the rest of the process, the allocator and
# the OS need while the video is made also comes out of what is free now.
USABLE_SHARE = 0.9
QUERY_BLOCKS = (4096, 2048, 1024, 512, 256)  # the query blocks ComfyUI's sub-quadratic attention tries
TEXT_TOKENS = 512  # Wan's UMT5 context length (the padded prompt)


class InsufficientMemory(RuntimeError):
    """The estimate does not fit in the free memory: refused before allocating; the message says what to change."""


@dataclass(frozen=True)
class MemoryEstimate:
    kv_cache: int
    text: int
    latents: int
    activations: int
    attention: int

    @property
    def total(self) -> int:
        return self.kv_cache + self.text + self.latents + self.activations + self.attention

    def describe(self) -> str:
        parts = [
            ("KV cache", self.kv_cache),
            ("activations", self.activations + self.attention),
            ("latents", self.latents),
            ("prompt", self.text),
        ]
        return f"{gib(self.total)} ({', '.join(f'{n} {gib(v)}' for n, v in parts)})"


def gib(n: int) -> str:
    return f"{n / GIB:.2f} GiB"


def estimate_sampling_memory(
    config,
    *,
    latent_h: int,
    latent_w: int,
    chunk_frames: int,
    total_frames: int,
    window_frames: int | None = None,
    sink_frames: int = 0,
    batch: int = 1,
    dtype=torch.float32,
    text_tokens: int = TEXT_TOKENS,
    attention: str = "fused",
    free_bytes: int | None = None,
) -> MemoryEstimate:
    """Bytes a sampling call allocates for a video of ``total_frames`` latent frames (context included).
    ``free_bytes``: the free memory, which a chunked attention sizes its score blocks by."""
    it = torch.empty((), dtype=dtype).element_size()
    window = None if not window_frames else int(window_frames)
    kv = KVCache.bytes_required(
        config,
        latent_h,
        latent_w,
        window,
        chunk_frames,
        sink_frames,
        batch,
        dtype,
        total_frames=max(total_frames, chunk_frames),
    )
    cap_frames = max(total_frames, chunk_frames) if window is None else window + sink_frames
    tpf = tokens_per_frame(config, latent_h, latent_w)
    tokens = batch * chunk_frames * tpf
    visible = batch * min(cap_frames, max(total_frames, chunk_frames)) * tpf
    text = 2 * config.num_layers * batch * text_tokens * config.dim * it + batch * text_tokens * config.text_dim * 4
    frame = batch * config.in_dim * latent_h * latent_w
    latents = 4 * frame * total_frames * max(it, 4)
    chunk = frame * chunk_frames
    patch = config.patch_size[1] * config.patch_size[2]
    activations = (
        BLOCK_DIM_TENSORS * tokens * config.dim * it
        + BLOCK_DIM_TENSORS_F32 * tokens * config.dim * 4
        + BLOCK_FFN_TENSORS * tokens * config.ffn_dim * it
        + 3 * tokens * config.out_dim * patch * it  # head output, unpatchify, flow
        + 4 * chunk * 8
        + 2 * chunk * 4
    )  # the float64 step update, noise
    if config.num_heads > 1:
        # with several heads q/k/v and the visible K/V reach attention as strided views, and are copied
        # (measured: the peaks of multi-head configs hold them, single-head ones do not)
        activations += (3 * tokens + 2 * visible) * config.dim * it
    if attention == "chunked":
        rest = kv + text + latents + activations
        att = chunked_attention_bytes(
            batch * config.num_heads,
            chunk_frames * tpf,
            visible // batch,
            None if free_bytes is None else free_bytes - rest,
        )
    elif attention == "fused":
        att = 0
    else:
        raise ValueError(f"attention must be 'fused' or 'chunked', got {attention!r}")
    return MemoryEstimate(kv_cache=kv, text=text, latents=latents, activations=activations, attention=att)


def chunked_attention_bytes(batch_heads: int, queries: int, keys: int, free_bytes: int | None) -> int:
    """Score blocks of ComfyUI's sub-quadratic attention (its CPU default): the largest query block whose float32
    scores against all keys take at most a quarter of the free memory, else 512 queries against sqrt(keys) keys;
    scores and their softmax are alive together. Without ``free_bytes``: a 1024-query block."""
    if free_bytes is None:
        return 2 * batch_heads * min(queries, 1024) * keys * 4
    for block in QUERY_BLOCKS:
        if free_bytes / (batch_heads * 4 * block * 4.0) >= keys:
            return 2 * batch_heads * min(queries, block) * keys * 4
    return 2 * batch_heads * min(queries, 512) * min(keys, max(math.isqrt(keys), 512)) * 4


def refusal_message(est: MemoryEstimate, free: int, *, device, window_frames: int | None, dtype) -> str | None:
    """None when ``est`` fits in USABLE_SHARE of ``free`` bytes, else the message that says what to change."""
    if est.total <= USABLE_SHARE * free:
        return None
    fixes = []
    if not window_frames:
        fixes.append("a rolling cache_window (e.g. 12) with sink_frames (e.g. 3), which keeps the KV cache flat")
    fixes += ["a lower width/height or length", "a smaller frames_per_chunk"]
    if torch.empty((), dtype=dtype).element_size() > 1:
        fixes.append("fp8 weights (DSA Model Loader weight_dtype fp8_e4m3fn), which leave more room")
    return (
        f"this video needs about {est.describe()} on {device}, but only {gib(free)} is free (the pack uses at most "
        f"{USABLE_SHARE:.0%} of it, a margin for the estimate and the rest of the process). Try {'; '.join(fixes)}."
    )
