"""Toy prompt source for training (random scenes of the toy world) and the committed demo prompts."""

from __future__ import annotations

from pathlib import Path

import torch

from . import world as W

# The committed demo prompts (models/toy/prompts/toy_<prompt>.safetensors), chosen to show easy and hard chunks.
DEMO_SCENES = [
    W.Scene("square", "red", "drifting right", "black"),
    W.Scene("disc", "yellow", "still", "grey"),
    W.Scene("square", "white", "drifting down", "black"),
    W.Scene("disc", "green", "drifting left", "black"),
    W.Scene("disc", "cyan", "drifting up", "grey"),
    W.Scene("square", "magenta", "still", "black"),
]


class ToyPrompts:
    """(batch, generator) -> contexts [B, 8, 4096] of random toy scenes."""

    def __call__(self, batch: int, g: torch.Generator) -> torch.Tensor:
        return torch.stack([W.prompt_embedding(W.random_scene(g)) for _ in range(batch)])


def prompt_file_name(scene: W.Scene) -> str:
    """'a red square drifting right on black' -> 'toy_red_square_drifting_right_on_black.safetensors'
    (artists pick prompts by file name in ComfyUI)."""
    words = scene.prompt.split()
    return "toy_" + "_".join(words[1:] if words[0] == "a" else words) + ".safetensors"


def write_demo_prompts(folder) -> list[Path]:
    from ..prompt_files import save_prompt_embedding

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, s in enumerate(DEMO_SCENES):
        p = folder / prompt_file_name(s)
        save_prompt_embedding(p, W.prompt_embedding(s).to(torch.bfloat16), s.prompt)
        paths.append(p)
    return paths
