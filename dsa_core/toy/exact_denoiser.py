"""A perfect model of the toy world, for reference: the exact denoiser of one chunk given its clean prefix,
E[x0 | x_s, prefix], by enumerating every continuation the world allows (``world.continuations``, with
their exact probabilities), packaged as a drop-in for the product's causal model so that the PRODUCT's
sampler (``ar_sampler.denoise_chunk`` / ``commit_chunk``), ladder, SeededNoise draws and step policies run
it unchanged; and a confidence source the policies read: the posterior's top weight.

Why: it tells what the world and the ladder leave to allocate when the model is not the limit, and it
guards the world (tests/core/test_toy_perfect_model.py). Flow matching's x_s = (1 - s) x0 + s eps gives,
for candidate renders r_i with prior p_i, weights w_i proportional to p_i exp(-|x_s - (1 - s) r_i|^2 /
(2 s^2)); at s = 1 the weights are the prior (the posterior mean is the blur of every allowed chunk).
The model returns the flow v = (x_s - E[x0 | x_s]) / s, so the sampler's ``denoise`` gives back the
posterior mean; the prefix state is fitted from the last committed frame exactly as the metric fits it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from ..ar_sampler import commit_chunk, denoise_chunk, prepare_state
from ..causal_wan import ChunkOutput, TextContext
from ..noise import SeededNoise
from ..policies import FixedSteps, StepPolicy
from . import world as W


def posterior_weights(x_s: Tensor, s: float, renders: Tensor, log_prior: Tensor) -> Tensor:
    """x_s [D] (one noisy chunk, flattened), renders [N, D], log_prior [N] -> posterior weights [N]."""
    logits = log_prior.double().clone()
    if s < 1.0:
        logits = logits - (x_s.double()[None] - (1.0 - s) * renders.double()).pow(2).sum(1) / (2.0 * s * s)
    return torch.softmax(logits, 0)


def posterior_mean(x_s: Tensor, s: float, renders: Tensor, log_prior: Tensor) -> Tensor:
    """E[x0 | x_s] [D] (see ``posterior_weights``)."""
    return (posterior_weights(x_s, s, renders, log_prior) @ renders.double()).to(renders.dtype)


@dataclass
class _Config:
    in_dim: int = W.LATENT_CHANNELS


@dataclass
class CleanFrames:
    """The exact model's 'KV cache': the clean frames committed so far (all the world needs of the past).
    Same bookkeeping attributes as kv_cache.KVCache that the AR state reads."""

    frames: Tensor  # [B, 16, capacity, H, W]
    frames_written: int = 0
    window_frames: None = None
    fitted: dict = field(default_factory=dict)  # (video, frame) -> fitted state of that committed frame

    @property
    def capacity_frames(self) -> int:
        return self.frames.shape[2]

    def snapshot(self) -> "CleanFrames":
        return replace(self, frames=self.frames.clone(), fitted=dict(self.fitted))

    def grown(self, total_frames: int) -> "CleanFrames":
        b, c, t, h, w = self.frames.shape
        out = self.frames.new_zeros(b, c, max(total_frames, t), h, w)
        out[:, :, :t] = self.frames
        return replace(self, frames=out)

    def to(self, device) -> "CleanFrames":
        return replace(self, frames=self.frames.to(device))


class ExactWorldModel:
    """The world's exact chunk denoiser for one scene, with CausalWan's sampler interface (encode_text,
    new_cache, forward_chunk; t = 0 is the commit pass). ``hidden`` carries the posterior's top weight per
    frame (the same for every frame of a chunk), which ``PosteriorTopWeight`` hands to the policy."""

    config = _Config()

    def __init__(self, scene: W.Scene, fitter: W.SceneFitter | None = None):
        self.scene = scene
        self.fitter = fitter or W.SceneFitter()
        self._priors: dict = {}

    def encode_text(self, context: Tensor | None = None, batch: int = 1) -> TextContext:
        b = context.shape[0] if context is not None else batch
        z = torch.zeros(b, 1, 1, 1)
        return TextContext([(z, z)])

    def new_cache(
        self,
        batch,
        latent_h,
        latent_w,
        chunk_frames,
        window_frames=None,
        sink_frames=0,
        total_frames=None,
        device=None,
        dtype=None,
    ):
        if window_frames is not None:
            raise ValueError("the exact world model keeps every frame (window_frames must be None)")
        t = total_frames or chunk_frames
        return CleanFrames(torch.zeros(batch, W.LATENT_CHANNELS, t, latent_h, latent_w, device=device, dtype=dtype))

    def prefix_state(self, cache: CleanFrames, i: int, frame_start: int) -> W.State | None:
        if frame_start == 0:
            return None
        key = (i, frame_start - 1)
        if key not in cache.fitted:
            last = cache.frames[i : i + 1, :, frame_start - 1 : frame_start].float()
            cache.fitted[key] = self.fitter.fit_state(self.scene, W.latent_to_rgb_small(last)[0, 0])[0]
        return cache.fitted[key]

    def chunk_prior(self, prev: W.State | None, frames: int) -> tuple[Tensor, Tensor]:
        """Every allowed chunk's latent render [N, 16 * F * H * W] (float64) and its log prior [N]."""
        key = (prev, frames)
        if key not in self._priors:
            cont = W.continuations(self.scene, prev, frames)
            renders = W.encode_rgb(cont.frames(self.scene)).flatten(1).double()
            self._priors[key] = renders, torch.log(torch.as_tensor(cont.probs, dtype=torch.float64))
        return self._priors[key]

    def forward_chunk(self, x: Tensor, t: Tensor, text, cache: CleanFrames, frame_start: int) -> ChunkOutput:
        b, c, f, h, w = x.shape
        if float(t.max()) == 0.0:  # the commit pass: remember the clean frames
            cache.frames[:, :, frame_start : frame_start + f] = x.to(cache.frames.dtype)
            cache.fitted = {k: v for k, v in cache.fitted.items() if k[1] < frame_start}
            cache.frames_written = max(cache.frames_written, frame_start + f)
            return ChunkOutput(flow=torch.zeros_like(x), hidden=x.new_ones(b, f, 1), time_emb=x.new_zeros(b, f, 1))
        s = float(t[0]) / 1000.0
        flows, tops = [], []
        for i in range(b):
            renders, log_prior = self.chunk_prior(self.prefix_state(cache, i, frame_start), f)
            wts = posterior_weights(x[i].flatten(), s, renders, log_prior)
            x0 = (wts @ renders).view(c, f, h, w)
            flows.append(((x[i].double() - x0) / s).to(x.dtype))
            tops.append(float(wts.max()))
        top = torch.tensor(tops, dtype=x.dtype)[:, None, None].expand(b, f, 1)
        return ChunkOutput(flow=torch.stack(flows), hidden=top, time_emb=torch.zeros_like(top))


