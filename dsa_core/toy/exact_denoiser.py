"""A perfect model of the toy world, for reference: the exact denoiser of one chunk given its clean prefix,
E[x0 | x_s, prefix], by enumerating every continuation the world allows (``world.continuations``, with
their exact probabilities), and the few-step sampler of the evaluation run with it instead of a DiT.

Why: when the learned student gains nothing from extra steps, this tells whether the world and the
ladder leave anything to allocate at all. Same ladder, same SeededNoise draws and re-noising formulas as
``evaluate.batched_sample``; the next chunk's prefix state is fitted from the committed chunk's last frame
exactly as the metric fits it. Flow matching's x_s = (1 - s) x0 + s eps gives, for candidate renders r_i
with prior p_i, weights w_i proportional to p_i exp(-|x_s - (1 - s) r_i|^2 / (2 s^2)); at s = 1 the
weights are the prior (the posterior mean is the blur of every allowed continuation).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..flow_step import renoise
from ..noise import SeededNoise
from . import world as W


def posterior_mean(x_s: Tensor, s: float, renders: Tensor, log_prior: Tensor) -> Tensor:
    """x_s [D] (one noisy chunk, flattened), renders [N, D] (every allowed chunk), log_prior [N] ->
    E[x0 | x_s] [D]."""
    logits = log_prior.clone()
    if s < 1.0:
        logits = logits - (x_s[None] - (1.0 - s) * renders).pow(2).sum(1) / (2.0 * s * s)
    return torch.softmax(logits, 0) @ renders


@torch.no_grad()
def sample_exact(scene: W.Scene, seed: int, ladder, steps: int, fitter: W.SceneFitter):
    """One video with the exact denoiser, ``steps`` ladder levels per chunk (fixed). Returns (latent
    [16, T, H, W], x0s [chunk][step] each [16, chunk_frames, H, W]): the committed video and every step's
    x0_hat."""
    noise = SeededNoise(seed)
    f = W.CHUNK_FRAMES
    shape1 = (1, W.LATENT_CHANNELS, f, W.LATENT_H, W.LATENT_W)
    video = torch.zeros(W.LATENT_CHANNELS, W.NUM_FRAMES, W.LATENT_H, W.LATENT_W)
    prev, x0s = None, []
    for c in range(W.NUM_CHUNKS):
        fs = c * f
        cont = W.continuations(scene, prev, f)
        renders = W.encode_rgb(cont.frames(scene)).flatten(1)  # [N, 16 * f * H * W]
        log_prior = torch.log(torch.as_tensor(cont.probs, dtype=torch.float32))
        x = noise.sample(fs, 0, shape1, dtype=torch.float32)[0].flatten()
        chunk_x0 = []
        for k in range(steps):
            x0 = posterior_mean(x, float(ladder.sigmas[k]), renders, log_prior)
            chunk_x0.append(x0.view(shape1[1:]))
            if k + 1 < steps:
                x = renoise(x0, noise.sample(fs, k + 1, shape1, dtype=torch.float32)[0].flatten(), ladder.sigmas[k + 1])
        video[:, fs : fs + f] = chunk_x0[-1]
        x0s.append(chunk_x0)
        prev = fitter.fit_state(scene, W.latent_to_rgb_small(video[None, :, fs + f - 1 : fs + f])[0, 0])[0]
    return video, x0s
