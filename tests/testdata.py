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


def write_head(path: Path, dim: int = TINY.dim, seed: int = 0, bias: float | None = None) -> Path:
    """A random confidence head for a generator of width `dim`; `bias` sets the output bias (its typical level)."""
    from dsa_core.confidence_head import ConfidenceHead, HeadConfig, save_head

    torch.manual_seed(seed)
    head = ConfidenceHead(HeadConfig(dim=dim, hidden_dim=32))
    if bias is not None:
        with torch.no_grad():
            head.out.bias.fill_(bias)
    save_head(head, path)
    return path


def write_tiny_wan_with_head(path: Path, config: WanConfig = TINY, seed: int = 0) -> Path:
    """A combined file: generator keys plus 'confidence_head.' keys (how a DSA-trained model ships)."""
    from dsa_core.confidence_head import ConfidenceHead, HeadConfig, head_state_dict

    torch.manual_seed(seed)
    sd = tiny_wan_state_dict(config, seed)
    sd.update(head_state_dict(ConfidenceHead(HeadConfig(dim=config.dim, hidden_dim=32))))
    save_file(sd, str(path))
    return path
