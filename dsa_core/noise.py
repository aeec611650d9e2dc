"""Seeded noise per (chunk, step): the sampler's only source of randomness.

Each draw gets its own generator seeded from (seed, chunk key, step_index). The sampler's chunk key is
the chunk's first absolute latent frame, so the noise a chunk sees does not depend on how many steps
earlier chunks took (a confidence policy changes step counts), on whether the video is made in one call
or continued from a saved state, nor on whether earlier frames were generated or primed as context. Noise is drawn on the CPU in
float32 and then moved, so a seed gives the same video on every device (reconstruction: Self-Forcing
draws from one global stream, which an adaptive step count would desynchronise).

step_index 0 is the chunk's starting noise; step_index k >= 1 is the fresh noise that re-noises x0_hat
to the k-th ladder level.
"""
from __future__ import annotations

import hashlib
from typing import Protocol

import torch


class NoiseSource(Protocol):
    def sample(self, chunk_key: int, step_index: int, shape, device=None, dtype=None) -> torch.Tensor: ...


def derive_seed(seed: int, chunk_key: int, step_index: int) -> int:
    """A 63-bit seed from (seed, chunk, step); stable across Python runs (no hash randomisation)."""
    msg = f"dsa-noise:{int(seed)}:{int(chunk_key)}:{int(step_index)}".encode()
    return int.from_bytes(hashlib.sha256(msg).digest()[:8], "little") & ((1 << 63) - 1)


class SeededNoise:
    """Gaussian noise keyed by (seed, chunk_key, step_index)."""

    def __init__(self, seed: int):
        self.seed = int(seed)

    def sample(self, chunk_key: int, step_index: int, shape, device=None, dtype=None) -> torch.Tensor:
        g = torch.Generator(device="cpu").manual_seed(derive_seed(self.seed, chunk_key, step_index))
        x = torch.randn(tuple(shape), generator=g, dtype=torch.float32)
        if device is not None and torch.device(device).type == "cuda":
            # pinned + non_blocking: the upload does not make the host wait for the GPU queue
            return x.pin_memory().to(device=device, non_blocking=True).to(dtype or torch.float32)
        return x.to(device=device, dtype=dtype or torch.float32)

    def to_dict(self) -> dict:
        return {"kind": "seeded", "seed": self.seed}

    def __repr__(self):
        return f"SeededNoise({self.seed})"
