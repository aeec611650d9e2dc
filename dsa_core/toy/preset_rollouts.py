"""The toy world's rollout set for calibration tables (dsa_core/calibrate_presets.py): its prompts and its quality.

Scenes are drawn with their own seed (not the evaluation's or training's draws) and are distinct; ``exclude``
keeps a second set (the tests' held-out prompts) apart from the calibration prompts. Quality: the world's
conditional error ``cond`` (evaluate.py), mean over the video's chunks, lower is better.
"""

from __future__ import annotations

import torch

from ..calibrate_presets import RolloutSet
from . import world as W

QUALITY_NAME = "cond (MSE to the nearest allowed continuation, lower is better)"


def toy_scenes(n: int, scene_seed: int, exclude=()) -> list:
    """``n`` distinct scenes, none of whose prompts is in ``exclude``."""
    g = torch.Generator().manual_seed(scene_seed)
    seen, out = set(exclude), []
    for _ in range(10000):
        if len(out) == n:
            break
        s = W.random_scene(g)
        if s.prompt not in seen:
            seen.add(s.prompt)
            out.append(s)
    return out


def toy_rollouts(n_prompts: int, seeds: list, scene_seed: int, exclude=()) -> RolloutSet:
    scenes = toy_scenes(n_prompts, scene_seed, exclude)
    fitter = W.SceneFitter()
    videos = [p for p in range(len(scenes)) for _ in seeds]

    def quality(i: int, latent) -> float:
        scores = fitter.chunk_scores(scenes[videos[i]], latent[0].float(), realism=False)
        return sum(s.conditional for s in scores) / len(scores)

    return RolloutSet(
        [W.prompt_embedding(s)[None] for s in scenes],
        list(seeds),
        W.NUM_FRAMES,
        W.CHUNK_FRAMES,
        W.LATENT_H,
        W.LATENT_W,
        prompts=[s.prompt for s in scenes],
        quality=quality,
        quality_name=QUALITY_NAME,
    )
