"""Evaluation of the toy model: quality against NFE for fixed step counts and a sweep of thresholds.

Metrics (documented choices, see world.SceneFitter), both against the prompt's real videos (every start
position / bounce direction / appearing frame the world can produce is enumerated):

- main: energy distance between the videos generated for a prompt (one per seed) and the prompt's real
  videos, averaged over prompts (``energy``, lower is better, 0 = the same distribution). It penalises
  blur, mode collapse and off-prompt videos alike;
- fidelity: the mean squared RGB error of each video to its nearest real video (``mse`` / ``psnr``). It
  rewards blur (a blurred hedge over positions sits close to every real video), so it is reported, never
  used alone: in the toy run the 1-step output is a blur that scores the best PSNR and the worst energy.

The teacher's multi-step sample from the same noise is NOT the reference:
a stochastic AR sampler and an ODE sampler started from the same noise produce different, equally valid
videos, so distances between them would measure disagreement, not quality.

NFE per chunk counts every generator forward of the chunk: its denoising steps + the t = 0 commit pass.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..ar_sampler import sample_video
from ..causal_wan import CausalWan
from ..policies import ConfidencePolicy, FixedSteps, StepPolicy
from ..schedules import extended_ladder, self_forcing_ladder
from ..training.progress import progress
from . import world as W


class MatchedRandomSteps(StepPolicy):
    """Control for a confidence run: the run's per-chunk step counts (its histogram), shuffled (seeded) and
    handed out to the chunks in order, ignoring the content. Same NFE, same spread, no information: if
    the head allocates steps well, the confidence run beats this control at equal cost."""

    name = "matched_random"
    confidence_source = None

    def __init__(self, hist: dict, seed: int = 0):
        counts = [int(k) for k, n in sorted(hist.items(), key=lambda kv: int(kv[0])) for _ in range(int(n))]
        order = torch.randperm(len(counts), generator=torch.Generator().manual_seed(seed))
        self._queue = [counts[int(i)] for i in order]
        self._max = max(counts)
        self._target = None

    def max_steps(self, ladder) -> int:
        return self._max

    def decide(self, steps_done, confidence):
        if steps_done == 1:  # a new chunk
            self._target = self._queue.pop(0) if self._queue else self._max
        return "random" if steps_done >= self._target else None


def eval_scenes(per_motion: int = 2, seed: int = 999) -> list:
    """A fixed, stratified prompt set: ``per_motion`` scenes for each of the world's motions."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for m in W.MOTIONS:
        for _ in range(per_motion):
            s = W.random_scene(g)
            out.append(W.Scene(s.shape, s.colour, m, s.background))
    return out


@dataclass
class PolicyResult:
    name: str
    kind: str                    # 'fixed' | 'confidence'
    value: float                 # steps or threshold
    mse: float = 0.0
    psnr: float = 0.0
    energy: float = 0.0          # mean over prompts of the energy distance to the prompt's real videos
    nfe_per_chunk: float = 0.0
    steps_per_chunk: float = 0.0
    steps_hist: dict = field(default_factory=dict)       # steps -> chunk count
    steps_by_motion: dict = field(default_factory=dict)  # motion -> mean steps per chunk
    steps_by_chunk: list = field(default_factory=list)   # chunk index -> mean steps
    mse_by_chunk: list = field(default_factory=list)

    def to_dict(self):
        return dict(self.__dict__)


