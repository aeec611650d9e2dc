"""Can the teacher render? Validity of the flow-matching teacher's own samples with many Euler steps.

The student is distilled from the teacher, so a teacher that never renders a valid chunk (sharp frames that
form an allowed continuation) caps every student: this is the first thing to measure before distilling.

  python -m dsa_core.toy.teacher_check --teacher WORK/teacher.safetensors --steps 50 --seeds 8
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from ..checkpoint import load_generator
from . import world as W
from .evaluate import eval_scenes
from .stats import bootstrap_ci
from .teacher import teacher_sample


@torch.no_grad()
def teacher_validity(teacher, scenes: list, seeds: list, steps: int = 50) -> dict:
    """Euler ODE samples (``steps`` steps, bidirectional over the whole video) of every (scene, seed):
    the valid share per video and per chunk kind (kinds from the context), with 95% bootstrap intervals, and
    the frames' distance to their nearest clean render (quartiles; sharp is <= W.VALID_TOL)."""
    fitter = W.SceneFitter()
    pairs = [(p, s) for p in range(len(scenes)) for s in seeds]
    videos, kinds, sharp, frame_mse = [], {k: [] for k in W.CHUNK_KINDS}, [], []
    for p, s in pairs:
        lat = teacher_sample(teacher, W.prompt_embedding(scenes[p])[None], steps=steps, seed=s)[0]
        frame_mse.append(fitter.fit_frames(scenes[p], W.latent_to_rgb_small(lat[None])[0])[2])
        sc = fitter.chunk_scores(scenes[p], lat)
        videos.append(float(all(c.valid for c in sc)))
        sharp.append(sum(c.sharp for c in sc) / len(sc))
        for c in sc:
            kinds[c.context].append(float(c.valid))
    frame_mse = torch.cat(frame_mse)
    return {
        "steps": steps,
        "videos": len(videos),
        "valid": bootstrap_ci(videos),
        "sharp_chunks": bootstrap_ci(sharp),
        # how far from sharp, when nothing is valid yet: each frame's RGB MSE to its nearest clean render
        "frame_mse_quartiles": [round(float(q), 5) for q in frame_mse.quantile(torch.tensor([0.25, 0.5, 0.75]))],
        "sharp_frames": float((frame_mse <= W.VALID_TOL).float().mean()),
        "valid_by_kind": {k: (bootstrap_ci(v) if v else None) for k, v in kinds.items()},
        "chunks_by_kind": {k: len(v) for k, v in kinds.items()},
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dsa_core.toy.teacher_check", description=__doc__)
    ap.add_argument("--teacher", required=True, help="teacher weights (reproduce --work folder: teacher.safetensors)")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--seeds", type=int, default=8, help="seeds per evaluation prompt (10 prompts)")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    teacher = load_generator(a.teacher, dtype="fp32").eval()
    res = teacher_validity(teacher, eval_scenes(2), list(range(1000, 1000 + a.seeds)), steps=a.steps)
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
