"""ODE-regression warm start of the causal student (reconstruction of CausVid's / Self-Forcing's student
initialisation, at toy scale): the bidirectional teacher samples videos with an Euler ODE from noise; the
causal student learns to map the trajectory's state at each ladder level straight to the ODE's end point,
chunk by chunk through its KV cache with the teacher's clean previous chunks as context (the situation it
meets at inference, where earlier chunks are committed clean at t = 0).

This only initialises; the distribution matching is done by DMD afterwards (dmd.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..causal_wan import CausalWan
from ..flow_step import denoise, euler_step
from ..schedules import Ladder
from ..training.flow import warp
from ..training.progress import progress
from . import world as W


@torch.no_grad()
def teacher_trajectories(
    teacher,
    contexts: torch.Tensor,
    ladder: Ladder,
    g: torch.Generator,
    ode_steps: int = 16,
    shift: float = 3.0,
    batch: int = 8,
    show_progress=True,
):
    """(states [N, L, 16, T, H, W] at the ladder's levels, x0 [N, 16, T, H, W]) of Euler ODE samples."""
    cw = CausalWan(teacher, teacher.config)
    grid = sorted(
        set(
            [round(warp(torch.tensor(1.0 - i / ode_steps), shift).item(), 6) for i in range(ode_steps)]
            + [round(s, 6) for s in ladder.sigmas]
        ),
        reverse=True,
    ) + [0.0]
    want = {round(s, 6): i for i, s in enumerate(ladder.sigmas)}
    states, finals = [], []
    bar = progress(total=contexts.shape[0], desc="teacher ODE", disable=not show_progress)
    for i in range(0, contexts.shape[0], batch):
        ctx = contexts[i : i + batch]
        b = ctx.shape[0]
        x = torch.randn(b, W.LATENT_CHANNELS, W.NUM_FRAMES, W.LATENT_H, W.LATENT_W, generator=g)
        text = cw.encode_text(ctx)
        st = [None] * len(ladder)
        for j in range(len(grid) - 1):
            s, s2 = grid[j], grid[j + 1]
            if s in want:
                st[want[s]] = x.clone()
            v = cw.forward_full(x, torch.full((b,), 1000.0 * s), text).flow
            x = euler_step(x, v, s, s2)
        states.append(torch.stack(st, 1))
        finals.append(x)
        bar.update(b)
    bar.close()
    return torch.cat(states), torch.cat(finals)


def ode_regression(
    student,
    contexts,
    states,
    finals,
    ladder: Ladder,
    steps: int,
    batch: int = 8,
    lr: float = 1e-4,
    g: torch.Generator | None = None,
    show_progress=True,
) -> list[float]:
    g = g or torch.Generator().manual_seed(0)
    cw = CausalWan(student, student.config)
    student.train().requires_grad_(True)
    opt = torch.optim.AdamW(student.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=0.0)
    n_chunks = W.NUM_FRAMES // W.CHUNK_FRAMES
    cf = W.CHUNK_FRAMES
    losses = []
    bar = progress(total=steps, desc="ODE warm start", disable=not show_progress)
    for it in range(steps):
        idx = torch.randint(contexts.shape[0], (batch,), generator=g)
        ctx, st, x0 = contexts[idx], states[idx], finals[idx]
        text = cw.encode_text(ctx)
        cache = cw.new_cache(batch, W.LATENT_H, W.LATENT_W, cf, total_frames=W.NUM_FRAMES)
        loss = 0.0
        for n in range(n_chunks):
            fs = n * cf
            k = int(torch.randint(len(ladder), (1,), generator=g))
            s = ladder.sigmas[k]
            xin = st[:, k, :, fs : fs + cf]
            out = cw.forward_chunk(xin, torch.full((batch,), 1000.0 * s), text, cache.snapshot(), fs)
            pred = denoise(xin, out.flow, s)
            loss = loss + F.mse_loss(pred, x0[:, :, fs : fs + cf])
            with torch.no_grad():
                cw.forward_chunk(x0[:, :, fs : fs + cf], torch.zeros(batch), text, cache, fs)
        loss = loss / n_chunks
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        bar.update(1)
        if it % 20 == 0:
            bar.set_postfix_str(f"loss {sum(losses[-20:]) / len(losses[-20:]):.4f}")
    bar.close()
    student.eval().requires_grad_(False)
    return losses
