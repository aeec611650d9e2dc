"""Wan 2.1 DiT configurations: the published presets and tiny ones for tests.

Key names and shapes follow the original Wan 2.1 checkpoints (and ComfyUI's WanModel), so one config
describes our own modules, the host's modules and every checkpoint format we read.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class WanConfig:
    dim: int = 1536
    ffn_dim: int = 8960
    num_heads: int = 12
    num_layers: int = 30
    in_dim: int = 16
    out_dim: int = 16
    text_dim: int = 4096
    text_len: int = 512
    freq_dim: int = 256
    patch_size: tuple = (1, 2, 2)
    eps: float = 1e-6
    qk_norm: bool = True
    cross_attn_norm: bool = True

    def __post_init__(self):
        object.__setattr__(self, "patch_size", tuple(int(p) for p in self.patch_size))
        if self.dim % self.num_heads:
            raise ValueError(f"dim {self.dim} is not divisible by num_heads {self.num_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim {self.head_dim} must be even for RoPE")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "WanConfig":
        return cls(**json.loads(text))


# The published Wan 2.1 text-to-video models (Self-Forcing and CausVid build on the 1.3B one).
WAN21_T2V_1_3B = WanConfig(dim=1536, ffn_dim=8960, num_heads=12, num_layers=30)
WAN21_T2V_14B = WanConfig(dim=5120, ffn_dim=13824, num_heads=40, num_layers=40)
# Tiny configs for tests and the toy model. head_dim stays 128 so that ComfyUI's detection
# (num_heads = dim // 128) builds the same model from the same file; text_dim stays 4096 (UMT5).
TINY = WanConfig(dim=128, ffn_dim=256, num_heads=1, num_layers=2)
TINY2 = WanConfig(dim=256, ffn_dim=512, num_heads=2, num_layers=2)

PRESETS = {
    "wan2.1-t2v-1.3b": WAN21_T2V_1_3B,
    "wan2.1-t2v-14b": WAN21_T2V_14B,
    "tiny": TINY,
    "tiny2": TINY2,
}
