"""3-D rotary position embedding of Wan 2.1, numerically as the host computes it.

Head dim d is split into (time, height, width) parts d-4*(d//6), 2*(d//6), 2*(d//6); each part uses
theta 10000 with the frequencies computed in float64 and cos/sin cast to float32 (as flux's rope does
on the host). The time coordinate is the absolute latent-frame index, so chunks keep counting.
"""

from __future__ import annotations

import torch
from torch import Tensor


def axes_dims(head_dim: int) -> tuple[int, int, int]:
    s = head_dim // 6
    return head_dim - 4 * s, 2 * s, 2 * s


def _axis_angles(pos: Tensor, dim: int, theta: float) -> Tensor:
    scale = torch.linspace(0, (dim - 2) / dim, steps=dim // 2, dtype=torch.float64, device=pos.device)
    omega = 1.0 / (theta**scale)
    return pos.to(torch.float64)[:, None] * omega[None]  # [L, dim/2]


def rope_cos_sin(
    head_dim: int, frame_start: int, frames: int, h: int, w: int, device=None, theta: float = 10000.0
) -> tuple[Tensor, Tensor]:
    """cos, sin [L, head_dim/2] (float32) for a frames x h x w token grid, frames from frame_start."""
    dt, dh, dw = axes_dims(head_dim)
    ft = torch.arange(frame_start, frame_start + frames, device=device, dtype=torch.float32)
    fh = torch.arange(h, device=device, dtype=torch.float32)
    fw = torch.arange(w, device=device, dtype=torch.float32)
    gt, gh, gw = torch.meshgrid(ft, fh, fw, indexing="ij")
    ang = torch.cat(
        [
            _axis_angles(gt.reshape(-1), dt, theta),
            _axis_angles(gh.reshape(-1), dh, theta),
            _axis_angles(gw.reshape(-1), dw, theta),
        ],
        dim=-1,
    )
    return torch.cos(ang).float(), torch.sin(ang).float()


def rope_freqs(cos: Tensor, sin: Tensor) -> Tensor:
    """Rotation matrices [1, L, 1, head_dim/2, 2, 2] (float32) from rope_cos_sin, in the host's layout
    ([[cos, -sin], [sin, cos]] per pair). Built once per forward and shared by every block."""
    return torch.stack([cos, -sin, sin, cos], dim=-1).view(1, cos.shape[0], 1, cos.shape[1], 2, 2)


def apply_rope(x: Tensor, freqs: Tensor) -> Tensor:
    """Rotate consecutive pairs of x [B, L, H, D] in float32 (as the host's apply_rope1: one multiply and
    one fused multiply-add over the pairs, 4 kernels in all); returns x's dtype."""
    xf = x.float().reshape(*x.shape[:-1], -1, 1, 2)
    out = freqs[..., 0] * xf[..., 0]
    out.addcmul_(freqs[..., 1], xf[..., 1])
    return out.reshape(x.shape).type_as(x)
