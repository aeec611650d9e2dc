"""Seeded noise per (chunk, step): the sampler's only source of randomness.

Each draw gets its own generator seeded from (seed, chunk key, step_index). The sampler's chunk key is
the chunk's first absolute latent frame, so the noise a chunk sees does not depend on how many steps
earlier chunks took (a confidence policy changes step counts), on whether the video is made in one call
or continued from a saved state, nor on whether earlier frames were generated or primed as context. Noise is
drawn on the CPU in float32 and then moved, so a seed gives the same video on every device (reconstruction: Self-Forcing
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


class NativeARNoise:
    """The noise ComfyUI's own autoregressive sampler draws (SamplerCustomAdvanced + RandomNoise + Sampler AR
    Video), so DSA's fixed policy walks exactly the native sampler's trajectory.

    The host draws the starting noise once for the whole video latent [B, C, total_frames, H, W] from
    ``seed`` on the CPU, and re-noises step i of block b with the global generator seeded
    ``seed + b * 1000 + i``, blocks counted after the ``start_frames`` committed start-image frames.
    Re-noising draws happen here on the CPU; the host draws them on the sampling device, so results match
    the host's on CPU (on CUDA the host's re-noising comes from the CUDA generator).
    """

    def __init__(self, seed: int, total_frames: int, chunk_frames: int, start_frames: int = 0):
        self.seed, self.total_frames = int(seed), int(total_frames)
        self.chunk_frames, self.start_frames = int(chunk_frames), int(start_frames)
        self._start_noise = None

    def sample(self, chunk_key: int, step_index: int, shape, device=None, dtype=None) -> torch.Tensor:
        b, c, t, h, w = shape
        if step_index == 0:
            full = (b, c, self.total_frames, h, w)
            if self._start_noise is None or tuple(self._start_noise.shape) != full:
                g = torch.Generator(device="cpu").manual_seed(self.seed)
                self._start_noise = torch.randn(full, generator=g, dtype=torch.float32)
            x = self._start_noise[:, :, chunk_key : chunk_key + t]
            if x.shape[2] != t:
                raise ValueError(
                    f"frames {chunk_key}..{chunk_key + t} lie outside the {self.total_frames}-frame "
                    "video this noise was drawn for"
                )
        else:
            block = (chunk_key - self.start_frames) // self.chunk_frames
            # the host's seed + block*1000 + step, wrapped into the 64-bit seeds a generator takes (the host's
            # own sampler overflows there; every seed that does not overflow gets exactly the host's draw)
            g = torch.Generator(device="cpu").manual_seed((self.seed + block * 1000 + step_index - 1) % 2**64)
            x = torch.randn(tuple(shape), generator=g, dtype=torch.float32)
        return x.to(device=device, dtype=dtype or torch.float32)

    def to_dict(self) -> dict:
        return {
            "kind": "native_ar",
            "seed": self.seed,
            "total_frames": self.total_frames,
            "chunk_frames": self.chunk_frames,
            "start_frames": self.start_frames,
        }

    def __repr__(self):
        return f"NativeARNoise({self.seed}, {self.total_frames}, {self.chunk_frames}, {self.start_frames})"
