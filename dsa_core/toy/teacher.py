"""The toy teacher: a bidirectional Wan DiT trained with flow matching on the toy world's videos
(toy-scale reproduction; the real DSA/Self-Forcing teacher is Wan 2.1 14B/1.3B, trained on real data).

Flow matching: x_s = (1 - s) x0 + s eps, target v = eps - x0, t = 1000 s, u ~ U[0, 1] warped through
``shift``. Reconstruction choice for the toy: half of each batch gets one noise level per *chunk* instead
of one per video, sorted so earlier chunks are cleaner (including exactly clean ones), diffusion-forcing
style. The teacher thereby also knows "clean context + noisy next chunk", which is the situation the causal
student initialised from it meets at every chunk through the KV cache. With ``causal_frac`` > 0 that share of
batches runs the block-causal masked forward (each chunk sees only itself and earlier chunks, exactly what the
KV-cache sampler shows it; context chunks mostly clean), so the one set of weights is both the bidirectional
teacher DMD asks for its real score and an autoregressive model the causal student starts from. 10% of
prompts are dropped (all-zero context) so classifier-free guidance is available.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch

from ..causal_wan import CausalWan
from ..config import WanConfig
from ..flow_step import denoise, euler_step, renoise
from ..training.flow import FlowMatchObjective, warp
from ..training.progress import progress
from ..wan_model import WanDiT, init_random_weights
from . import world as W

# The toy generator: head_dim 128 and text_dim 4096 (so ComfyUI builds it from the file). dim 256 (2 heads),
# 4 layers: measured on this world (1500 teacher steps), dim 128 / 2 layers gave re-noising samples of
# 17.6 dB and no recognisable shapes, dim 256 / 4 layers 18.9 dB (19.9 dB after 4000 steps) with shapes:
# with one head and two layers only one self-attention can depend on the prompt (Wan blocks run
# self-attention before cross-attention), too little to move a shape by the prompt's motion.
TOY_CONFIG = WanConfig(dim=256, ffn_dim=512, num_heads=2, num_layers=4)


@dataclass
class TeacherConfig:
    steps: int = 6000
    batch: int = 8
    lr: float = 3e-4
    warmup: int = 50
    shift: float = 3.0
    per_chunk_frac: float = 0.5
    drop_prompt: float = 0.1
    seed: int = 0
    causal_frac: float = 0.0  # fraction of batches trained block-causally (see sample_causal_sigmas)
    causal_clean: float = 0.6  # in those, the probability that a context chunk is clean
    time_limit_s: float | None = None  # stop early after this many seconds (a device run's time box)
    ema: float = 0.0  # > 0: return an exponential moving average of the weights with this decay (sharper samples)


def clean_context(u: torch.Tensor, g: torch.Generator, p: float) -> torch.Tensor:
    """u [B, chunks] with each chunk but the last set to 0 (clean) with probability ``p`` (warp(0) = 0)."""
    n_chunks = u.shape[1]
    clean = (torch.rand(u.shape, generator=g) < p) & (torch.arange(n_chunks) < n_chunks - 1)
    return torch.where(clean, torch.zeros_like(u), u)


def sample_training_sigmas(
    batch: int, frames: int, chunk: int, g: torch.Generator, shift: float, per_chunk_frac: float
) -> torch.Tensor:
    """[B, T] noise levels: per video (uniform across frames) or per chunk (sorted ascending)."""
    n_chunks = frames // chunk
    u_vid = torch.rand(batch, 1, generator=g).expand(batch, n_chunks)
    u_chk = clean_context(torch.rand(batch, n_chunks, generator=g).sort(dim=1).values, g, 0.25)
    use_chunk = torch.rand(batch, 1, generator=g) < per_chunk_frac
    u = torch.where(use_chunk, u_chk, u_vid)
    return warp(u, shift).repeat_interleave(chunk, dim=1)


def sample_causal_sigmas(
    batch: int, frames: int, chunk: int, g: torch.Generator, shift: float, clean: float
) -> torch.Tensor:
    """[B, T] noise levels for a block-causal batch: every chunk its own level (diffusion forcing); each
    chunk but the last is clean with probability ``clean``, which is what the KV-cache sampler's context
    is (its chunks are committed at t = 0)."""
    u = clean_context(torch.rand(batch, frames // chunk, generator=g), g, clean)
    return warp(u, shift).repeat_interleave(chunk, dim=1)


def new_toy_model(seed: int = 0, config: WanConfig = TOY_CONFIG) -> WanDiT:
    """Random weights with the residual branches' output projections and the output head at zero (the
    usual DiT start: every block begins as the identity, so early training is stable at lr 1e-3)."""
    model = init_random_weights(WanDiT(config), seed=seed, scale=1.0)
    with torch.no_grad():
        for b in model.blocks:
            for lin in (b.self_attn.o, b.cross_attn.o, b.ffn[2]):
                lin.weight.zero_()
                lin.bias.zero_()
        model.head.head.weight.zero_()
        model.head.head.bias.zero_()
    return model


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, parameter by parameter."""
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm, 1.0 - decay)


