"""Attention over query slices with a hook between them, so a stop request lands inside a long attention call.

At large sizes one self-attention call is most of a transformer block's work (its cost grows with the visible
keys, the FFN's does not): tens of seconds to minutes on a CPU. Rows of attention are independent, so the
queries can be split into slices of bounded work with the same result; the hook (e.g. the host's interrupt
check, which raises) runs before each slice. Small calls run whole, with no hook and no copy.
"""

from __future__ import annotations

import math
from typing import Callable

from .attention import AttentionFn

# Work (multiply-adds of q.k and p.v, 4 * queries * keys * head_dim flops) per slice. On a CPU about 0.1-0.5 s
# per slice (benchmarks/README.md measures it); accelerators run a whole call in well under that.
SLICE_FLOPS = {"cpu": 2e9}
DEFAULT_SLICE_FLOPS = 2e13


def attention_flops(q, k) -> float:
    b, h, lq, d = q.shape
    return 4.0 * b * h * lq * k.shape[2] * d


def sliced_attention(attention: AttentionFn, between: Callable[[], None], slice_flops: float | None = None):
    """``attention`` (q [B, H, Lq, D], k/v [B, H, Lk, D] -> [B, Lq, H*D]) calling ``between`` before each query
    slice of at most ``slice_flops`` work (default: by the device, SLICE_FLOPS). Other arguments pass through."""

    def attend(q, k, v, *args, **kwargs):
        budget = slice_flops or SLICE_FLOPS.get(q.device.type, DEFAULT_SLICE_FLOPS)
        lq = q.shape[2]
        slices = min(lq, math.ceil(attention_flops(q, k) / budget))
        if slices <= 1:
            return attention(q, k, v, *args, **kwargs)
        step = math.ceil(lq / slices)
        out = None
        for start in range(0, lq, step):
            between()
            part = attention(q[:, :, start : start + step], k, v, *args, **kwargs)
            if out is None:
                out = part.new_empty(part.shape[0], lq, part.shape[2])
            out[:, start : start + part.shape[1]] = part
        return out

    return attend
