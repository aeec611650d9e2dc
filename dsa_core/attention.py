"""Pluggable attention: one signature for torch SDPA, xformers and the host's optimized attention.

AttentionFn(q, k, v) takes q [B, H, Lq, D], k and v [B, H, Lk, D] and returns [B, Lq, H*D]. This is
exactly ComfyUI's `optimized_attention(q, k, v, heads, skip_reshape=True)` with heads = q.shape[1], so the
nodes layer can plug the host's kernel in with a one-line lambda.
"""

from __future__ import annotations

from typing import Callable

import torch.nn.functional as F
from torch import Tensor

AttentionFn = Callable[[Tensor, Tensor, Tensor], Tensor]


def _merge_heads(out: Tensor) -> Tensor:
    b, h, n, d = out.shape
    return out.transpose(1, 2).reshape(b, n, h * d)


def sdpa_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """torch scaled_dot_product_attention (the host's CPU path uses the same kernel)."""
    return _merge_heads(F.scaled_dot_product_attention(q, k, v))


def masked_sdpa_attention(mask: Tensor) -> AttentionFn:
    """SDPA with a boolean mask [Lq, Lk] (True = may attend); used by the block-causal reference."""

    def attn(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        return _merge_heads(F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(q.device)))

    return attn


def _xformers_ops():
    try:
        import xformers.ops as xops  # noqa: F401
    except Exception as e:  # ImportError, or a broken build that fails on import
        raise RuntimeError(
            f"xformers attention requested but xformers cannot be imported ({e}); "
            "use attention='sdpa' or install xformers"
        ) from e
    return xops


def xformers_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """xformers memory-efficient attention (optional; never required)."""
    xops = _xformers_ops()
    b, h, n, d = q.shape
    out = xops.memory_efficient_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.reshape(b, n, h * d)


def xformers_available() -> bool:
    try:
        _xformers_ops()
        return True
    except RuntimeError:
        return False


_NAMES = {"sdpa": sdpa_attention, "default": sdpa_attention, "xformers": xformers_attention}


def get_attention(name: str | None) -> AttentionFn:
    """Attention function by name ('sdpa'/'default', 'xformers'); clear error when unknown/unavailable."""
    key = (name or "sdpa").lower()
    if key not in _NAMES:
        raise ValueError(f"unknown attention {name!r}; available: {sorted(_NAMES)}")
    if key == "xformers":
        _xformers_ops()
    return _NAMES[key]