@torch.no_grad()
def evaluate_policy(dit, head, policy, scenes, seeds, fitter: W.SceneFitter, ladder=None, name="", kind="",
                    value=0.0, frames: int = W.NUM_FRAMES) -> PolicyResult:
    cw = CausalWan(dit, dit.config)
    ladder = ladder or extended_ladder(self_forcing_ladder(), 6)
    mses, nfes, steps, energies = [], [], [], []
    hist, by_motion, by_chunk, mse_chunk = {}, {}, {}, {}
    for scene in scenes:
        text = cw.encode_text(W.prompt_embedding(scene)[None])
        videos = []
        for seed in seeds:
            lat, _, rec = sample_video(cw, text, num_frames=frames, latent_h=W.LATENT_H, latent_w=W.LATENT_W,
                                       chunk_frames=W.CHUNK_FRAMES, ladder=ladder, policy=policy, seed=seed,
                                       head=head, record_confidence=False)
            videos.append(lat[0])
            mses.append(fitter.fit_error(scene, lat[0]))
            fe = fitter.frame_errors(scene, lat[0])
            for i, c in enumerate(rec.chunks):
                nfes.append(c.nfe)
                steps.append(c.steps)
                hist[c.steps] = hist.get(c.steps, 0) + 1
                by_motion.setdefault(scene.motion, []).append(c.steps)
                by_chunk.setdefault(i, []).append(c.steps)
                mse_chunk.setdefault(i, []).append(float(fe[c.frame_start:c.frame_start + c.num_frames].mean()))
        if len(videos) > 1:
            energies.append(fitter.energy_distance(scene, torch.stack(videos)))
    mse = sum(mses) / len(mses)
    return PolicyResult(name=name, kind=kind, value=value, mse=mse, psnr=10 * math.log10(1 / max(mse, 1e-10)),
                        energy=sum(energies) / len(energies) if energies else float("nan"),
                        nfe_per_chunk=sum(nfes) / len(nfes), steps_per_chunk=sum(steps) / len(steps),
                        steps_hist=dict(sorted(hist.items())),
                        steps_by_motion={k: sum(v) / len(v) for k, v in by_motion.items()},
                        steps_by_chunk=[sum(by_chunk[i]) / len(by_chunk[i]) for i in sorted(by_chunk)],
                        mse_by_chunk=[sum(mse_chunk[i]) / len(mse_chunk[i]) for i in sorted(mse_chunk)])


def sweep(dit, head, scenes, seeds, fixed_steps=(1, 2, 3, 4, 5, 6),
          thresholds=(0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9), max_steps: int = 6, show_progress=True,
          kind_name: str = "confidence", matched_random: bool = False) -> list[PolicyResult]:
    """Fixed step counts, then the head's thresholds; with ``matched_random`` each threshold run whose
    chunks did not all take the same number of steps is followed by its MatchedRandomSteps control."""
    fitter = W.SceneFitter()
    ladder = extended_ladder(self_forcing_ladder(), max_steps)
    jobs = [("fixed", k) for k in fixed_steps] + [("confidence", t) for t in thresholds]
    out = []
    bar = progress(total=len(jobs), desc="evaluation", disable=not show_progress)
    for kind, v in jobs:
        if kind == "fixed":
            pol, name = FixedSteps(int(v)), f"fixed {int(v)}"
        else:
            label = {"confidence": "DSA", "calibrated": "DSA-cal"}.get(kind_name, "DSA-ship")
            pol, name = ConfidencePolicy(float(v), 1, max_steps), f"{label} thr {v:g}"
        out.append(evaluate_policy(dit, head if kind == "confidence" else None, pol, scenes, seeds, fitter, ladder,
                                   name, kind if kind == "fixed" else kind_name, float(v)))
        if matched_random and kind != "fixed" and len(out[-1].steps_hist) > 1:
            control = MatchedRandomSteps(out[-1].steps_hist, seed=int(1000 * v))
            out.append(evaluate_policy(dit, None, control, scenes, seeds, fitter, ladder, f"{name} random control",
                                       kind_name + "_random", float(v)))
        bar.update(1)
        bar.set_postfix_str(f"{name}: NFE/chunk {out[-1].nfe_per_chunk:.2f} energy {out[-1].energy:.4f}")
    bar.close()
    return out


