"""Causal chunk-wise forward of Wan 2.1 over a rolling KV cache (Self-Forcing style).

CausalWan computes; the weights stay in `dit`, which is either our WanDiT or ComfyUI's WanModel (same
attribute names). Only submodules are called (never a Linear's .weight read), so the host's casting,
LoRA patches and offloading apply; modulation Parameters are moved with .to(x).

Numerics mirror the host's WanModel.forward: circular padding to the patch size, patch embedding in
float32 then cast, float32 sinusoidal time embedding cast to x's dtype, per-frame modulation
added in x's dtype, RoPE in float32 (see rope.py), output cropped to the input size.
Attention inside a chunk is full; across chunks it reads the cache (earlier frames' K/V).

Speed: each block is attention-free pieces (BlockPieces: `block_attn_in`: modulation, norm, q/k/v, RoPE;
`block_cross_in`: output projection, residual, cross-attention query; `block_ffn_out`: cross-attention output, FFN)
around the two attention calls, so they can be compiled or captured as CUDA graphs with shapes that never depend on
the cache length (the cache write/read and the attention kernels, whichever the host picks, stay outside them);
`_attn_in`/`_attn_out` group them around the self-attention call. The
modulation vectors of all blocks are formed in one add per forward (with the host's rounding), the RoPE
rotation matrices once per forward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import AttentionFn, sdpa_attention
from .config import WanConfig
from .kv_cache import KVCache, tokens_per_frame
from .rope import apply_rope, rope_cos_sin, rope_freqs


@dataclass
class ChunkOutput:
    flow: Tensor  # [B, out_dim, Tc, H, W] flow prediction (v = eps - x0)
    hidden: Tensor  # [B, Tc, dim] last block output, mean over each latent frame's tokens
    time_emb: Tensor  # [B, Tc, dim] per-frame time_embedding output e (before time_projection)


class TextContext:
    """Per-layer cross-attention K/V [B, H, L, D], computed once per prompt and reused for every chunk/step."""

    def __init__(self, kv: list[tuple[Tensor, Tensor]]):
        self.kv = kv

    @property
    def batch(self) -> int:
        return self.kv[0][0].shape[0]

    def to(self, device=None, dtype=None) -> "TextContext":
        return TextContext([(k.to(device=device, dtype=dtype), v.to(device=device, dtype=dtype)) for k, v in self.kv])


def sinusoidal_embedding(dim: int, position: Tensor) -> Tensor:
    """Wan's 1-D sinusoidal timestep embedding, in float32 ([cos, sin] halves)."""
    half = dim // 2
    pos = position.float()
    freqs = torch.pow(10000, -torch.arange(half, device=pos.device, dtype=torch.float32).div(half))
    sinusoid = torch.outer(pos, freqs)
    return torch.cat([torch.cos(sinusoid), torch.sin(sinusoid)], dim=1)


def pad_to_patch(x: Tensor, patch: tuple) -> Tensor:
    """Circular padding of [B, C, T, H, W] up to multiples of the patch size (as the host pads)."""
    pad = ()
    for i in range(3):
        pad = (0, (patch[i] - x.shape[i + 2] % patch[i]) % patch[i]) + pad
    if not any(pad):
        return x
    return F.pad(x, pad, mode="circular")


def block_attn_in(block, x, mod, freqs, ft, tpf, heads):
    """Self-attention inputs q, k (RoPE'd), v [B, H, L, D] of one block; mod [B, F, 6, dim]."""
    b, L, dim = x.shape
    n, d = heads, dim // heads
    sa = block.self_attn
    y = torch.addcmul(mod[:, :, 0:1], block.norm1(x).view(b, ft, tpf, dim), mod[:, :, 1:2]).view(b, L, dim)
    q = apply_rope(sa.norm_q(sa.q(y)).view(b, L, n, d), freqs).transpose(1, 2)
    k = apply_rope(sa.norm_k(sa.k(y)).view(b, L, n, d), freqs).transpose(1, 2)
    v = sa.v(y).view(b, L, n, d).transpose(1, 2)
    return q, k, v


