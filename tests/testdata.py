"""Files the tests make for themselves: tiny random Wan checkpoints and prompt embeddings (real formats)."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from dsa_core.config import TINY, WanConfig
from dsa_core.prompt_files import save_prompt_embedding
from dsa_core.wan_model import WanDiT, init_random_weights


def tiny_wan_state_dict(config: WanConfig = TINY, seed: int = 0) -> dict:
    model = init_random_weights(WanDiT(config), seed=seed)
    return {k: v.contiguous() for k, v in model.state_dict().items()}


def write_tiny_wan(path: Path, config: WanConfig = TINY, seed: int = 0, prefix: str = "") -> Path:
    """A ComfyUI-format Wan 2.1 T2V file (bare keys by default) with random weights."""
    sd = tiny_wan_state_dict(config, seed)
    save_file({prefix + k: v for k, v in sd.items()}, str(path))
    return path


def write_prompt(path: Path, seed: int = 0, tokens: int = 8, channels: int = 4096, text: str = "") -> Path:
    g = torch.Generator().manual_seed(seed)
    save_prompt_embedding(path, torch.randn(tokens, channels, generator=g), text or f"test prompt {seed}")
    return path
