"""Head-only calibration of a confidence head for a frozen AR generator (reconstruction; calibrate.py).

  python -m dsa_core.training.calibrate_head --generator self_forcing_dmd.safetensors \
      --prompts my_prompt_embeddings/ --latent-h 60 --latent-w 104 --frames 21 --out head.safetensors
  python -m dsa_core.training.calibrate_head --generator models/toy/dsa_toy_wan.safetensors \
      --prompts models/toy/prompts --out /tmp/toy_head.safetensors

Any Wan 2.1 T2V causal checkpoint the loader accepts works (convert .pt files first with
``python -m dsa_core.convert``). Prompts: prompt embedding files (UMT5 outputs saved with
dsa_core.prompt_files), or random contexts when none are given. The output loads with
dsa_core.confidence_head.load_head and in the DSA head loader node. ``--state`` keeps a resumable
calibration state (recorded features, head, optimizer).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..checkpoint import load_generator
from . import distributed as D
from .calibrate import CalibConfig, HeadCalibrator
from .common_cli import add_common, apply_threads, prompt_source


def build_parser():
    ap = argparse.ArgumentParser(
        prog="python -m dsa_core.training.calibrate_head",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--generator", required=True, help="frozen causal generator, .safetensors")
    ap.add_argument("--out", required=True, help="head file to write (.safetensors)")
    ap.add_argument("--rollouts", type=int, default=8, help="rollout batches per rank")
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--head-hidden", type=int, default=256)
    ap.add_argument("--commit", choices=("random", "final"), default="random")
    ap.add_argument(
        "--median-label",
        type=float,
        default=0.5,
        help="label given to a median x0 disagreement (sets where the threshold scale bites)",
    )
    ap.add_argument(
        "--state", default=None, help="resumable calibration state file (read if present, written at the end)"
    )
    add_common(ap)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    apply_threads(args)
    env = D.setup(args.device)
    try:
        gen = load_generator(args.generator)
        cfg = CalibConfig(
            num_frames=args.frames,
            chunk_frames=args.chunk_frames,
            latent_h=args.latent_h,
            latent_w=args.latent_w,
            batch=args.batch,
            rollouts=args.rollouts,
            max_steps=args.max_steps,
            commit=args.commit,
            median_label=args.median_label,
            epochs=args.epochs,
            lr=args.lr,
            hidden_dim=args.head_hidden,
            seed=args.seed,
        )
        cal = HeadCalibrator(gen, cfg, prompt_source(args), env=env)
        if args.state and Path(args.state).is_file():
            cal.load_state(args.state)
        cal.train(show_progress=not args.no_progress, ckpt_path=args.state)
        cal.save_head(args.out)
        if env.is_main:
            print(f"wrote {args.out} (tau {cal.tau:.4g}, final BCE {cal.history['head_loss'][-1]:.4f})")
    finally:
        D.cleanup(env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
