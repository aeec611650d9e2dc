"""Joint DMD + confidence-head training (reconstruction; see dmd.py for every choice).

  python -m dsa_core.training.train_dmd --teacher TEACHER.safetensors --prompts PROMPT_DIR \
      --out runs/dmd --steps 2000 [--student INIT.safetensors] [--resume auto]
  torchrun --nproc_per_node 8 -m dsa_core.training.train_dmd ... --device cuda --amp

The teacher (real score) is a bidirectional Wan 2.1 T2V checkpoint; the student (default: a copy of the
teacher) and the critic (default: a copy of the teacher) are trained. ``--out`` gets
``latest.safetensors`` (resumable training state) and, at the end, ``generator_with_head.safetensors``
(generator under bare Wan keys + head under 'confidence_head.') and ``head.safetensors``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..checkpoint import load_generator
from ..confidence_head import ConfidenceHead, HeadConfig, load_head, save_head
from . import distributed as D
from .checkpointing import latest_checkpoint
from .common_cli import add_common, apply_threads, prompt_source
from .dmd import DMDConfig, DMDTrainer
from .export import save_generator_with_head
from .targets import LABEL_NAMES, TARGET_NAMES


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m dsa_core.training.train_dmd",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--teacher", required=True, help="bidirectional teacher (real score), .safetensors")
    ap.add_argument("--student", default=None, help="initial causal generator (default: the teacher)")
    ap.add_argument("--critic", default=None, help="initial critic / fake score (default: the teacher)")
    ap.add_argument("--head", default=None, help="initial confidence head (default: fresh)")
    ap.add_argument("--head-hidden", type=int, default=256)
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--steps", type=int, default=1000, help="total iterations (a resumed run continues to it)")
    ap.add_argument("--resume", default=None, help="a training checkpoint, or 'auto' for OUT/latest.safetensors")
    ap.add_argument("--ckpt-every", type=int, default=100)
    ap.add_argument(
        "--target",
        choices=TARGET_NAMES,
        default="teacher_residual",
        help="the head's per-frame distance (dsa_core/training/targets.py)",
    )
    ap.add_argument(
        "--target-label",
        choices=LABEL_NAMES,
        default="rank",
        help="distance -> label in [0, 1]: rank among recent frames, or 2^(-d/median)",
    )
    ap.add_argument(
        "--head-sigma",
        type=float,
        default=0.15,
        help="re-noising level at which the head targets read the teacher (teacher_gain needs one)",
    )
    ap.add_argument("--gen-every", type=int, default=5)
    ap.add_argument("--gen-lr", type=float, default=2e-5)
    ap.add_argument("--critic-lr", type=float, default=4e-5)
    ap.add_argument("--head-lr", type=float, default=1e-3)
    ap.add_argument("--real-guidance", type=float, default=1.0)
    ap.add_argument("--same-exit", action="store_true", help="one exit step for all chunks (Self-Forcing default)")
    ap.add_argument("--amp", action="store_true", help="bf16 autocast on CUDA")
    ap.add_argument("--export-dtype", default="bf16", help="storage dtype of the exported generator")
    add_common(ap)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    apply_threads(args)
    env = D.setup(args.device)
    try:
        teacher = load_generator(args.teacher)
        student = load_generator(args.student or args.teacher)
        critic = load_generator(args.critic or args.teacher)
        head = (
            load_head(args.head, expected_dim=student.config.dim)
            if args.head
            else ConfidenceHead(HeadConfig(dim=student.config.dim, hidden_dim=args.head_hidden))
        )
        cfg = DMDConfig(
            num_frames=args.frames,
            chunk_frames=args.chunk_frames,
            latent_h=args.latent_h,
            latent_w=args.latent_w,
            batch=args.batch,
            max_steps=args.max_steps,
            same_exit=args.same_exit,
            gen_lr=args.gen_lr,
            critic_lr=args.critic_lr,
            head_lr=args.head_lr,
            gen_every=args.gen_every,
            real_guidance=args.real_guidance,
            target=args.target,
            target_label=args.target_label,
            head_sigma=args.head_sigma,
            seed=args.seed,
            amp=args.amp,
        )
        trainer = DMDTrainer(teacher, student, head, cfg, prompt_source(args), critic=critic, env=env)
        out = Path(args.out)
        resume = args.resume
        if resume == "auto":
            resume = latest_checkpoint(out)
        if resume:
            trainer.load(resume)
            if env.is_main:
                print(f"resumed from {resume} at step {trainer.step}", file=sys.stderr)
        trainer.train(args.steps, ckpt_dir=out, ckpt_every=args.ckpt_every, show_progress=not args.no_progress)
        if env.is_main:
            meta = {
                "dsa.training": "joint DMD + confidence head (reconstruction)",
                "dsa.target": cfg.target,
                "dsa.target_tau": f"{trainer.target.scale.tau:.6g}",
                "dsa.train_config": json.dumps(cfg.to_dict()),
                "dsa.steps": str(trainer.step),
            }
            save_generator_with_head(
                trainer.student, trainer.head, out / "generator_with_head.safetensors", args.export_dtype, meta
            )
            save_head(trainer.head, out / "head.safetensors", meta)
            print(f"wrote {out / 'generator_with_head.safetensors'} and {out / 'head.safetensors'}")
        D.barrier(env)
    finally:
        D.cleanup(env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
