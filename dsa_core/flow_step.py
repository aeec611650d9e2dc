"""The denoising-step maths, written once for the sampler, the training rollouts, the teachers and the toy.

Wan / Self-Forcing flow-matching convention: a latent at noise level s in [0, 1] is x_s = (1 - s) x0 + s eps,
the model predicts the flow v = eps - x0 at timestep t = 1000 s, so

- ``denoise``:    x0_hat = x_s - s v                        (the step's clean estimate)
- ``renoise``:    x_s' = (1 - s') x0_hat + s' eps'          (Self-Forcing's sampler: fresh noise to the next level)
- ``euler_step``: x_s' = x_s + (s' - s) v                   (the deterministic ODE step of the teachers)

Precision rule (one for all callers, so training and inference cannot drift apart): ``denoise`` forms its
difference in float64, because near s = 1 it cancels two nearly equal terms and float64 then yields the
correctly rounded working-dtype result whatever that dtype is; the blends (``renoise``, ``euler_step``) are
formed in float32, or in the inputs' dtype where that is wider (the noise is drawn in float32). Every function
returns the dtype of its first argument and keeps autograd intact.

``sigma`` is a Python float (one level for the whole batch) or a tensor of shape [B] or [B, T] (per sample or
per latent frame), broadcast against [B, C, T, H, W].
"""

from __future__ import annotations

import torch
from torch import Tensor


def expand_sigma(s: Tensor, ndim: int = 5) -> Tensor:
    """s [B] or [B, T] -> broadcastable against [B, C, T, H, W]."""
    if s.dim() == 1:
        return s.view(-1, *([1] * (ndim - 1)))
    return s[:, None, :, None, None]


def _level(sigma, ndim: int, dtype: torch.dtype):
    return expand_sigma(sigma, ndim).to(dtype) if isinstance(sigma, Tensor) else float(sigma)


def _blend_dtype(*xs: Tensor) -> torch.dtype:
    dt = torch.float32
    for x in xs:
        dt = torch.promote_types(dt, x.dtype)
    return dt


def denoise(x: Tensor, flow: Tensor, sigma) -> Tensor:
    """x0_hat = x - sigma * flow, formed in float64, returned in x's dtype."""
    s = _level(sigma, x.dim(), torch.float64)
    return (x.double() - s * flow.double()).to(x.dtype)


def renoise(x0: Tensor, noise: Tensor, sigma) -> Tensor:
    """(1 - sigma) x0 + sigma noise: x0 taken to noise level sigma, formed in float32 (or wider), in x0's dtype."""
    dt = _blend_dtype(x0, noise)
    s = _level(sigma, x0.dim(), dt)
    return ((1.0 - s) * x0.to(dt) + s * noise.to(dt)).to(x0.dtype)


def euler_step(x: Tensor, flow: Tensor, sigma: float, sigma_next: float) -> Tensor:
    """x + (sigma_next - sigma) flow: one Euler step of the flow ODE, formed in float32 (or wider), in x's dtype."""
    dt = _blend_dtype(x, flow)
    return (x.to(dt) + (sigma_next - sigma) * flow.to(dt)).to(x.dtype)
