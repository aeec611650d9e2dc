"""Cast-on-forward layers: weights may be stored in a narrower dtype (bf16, fp16, fp8) than the compute.

Why: fp8 storage halves memory but torch cannot matmul fp8 on most devices, so each layer upcasts its
weight to the input's dtype at call time (the host does the same with its own ops inside ComfyUI).
When the dtypes already match these are exactly the torch layers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def cast_like(p: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    if p is None:
        return None
    if p.dtype == x.dtype and p.device == x.device:
        return p
    return p.to(device=x.device, dtype=x.dtype)


class Linear(nn.Linear):
    def forward(self, x):
        return F.linear(x, cast_like(self.weight, x), cast_like(self.bias, x))


class Conv3d(nn.Conv3d):
    def forward(self, x):
        return self._conv_forward(x, cast_like(self.weight, x), cast_like(self.bias, x))


class LayerNorm(nn.LayerNorm):
    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, cast_like(self.weight, x), cast_like(self.bias, x), self.eps)


class RMSNorm(nn.RMSNorm):
    def forward(self, x):
        return F.rms_norm(x, self.normalized_shape, cast_like(self.weight, x), self.eps)