def train_teacher(
    tc: TeacherConfig,
    model: WanDiT | None = None,
    show_progress: bool = True,
    log=None,
    device=None,
    on_step=None,
) -> tuple[WanDiT, list[float]]:
    """Flow-matching training; ``device`` (e.g. 'cuda') runs the model there while the batches and every
    random draw stay on the CPU generator (the same draws on every device). Returns the model on the CPU
    (with ``tc.ema`` its moving average). ``on_step(i, weights)`` is called after every step with the weights
    that would be returned (e.g. to measure the teacher's samples during a long run)."""
    g = torch.Generator().manual_seed(tc.seed)
    model = model or new_toy_model(tc.seed)
    dev = torch.device(device or "cpu")
    model.to(dev).train().requires_grad_(True)
    obj = FlowMatchObjective(model)
    ema = copy.deepcopy(model).requires_grad_(False) if tc.ema > 0 else None
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, betas=(0.9, 0.99), weight_decay=0.01)

    def lr_factor(frac, i):  # linear warm-up, then cosine down to 0.1 over the run (steps or time box)
        cosine = 0.5 * (1 + torch.cos(torch.tensor(min(frac, 1.0) * 3.14159)).item())
        return min(1.0, (i + 1) / tc.warmup) * (0.1 + 0.9 * cosine)

    losses = []
    bar = progress(total=tc.steps, desc="teacher", disable=not show_progress)
    t_start = time.time()
    for i in range(tc.steps):
        elapsed = time.time() - t_start
        if tc.time_limit_s is not None and elapsed > tc.time_limit_s:
            break
        frac = i / tc.steps if tc.time_limit_s is None else max(i / tc.steps, elapsed / tc.time_limit_s)
        for group in opt.param_groups:
            group["lr"] = tc.lr * lr_factor(frac, i)
        x0, ctx, _ = W.make_batch(tc.batch, g)
        drop = torch.rand(tc.batch, generator=g) < tc.drop_prompt
        ctx[drop] = 0.0
        causal = tc.causal_frac > 0 and float(torch.rand((), generator=g)) < tc.causal_frac
        if causal:
            s = sample_causal_sigmas(tc.batch, x0.shape[2], W.CHUNK_FRAMES, g, tc.shift, tc.causal_clean)
        else:
            s = sample_training_sigmas(tc.batch, x0.shape[2], W.CHUNK_FRAMES, g, tc.shift, tc.per_chunk_frac)
        eps = torch.randn(x0.shape, generator=g)
        x0, ctx, s, eps = (t.to(dev) for t in (x0, ctx, s, eps))
        loss = obj(x0, ctx, s, eps, causal_chunk=W.CHUNK_FRAMES if causal else None)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if ema is not None:  # warm-up: the average starts short (decay (1 + i) / (10 + i)) and grows to tc.ema
            ema_update(ema, model, min(tc.ema, (1 + i) / (10 + i)))
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(i, ema if ema is not None else model)
        bar.update(1)
        if i % 20 == 0:
            bar.set_postfix_str(f"loss {sum(losses[-20:]) / len(losses[-20:]):.4f}")
    bar.close()
    out = ema if ema is not None else model
    return out.cpu().eval().requires_grad_(False), losses


def _sampling_start(model: WanDiT, context: torch.Tensor, steps: int, seed: int, shift: float, frames: int):
    """What both teacher samplers start from: the model wrapper, the prompt's cross-attention cache, the
    seeded noise generator, pure noise [B, 16, T, H, W] and the descending noise levels (ending at 0)."""
    cw = CausalWan(model, model.config)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(context.shape[0], W.LATENT_CHANNELS, frames, W.LATENT_H, W.LATENT_W, generator=g)
    sig = [warp(torch.tensor(1.0 - i / steps), shift).item() for i in range(steps)] + [0.0]
    return cw, cw.encode_text(context), g, x, sig


@torch.no_grad()
def teacher_sample_renoise(
    model: WanDiT, context: torch.Tensor, steps: int = 8, seed: int = 0, shift: float = 3.0, frames: int = W.NUM_FRAMES
) -> torch.Tensor:
    """The teacher sampled the way the few-step student is (x0_hat, then re-noise with fresh noise to the
    next level; Self-Forcing's sampler), bidirectionally over the whole video: [B, 16, T, H, W]. In the
    committed toy run it beats the 24-step Euler ODE on nearest-video PSNR (19.33 vs 18.94 dB) but is far
    worse on energy distance (0.0194 vs 0.0047): its samples are less varied."""
    cw, text, g, x, sig = _sampling_start(model, context, steps, seed, shift, frames)
    b = context.shape[0]
    x0 = x
    for i in range(steps):
        v = cw.forward_full(x, torch.full((b,), 1000.0 * sig[i]), text).flow
        x0 = denoise(x, v, sig[i])
        x = renoise(x0, torch.randn(x.shape, generator=g), sig[i + 1])
    return x0


@torch.no_grad()
def teacher_sample(
    model: WanDiT,
    context: torch.Tensor,
    steps: int = 24,
    seed: int = 0,
    shift: float = 3.0,
    guidance: float = 1.0,
    frames: int = W.NUM_FRAMES,
) -> torch.Tensor:
    """Euler ODE sample of the bidirectional teacher: [B, 16, T, H, W]."""
    cw, text, _g, x, sig = _sampling_start(model, context, steps, seed, shift, frames)
    b = context.shape[0]
    unc = cw.encode_text(torch.zeros_like(context)) if guidance != 1.0 else None
    for i in range(steps):
        s, s2 = sig[i], sig[i + 1]
        t = torch.full((b,), 1000.0 * s)
        v = cw.forward_full(x, t, text).flow
        if unc is not None:
            vu = cw.forward_full(x, t, unc).flow
            v = vu + guidance * (v - vu)
        x = euler_step(x, v, s, s2)
    return x
