"""Self-Forcing-style training rollouts of a causal generator through its own KV cache.

Reconstruction of Self-Forcing's training-time simulation (its public code), as DSA builds on it:
each chunk starts from noise at s_0 = 1 and walks down the ladder; x0_hat = x - s v; between steps
x = (1 - s_next) x0_hat + s_next * fresh noise (flow_step's functions, the sampler's own); the chunk *exits*
at a chosen step (random in training) and its output is that step's x0_hat; then one t = 0 pass on the clean
output writes the chunk's K/V for later chunks. Only the exit step's forward carries gradients (the earlier
steps and the cache writes run under no_grad, as in Self-Forcing), so memory is one forward graph per chunk.

Autograd and the KV cache: ``KVCache.write`` copies into preallocated storage in place, and the next
chunk's write would modify tensors the exit step's attention saved for backward. The exit step therefore
runs on ``cache.snapshot()`` (copy-on-write): the snapshot's write clones the layer it touches, the
original cache is written later by the no_grad commit, which clones again, so nothing saved for
backward is ever modified. (causal_wan.forward_chunk itself has no torch.no_grad; sample_video does.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from ..flow_step import denoise, renoise
from ..schedules import Ladder

NoiseFn = Callable[[tuple], Tensor]


def randn_fn(g: torch.Generator, device, dtype=torch.float32) -> NoiseFn:
    """Noise drawn on the CPU from ``g`` (same numbers on every device), then moved."""

    def draw(shape):
        return torch.randn(tuple(shape), generator=g).to(device=device, dtype=dtype)

    return draw


@dataclass
class StepRecord:
    hidden: Tensor  # [B, Tc, dim] detached
    time_emb: Tensor  # [B, Tc, dim] detached
    x0: Tensor  # [B, C, Tc, H, W] detached


@dataclass
class Rollout:
    video: Tensor  # [B, C, T, H, W]: each chunk's exit x0_hat (with grad if requested)
    exit_steps: list  # per chunk, 0-based exit step
    exit_hidden: Tensor  # [B, T, dim] detached, at each chunk's exit step
    exit_time_emb: Tensor  # [B, T, dim] detached
    final_x0: Tensor | None = None  # [B, C, T, H, W] x0_hat after continuing to ``continue_to`` steps
    steps: list = field(default_factory=list)  # per chunk: [StepRecord] for every step run (record_steps)


def rollout(
    cw,
    text,
    *,
    batch: int,
    num_frames: int,
    chunk_frames: int,
    latent_h: int,
    latent_w: int,
    ladder: Ladder,
    exit_steps: list[int],
    noise: NoiseFn,
    grad: bool = False,
    continue_to: int | None = None,
    record_steps: bool = False,
    commit: str = "exit",
    device=None,
    dtype=torch.float32,
) -> Rollout:
    """Roll a causal generator (causal_wan.CausalWan) out chunk by chunk.

    exit_steps[n]: the 0-based step at which chunk n stops (its output). continue_to: also run the
    chunk on (no grad) up to this many steps to get ``final_x0`` (x0_agreement target); the cache is
    committed with the exit output (commit='exit') or with the final one (commit='final').
    """
    if num_frames % chunk_frames:
        raise ValueError(f"num_frames {num_frames} must be a multiple of chunk_frames {chunk_frames}")
    n_chunks = num_frames // chunk_frames
    if len(exit_steps) != n_chunks:
        raise ValueError(f"need one exit step per chunk ({n_chunks}), got {len(exit_steps)}")
    for e in exit_steps:
        if not 0 <= e < len(ladder):
            raise ValueError(f"exit step {e} outside the ladder's {len(ladder)} levels")
    if continue_to is not None and not max(exit_steps) < continue_to <= len(ladder):
        raise ValueError(f"continue_to {continue_to} must be in (max exit step, ladder length]")
    c = cw.config.in_dim
    cache = cw.new_cache(
        batch, latent_h, latent_w, chunk_frames, total_frames=num_frames, device=device, dtype=torch.float32
    )
    outs, finals, hid, temb, records = [], [], [], [], []
    sig = ladder.sigmas

    def tvec(s):
        return torch.full((batch,), 1000.0 * s, device=device, dtype=dtype)

    for n in range(n_chunks):
        fs = n * chunk_frames
        shape = (batch, c, chunk_frames, latent_h, latent_w)
        x = noise(shape)
        ex = exit_steps[n]
        last = ex if continue_to is None else continue_to - 1
        recs = []
        x0_exit = None
        for k in range(last + 1):
            s = sig[k]
            if k == ex and grad:
                with torch.enable_grad():
                    out = cw.forward_chunk(x, tvec(s), text, cache.snapshot(), fs)
                    x0 = denoise(x, out.flow, s)
            else:
                with torch.no_grad():
                    out = cw.forward_chunk(x, tvec(s), text, cache, fs)
                    x0 = denoise(x, out.flow, s)
            if record_steps:
                recs.append(StepRecord(out.hidden.detach(), out.time_emb.detach(), x0.detach()))
            if k == ex:
                x0_exit = x0
                hid.append(out.hidden.detach())
                temb.append(out.time_emb.detach())
            if k < last:
                x = renoise(x0.detach(), noise(shape), sig[k + 1]).to(dtype)
        outs.append(x0_exit)
        finals.append(x0.detach())
        records.append(recs)
        with torch.no_grad():
            committed = x0_exit.detach() if commit == "exit" else x0.detach()
            cw.forward_chunk(committed, torch.zeros(batch, device=device, dtype=dtype), text, cache, fs)
    return Rollout(
        video=torch.cat(outs, 2),
        exit_steps=list(exit_steps),
        exit_hidden=torch.cat(hid, 1),
        exit_time_emb=torch.cat(temb, 1),
        final_x0=torch.cat(finals, 2) if continue_to is not None else None,
        steps=records,
    )