class PosteriorTopWeight:
    """The exact model's confidence, per frame: the posterior's largest weight (1 = one allowed chunk left)."""

    def __call__(self, hidden: Tensor, time_emb: Tensor) -> Tensor:
        return hidden[..., 0]


def sample_with_policies(
    model: ExactWorldModel, seed: int, ladder, policy_for_chunk, head=None, on_step=None
) -> tuple[Tensor, list, list, list]:
    """One video through the product sampler (prepare_state, then denoise_chunk + commit_chunk per chunk:
    what ar_sampler.sample_video does), each chunk under ``policy_for_chunk(chunk index, its context kind)``.
    Returns (latent [16, T, H, W], steps per chunk, NFE per chunk, per chunk the x0_hat of every step)."""
    text = model.encode_text(batch=1)
    work, _ = prepare_state(
        model,
        text,
        num_frames=W.NUM_FRAMES,
        latent_h=W.LATENT_H,
        latent_w=W.LATENT_W,
        chunk_frames=W.CHUNK_FRAMES,
        noise=SeededNoise(seed),
        dtype=torch.float32,
    )
    steps, nfe, x0s = [], [], []
    for ci in range(W.NUM_CHUNKS):
        prev = model.prefix_state(work.cache, 0, work.cache.frames_written)
        policy: StepPolicy = policy_for_chunk(ci, W.context_kind(model.scene, prev))
        mine = []
        x0, rec = denoise_chunk(
            model, work, ladder, policy, head=head, callback=lambda info: mine.append(info.x0[0].clone())
        )
        commit_chunk(model, work, x0, rec)
        steps.append(rec.steps)
        nfe.append(rec.nfe)
        x0s.append(mine)
    return work.latents[0], steps, nfe, x0s


@torch.no_grad()
def sample_exact(scene: W.Scene, seed: int, ladder, steps: int, fitter: W.SceneFitter):
    """One video with the exact denoiser, ``steps`` ladder levels per chunk (fixed), through the product
    sampler. Returns (latent [16, T, H, W], x0s [chunk][step] each [16, chunk_frames, H, W])."""
    video, _, _, x0s = sample_with_policies(
        ExactWorldModel(scene, fitter), seed, ladder, lambda c, k: FixedSteps(steps)
    )
    return video, x0s
