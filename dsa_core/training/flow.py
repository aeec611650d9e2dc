"""Flow-matching pieces shared by the teacher, the critic ("fake score") and the DMD loss.

Wan / Self-Forcing convention: x_s = (1 - s) x0 + s eps, the model predicts v = eps - x0 at timestep
t = 1000 s, so x0_hat = x_s - s v (the maths itself is in flow_step.py, shared with the sampler). Training
noise levels are drawn uniformly in u and warped through the usual shift, s = shift u / (1 + (shift - 1) u)
(Self-Forcing's DMD uses shift 5 on u in [0.02, 0.98]).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..causal_wan import CausalWan
from ..flow_step import denoise, renoise
from ..reference import forward_block_causal


def warp(u: Tensor, shift: float) -> Tensor:
    return shift * u / (1.0 + (shift - 1.0) * u)


def sample_sigmas(shape, g: torch.Generator, lo: float = 0.0, hi: float = 1.0, shift: float = 1.0) -> Tensor:
    u = lo + (hi - lo) * torch.rand(tuple(shape), generator=g)
    return warp(u, shift)


def x0_prediction(cw: CausalWan, x_s: Tensor, s: Tensor, text) -> Tensor:
    """Bidirectional x0 prediction of a (teacher / critic) model at noise level s ([B] or [B, T])."""
    flow = cw.forward_full(x_s, 1000.0 * s.to(x_s.dtype), text).flow
    return denoise(x_s, flow, s)


class FlowMatchObjective(nn.Module):
    """MSE between the model's flow and eps - x0 (the teacher's and the critic's training loss).

    The module's forward computes the loss so DistributedDataParallel can wrap it (distributed.py)."""

    def __init__(self, dit: nn.Module):
        super().__init__()
        self.dit = dit
        self.cw = CausalWan(dit, dit.config)

    def forward(self, x0: Tensor, context: Tensor, s: Tensor, eps: Tensor, causal_chunk: int | None = None) -> Tensor:
        """``causal_chunk``: run the block-causal masked forward with chunks of this many frames (each chunk
        sees only itself and earlier chunks, as the KV-cache sampler does) instead of the bidirectional one.
        Frames at s = 0 (clean context) carry no loss: their target eps - x0 cannot be predicted from x0."""
        x_s = renoise(x0, eps, s)
        text = self.cw.encode_text(context)
        if causal_chunk:
            flow = forward_block_causal(self.cw, x_s, 1000.0 * s, text, causal_chunk).flow
        else:
            flow = self.cw.forward_full(x_s, 1000.0 * s, text).flow
        err = (flow.float() - (eps - x0).float()).pow(2)
        if s.ndim == 2 and bool((s == 0).any()):
            w = (s > 0).to(err.dtype)[:, None, :, None, None].expand_as(err)
            return (err * w).sum() / w.sum().clamp_min(1.0)
        return err.mean()