def block_cross_in(block, x, attn, mod, ft, tpf, heads):
    """After self-attention (attn [B, L, H*D]): the gated residual, then the cross-attention query [B, H, L, D]."""
    b, L, dim = x.shape
    x = torch.addcmul(x.reshape(b, ft, tpf, dim), block.self_attn.o(attn).reshape(b, ft, tpf, dim), mod[:, :, 2:3])
    x = x.view(b, L, dim)
    ca = block.cross_attn
    qc = ca.norm_q(ca.q(block.norm3(x))).view(b, L, heads, dim // heads).transpose(1, 2)
    return x, qc


def block_ffn_out(block, x, cross, mod, ft, tpf):
    """After cross-attention (cross [B, L, H*D]): its output projection and residual, then the gated FFN."""
    b, L, dim = x.shape
    x = x + block.cross_attn.o(cross)
    y = block.ffn(
        torch.addcmul(mod[:, :, 3:4], block.norm2(x).reshape(b, ft, tpf, dim), mod[:, :, 4:5]).view(b, L, dim)
    )
    return torch.addcmul(x.reshape(b, ft, tpf, dim), y.reshape(b, ft, tpf, dim), mod[:, :, 5:6]).view(b, L, dim)


class BlockPieces(NamedTuple):
    """The attention-free pieces of a block, between which the (eager) attention calls run: plain functions of
    tensors, modules and ints, so one compiled graph serves every block and every chunk of one size."""

    attn_in: Callable
    cross_in: Callable
    ffn_out: Callable


EAGER_PIECES = BlockPieces(block_attn_in, block_cross_in, block_ffn_out)


SelfAttend = Callable[[int, Tensor, Tensor, Tensor], Tensor]  # (layer, q, k, v [B,H,L,D]) -> [B, L, H*D]


class CausalWan:
    def __init__(self, dit: nn.Module, config: WanConfig, attention: AttentionFn | None = None):
        self.dit, self.config = dit, config
        self.attention = attention or sdpa_attention
        self.num_heads, self.head_dim = config.num_heads, config.head_dim
        # Called between transformer blocks when set (e.g. the host's interrupt check, which raises): a stop
        # request then lands within one block's work instead of one whole step's.
        self.between_blocks: Callable[[], None] | None = None
        # The block pieces (EAGER_PIECES, or compiled ones: see dsa_core/compiled.py).
        self.pieces: BlockPieces = EAGER_PIECES

    # ---- text -------------------------------------------------------------------------------
    def encode_text(self, context: Tensor) -> TextContext:
        """Cross-attention K/V of every layer for a text context [B, L, text_dim]."""
        ctx = self.dit.text_embedding(context)
        b, n, _ = ctx.shape
        kv = []
        for block in self.dit.blocks:
            ca = block.cross_attn
            k = ca.norm_k(ca.k(ctx)).view(b, n, self.num_heads, self.head_dim).transpose(1, 2)
            v = ca.v(ctx).view(b, n, self.num_heads, self.head_dim).transpose(1, 2)
            kv.append((k, v))
        return TextContext(kv)

    # ---- cache ------------------------------------------------------------------------------
    def new_cache(
        self,
        batch,
        latent_h,
        latent_w,
        chunk_frames,
        window_frames=None,
        sink_frames=0,
        total_frames=None,
        device=None,
        dtype=None,
    ) -> KVCache:
        """A cache for this model; dtype defaults to float32 (pass the compute dtype, e.g. bf16)."""
        return KVCache(
            self.config.num_layers,
            batch,
            self.num_heads,
            self.head_dim,
            tokens_per_frame(self.config, latent_h, latent_w),
            chunk_frames,
            window_frames,
            sink_frames,
            total_frames,
            device=device,
            dtype=dtype or torch.float32,
        )

    # ---- forwards ---------------------------------------------------------------------------
    def forward_full(self, x: Tensor, t: Tensor, text: TextContext) -> ChunkOutput:
        """Bidirectional forward over the whole video (== host WanModel.forward)."""
        return self.forward_chunk(x, t, text, None, 0)

    def forward_chunk(
        self, x: Tensor, t: Tensor, text: TextContext, cache: KVCache | None, frame_start: int
    ) -> ChunkOutput:
        """One chunk [B, 16, Tc, H, W] at timesteps t ([B] or [B, Tc], 0..1000).

        With a cache, the chunk's K/V are written at its frames' slots (same frame_start again =
        overwrite, e.g. the next denoising step or the t=0 commit) and attention reads the sink plus
        window frames. Without a cache, a plain full forward at positions from frame_start.
        """
        tc = x.shape[2]
        if cache is not None and self.config.patch_size[0] != 1:
            raise ValueError(
                f"the KV cache indexes latent frames and needs a temporal patch size of 1, "
                f"got patch_size {self.config.patch_size}"
            )
        if cache is None:

            def attend(layer, q, k, v):
                return self.attention(q, k, v)
        else:
            cache.begin_chunk(frame_start, tc)
            end = frame_start + tc

            def attend(layer, q, k, v):
                cache.write(layer, frame_start, k, v)
                kc, vc = cache.visible(layer, end)
                if kc.dtype != q.dtype:
                    kc, vc = kc.to(q.dtype), vc.to(q.dtype)
                return self.attention(q, kc, vc)

        return self.run(x, t, text, frame_start, attend)

    def run(self, x: Tensor, t: Tensor, text: TextContext, frame_start: int, self_attend: SelfAttend) -> ChunkOutput:
        """The shared forward; `self_attend` decides what each layer's self-attention sees."""
        dit, cfg = self.dit, self.config
        b, _, tc, h, w = x.shape
        xp = pad_to_patch(x, cfg.patch_size)
        z = dit.patch_embedding(xp.float()).to(x.dtype)
        grid = tuple(z.shape[2:])
        ft, gh, gw = grid
        tpf = gh * gw
        z = z.flatten(2).transpose(1, 2).contiguous()  # [B, L, dim]

        # per-frame time embedding, [B, F, dim]
        if t.ndim == 1:
            t = t[:, None].expand(b, ft)
        if t.shape != (b, ft):
            raise ValueError(f"timesteps of shape {tuple(t.shape)} do not match [B]={b} or [B, frames]={[b, ft]}")
        e = dit.time_embedding(sinusoidal_embedding(cfg.freq_dim, t.reshape(-1)).to(x.dtype)).reshape(b, ft, -1)
        e0 = dit.time_projection(e).unflatten(2, (6, cfg.dim))  # [B, F, 6, dim]

        freqs = rope_freqs(*rope_cos_sin(self.head_dim, frame_start, ft, gh, gw, device=x.device))
        if text.batch != b:
            if text.batch != 1:
                raise ValueError(f"text context batch {text.batch} does not match latent batch {b}")
            text = TextContext([(k.expand(b, -1, -1, -1), v.expand(b, -1, -1, -1)) for k, v in text.kv])

        mods = self._modulations(e0, x)
        for i, block in enumerate(dit.blocks):
            if self.between_blocks is not None:
                self.between_blocks()
            z = self._block(i, block, z, mods[i], freqs, text.kv[i], self_attend, ft, tpf)

        hidden = z.unflatten(1, (ft, tpf)).mean(dim=2)
        out = self._head(z, e, ft, tpf)
        flow = self._unpatchify(out, grid)[:, :, :tc, :h, :w]
        return ChunkOutput(flow=flow, hidden=hidden, time_emb=e)

    # ---- pieces -----------------------------------------------------------------------------
    def _modulations(self, e0: Tensor, x: Tensor) -> Tensor:
        """[num_layers, B, F, 6, dim]: every block's modulation + e0, scales (1, 4) already offset by 1.

        Rounds as the host does per block (modulation + e0 in x's dtype, then 1 + scale), in 3 kernels per
        forward instead of 3 per block."""
        m = torch.stack([blk.modulation.to(device=x.device, dtype=x.dtype) for blk in self.dit.blocks])
        mods = m.view(m.shape[0], 1, 1, 6, -1) + e0.unsqueeze(0)
        mods[:, :, :, 1::3] += 1
        return mods

    def _block(self, i, block, x, mod, freqs, text_kv, self_attend, ft, tpf):
        q, k, v = self._attn_in(block, x, mod, freqs, ft, tpf)
        return self._attn_out(block, x, self_attend(i, q, k, v), mod, text_kv, ft, tpf)

    def _attn_in(self, block, x, mod, freqs, ft, tpf):
        """Self-attention inputs q, k (RoPE'd), v [B, H, L, D] of one block; mod [B, F, 6, dim]."""
        return self.pieces.attn_in(block, x, mod, freqs, ft, tpf, self.num_heads)

    def _attn_out(self, block, x, attn, mod, text_kv, ft, tpf):
        """The rest of the block after self-attention (attn [B, L, H*D]): gated residual, cross-attention, FFN."""
        x, qc = self.pieces.cross_in(block, x, attn, mod, ft, tpf, self.num_heads)
        kt, vt = text_kv
        return self.pieces.ffn_out(block, x, self.attention(qc, kt.to(qc.dtype), vt.to(qc.dtype)), mod, ft, tpf)

    def _head(self, x, e, ft, tpf):
        head = self.dit.head
        b, L, dim = x.shape
        mod = head.modulation.to(device=x.device, dtype=x.dtype).unsqueeze(0) + e.unsqueeze(2)  # [B, F, 2, dim]
        m0, m1 = (mi.unsqueeze(2) for mi in mod.unbind(2))
        y = torch.addcmul(m0, head.norm(x).reshape(b, ft, tpf, dim), 1 + m1).reshape(b, L, dim)
        return head.head(y)

    def _unpatchify(self, x, grid):
        c = self.config.out_dim
        p = self.config.patch_size
        b = x.shape[0]
        u = x[:, : math.prod(grid)].view(b, *grid, *p, c)
        u = torch.einsum("bfhwpqrc->bcfphqwr", u)
        return u.reshape(b, c, *[g * s for g, s in zip(grid, p)])