@torch.no_grad()
def confidence_calibration(dit, head, scenes, seeds, max_steps: int = 6) -> dict:
    """Does the head's confidence after step k predict the chunk's error if it stopped at k?

    For every chunk of fixed-``max_steps`` runs, the x0_hat after each step is scored against the nearest
    allowed video (per-frame error of the chunk's frames, after the full video is fitted with that chunk
    replaced) -- here simplified to the fitted video of the final output. Returns the Spearman rank
    correlation between confidence and (negative) chunk error, pooled over steps, and per step.
    """
    from ..ar_sampler import sample_video as sv
    fitter = W.SceneFitter()
    cw = CausalWan(dit, dit.config)
    ladder = extended_ladder(self_forcing_ladder(), max_steps)
    confs, errs, ks = [], [], []
    for scene in scenes:
        text = cw.encode_text(W.prompt_embedding(scene)[None])
        for seed in seeds:
            per_step = {}

            def cb(info):
                per_step[(info.chunk_number, info.step)] = (info.x0.clone(), float(info.confidence.min()))
            lat, _, rec = sv(cw, text, num_frames=W.NUM_FRAMES, latent_h=W.LATENT_H, latent_w=W.LATENT_W,
                             chunk_frames=W.CHUNK_FRAMES, ladder=ladder, policy=FixedSteps(max_steps), seed=seed,
                             head=head, callback=cb)
            for (ci, k), (x0, c) in per_step.items():
                fs = ci * W.CHUNK_FRAMES
                v = lat.clone()
                v[:, :, fs:fs + W.CHUNK_FRAMES] = x0
                fe = fitter.frame_errors(scene, v[0])
                errs.append(float(fe[fs:fs + W.CHUNK_FRAMES].mean()))
                confs.append(c)
                ks.append(k)

    def spearman(a, b):
        if len(a) < 3:
            return float("nan")
        ra = torch.tensor(a).argsort().argsort().float()
        rb = torch.tensor(b).argsort().argsort().float()
        ra, rb = ra - ra.mean(), rb - rb.mean()
        return float((ra * rb).sum() / (ra.norm() * rb.norm()).clamp_min(1e-12))

    neg = [-e for e in errs]
    per = {}
    for k in sorted(set(ks)):
        idx = [i for i, kk in enumerate(ks) if kk == k]
        per[k] = {"spearman": spearman([confs[i] for i in idx], [neg[i] for i in idx]),
                  "mean_conf": sum(confs[i] for i in idx) / len(idx), "mean_err": sum(errs[i] for i in idx) / len(idx)}
    return {"pooled_spearman": spearman(confs, neg), "per_step": per}


def trivial_baselines(scenes, mean_videos: int = 256, seed: int = 0, n_per_prompt: int = 4) -> dict:
    """Reference scores on the same metrics, for the reproduction table.

    'background only': every frame is the prompt's background colour (no shape at all).
    'prompt mean video': the pixel-wise mean of ``mean_videos`` clean videos the prompt allows (a perfectly
    blurred hedge over positions: the best possible MSE without knowing the position, a poor energy).
    'real videos': ``n_per_prompt`` random clean videos of the prompt, the sampling-noise floor of the
    energy distance at that many videos per prompt (its expectation is 0; MSE 0).
    Returns {name: {"mse", "psnr", "energy"}} (mean over ``scenes``, as in evaluate_policy).
    """
    import numpy as np
    fitter = W.SceneFitter()
    g = torch.Generator().manual_seed(seed)
    errs = {"background only": [], "prompt mean video": [], "real videos": []}
    energy = {k: [] for k in errs}
    for s in scenes:
        bg = np.broadcast_to(np.array(W.BACKGROUNDS[s.background]), (W.NUM_FRAMES, W.LATENT_H, W.LATENT_W, 3))
        real = W.encode_rgb(np.stack([W.sample_video(s, g) for _ in range(n_per_prompt)]))
        mean = np.stack([W.sample_video(s, g) for _ in range(mean_videos)]).mean(0)
        for name, lat in (("background only", W.encode_rgb(bg.copy())), ("prompt mean video", W.encode_rgb(mean))):
            errs[name].append(fitter.fit_error(s, lat[0]))
            energy[name].append(fitter.energy_distance(s, lat.expand(n_per_prompt, -1, -1, -1, -1)))
        errs["real videos"].append(sum(fitter.fit_error(s, v) for v in real) / n_per_prompt)
        energy["real videos"].append(fitter.energy_distance(s, real))
    out = {}
    for k, v in errs.items():
        mse = sum(v) / len(v)
        out[k] = {"mse": mse, "psnr": 10 * math.log10(1 / max(mse, 1e-10)), "energy": sum(energy[k]) / len(energy[k])}
    return out
