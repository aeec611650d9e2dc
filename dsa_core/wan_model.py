"""Wan 2.1 text-to-video DiT modules with the original checkpoint key names.

The module tree (patch_embedding, text_embedding, time_embedding, time_projection, blocks[i], head)
matches Wan 2.1 and ComfyUI's WanModel attribute for attribute, so one state dict loads into either and
CausalWan can run over either. Compute lives in causal_wan.CausalWan; these modules only hold weights.
The patch embedding is created in float32 like the host's (it runs in float32 and casts after).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from . import ops
from .causal_wan import CausalWan
from .config import WanConfig


class WanSelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qk_norm: bool = True, eps: float = 1e-6, **fk):
        super().__init__()
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.q = ops.Linear(dim, dim, **fk)
        self.k = ops.Linear(dim, dim, **fk)
        self.v = ops.Linear(dim, dim, **fk)
        self.o = ops.Linear(dim, dim, **fk)
        self.norm_q = ops.RMSNorm(dim, eps=eps, elementwise_affine=True, **fk) if qk_norm else nn.Identity()
        self.norm_k = ops.RMSNorm(dim, eps=eps, elementwise_affine=True, **fk) if qk_norm else nn.Identity()


class WanAttentionBlock(nn.Module):
    def __init__(self, cfg: WanConfig, **fk):
        super().__init__()
        dim = cfg.dim
        self.norm1 = ops.LayerNorm(dim, cfg.eps, elementwise_affine=False, **fk)
        self.self_attn = WanSelfAttention(dim, cfg.num_heads, cfg.qk_norm, cfg.eps, **fk)
        self.norm3 = (
            ops.LayerNorm(dim, cfg.eps, elementwise_affine=True, **fk) if cfg.cross_attn_norm else nn.Identity()
        )
        self.cross_attn = WanSelfAttention(dim, cfg.num_heads, cfg.qk_norm, cfg.eps, **fk)
        self.norm2 = ops.LayerNorm(dim, cfg.eps, elementwise_affine=False, **fk)
        self.ffn = nn.Sequential(
            ops.Linear(dim, cfg.ffn_dim, **fk), nn.GELU(approximate="tanh"), ops.Linear(cfg.ffn_dim, dim, **fk)
        )
        self.modulation = nn.Parameter(torch.empty(1, 6, dim, **fk))


class Head(nn.Module):
    def __init__(self, cfg: WanConfig, **fk):
        super().__init__()
        self.norm = ops.LayerNorm(cfg.dim, cfg.eps, elementwise_affine=False, **fk)
        self.head = ops.Linear(cfg.dim, cfg.out_dim * math.prod(cfg.patch_size), **fk)
        self.modulation = nn.Parameter(torch.empty(1, 2, cfg.dim, **fk))


class WanDiT(nn.Module):
    """Wan 2.1 T2V backbone; state_dict keys equal the Wan 2.1 checkpoint keys."""

    def __init__(self, config: WanConfig, device=None, dtype=None):
        super().__init__()
        self.config = cfg = config
        fk = {"device": device, "dtype": dtype}
        self.patch_embedding = ops.Conv3d(
            cfg.in_dim, cfg.dim, kernel_size=cfg.patch_size, stride=cfg.patch_size, device=device, dtype=torch.float32
        )
        self.text_embedding = nn.Sequential(
            ops.Linear(cfg.text_dim, cfg.dim, **fk), nn.GELU(approximate="tanh"), ops.Linear(cfg.dim, cfg.dim, **fk)
        )
        self.time_embedding = nn.Sequential(
            ops.Linear(cfg.freq_dim, cfg.dim, **fk), nn.SiLU(), ops.Linear(cfg.dim, cfg.dim, **fk)
        )
        self.time_projection = nn.Sequential(nn.SiLU(), ops.Linear(cfg.dim, cfg.dim * 6, **fk))
        self.blocks = nn.ModuleList([WanAttentionBlock(cfg, **fk) for _ in range(cfg.num_layers)])
        self.head = Head(cfg, **fk)
        if device is None or torch.device(device).type != "meta":
            # torch.empty leaves modulation uninitialised; give it Wan's init so a fresh model is usable.
            with torch.no_grad():
                for m in self.modules():
                    if hasattr(m, "modulation"):
                        m.modulation.normal_(0.0, cfg.dim**-0.5)

    def forward(self, x, t, context):
        """Full bidirectional forward (one chunk, no cache); returns the flow prediction."""
        cw = CausalWan(self, self.config)
        return cw.forward_full(x, t, cw.encode_text(context)).flow


@torch.no_grad()
def init_random_weights(model: nn.Module, seed: int = 0, scale: float = 1.0) -> nn.Module:
    """Random weights for test models (reconstruction): fan-in normal matrices, small biases, norm weights
    near 1 and modulation ~ N(0, 1/dim), so every path (including modulation) changes the output.

    Works on WanDiT and on the host's WanModel alike (visits parameters by name, in sorted order).
    """
    g = torch.Generator().manual_seed(seed)
    for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        if name.endswith("modulation"):
            val = torch.randn(p.shape, generator=g) * p.shape[-1] ** -0.5
        elif name.endswith("bias"):
            val = torch.randn(p.shape, generator=g) * 0.02
        elif p.ndim == 1:  # norm weights
            val = 1.0 + 0.1 * torch.randn(p.shape, generator=g)
        else:
            fan_in = math.prod(p.shape[1:])
            val = torch.randn(p.shape, generator=g) * (scale / math.sqrt(fan_in))
        p.copy_(val.to(p.dtype))
    return model
