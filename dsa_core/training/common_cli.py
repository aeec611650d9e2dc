"""Shared command-line pieces for the training entry points."""

from __future__ import annotations

import argparse

import torch


def add_common(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "--prompts",
        nargs="*",
        default=None,
        help="prompt embedding files or folders (dsa_core.prompt_files format); default: random contexts",
    )
    ap.add_argument(
        "--random-prompt-tokens",
        type=int,
        default=16,
        help="tokens of the random contexts used when no --prompts are given",
    )
    ap.add_argument("--frames", type=int, default=9, help="latent frames per training video")
    ap.add_argument("--chunk-frames", type=int, default=3)
    ap.add_argument("--latent-h", type=int, default=8)
    ap.add_argument("--latent-w", type=int, default=8)
    ap.add_argument("--batch", type=int, default=4, help="videos per rank per iteration")
    ap.add_argument("--max-steps", type=int, default=6, help="ladder levels (Self-Forcing's 4, extended beyond)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--no-progress", action="store_true")


def prompt_source(args):
    from .prompts import FilePrompts, RandomPrompts

    if args.prompts:
        return FilePrompts(args.prompts)
    return RandomPrompts(args.random_prompt_tokens)


def apply_threads(args) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
