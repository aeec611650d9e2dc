"""Reference block-causal forward: the whole video in one pass with a frame-level attention mask.

Chunk-by-chunk generation through the KV cache must equal this (tests), and it is the shape of the
teacher-forcing forward used in training. A query in chunk [s, e) may attend to key frame f iff f < e
and (no window, or f < sink, or f >= e - window): the same frames the rolling cache keeps.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .attention import masked_sdpa_attention
from .causal_wan import CausalWan, ChunkOutput, TextContext


def chunk_bounds(num_frames: int, chunk_frames: int) -> list[tuple[int, int]]:
    return [(s, min(s + chunk_frames, num_frames)) for s in range(0, num_frames, chunk_frames)]


def block_causal_frame_mask(
    num_frames: int, chunk_frames: int, window_frames: int | None = None, sink_frames: int = 0
) -> Tensor:
    """Bool [F, F]: query frame may see key frame."""
    mask = torch.zeros(num_frames, num_frames, dtype=torch.bool)
    for s, e in chunk_bounds(num_frames, chunk_frames):
        keys = torch.arange(num_frames)
        ok = keys < e
        if window_frames is not None:
            ok &= (keys < sink_frames) | (keys >= e - window_frames)
        mask[s:e] = ok
    return mask


def block_causal_token_mask(frame_mask: Tensor, tokens_per_frame: int) -> Tensor:
    return frame_mask.repeat_interleave(tokens_per_frame, 0).repeat_interleave(tokens_per_frame, 1)


def forward_block_causal(
    cw: CausalWan,
    x: Tensor,
    t: Tensor,
    text: TextContext,
    chunk_frames: int,
    window_frames: int | None = None,
    sink_frames: int = 0,
) -> ChunkOutput:
    """One masked forward over all frames of x (positions from 0)."""
    _, ph, pw = cw.config.patch_size
    tpf = -(-x.shape[3] // ph) * -(-x.shape[4] // pw)
    mask = block_causal_token_mask(block_causal_frame_mask(x.shape[2], chunk_frames, window_frames, sink_frames), tpf)
    attn = masked_sdpa_attention(mask)
    return cw.run(x, t, text, 0, lambda layer, q, k, v: attn(q, k, v))
