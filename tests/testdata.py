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


def write_causal_ar_wan(path: Path, config: WanConfig = TINY, seed: int = 0) -> Path:
    """A tiny Wan 2.1 T2V file flagged the way ComfyUI's causal-AR repacks are (Causal Forcing, Self-Forcing): the
    safetensors metadata config = {"transformer": {"causal_ar": true}}. Hosts with native causal AR load it as
    comfy.model_base.WAN21_CausalAR; older hosts ignore the flag and load a plain WAN21."""
    import json

    sd = tiny_wan_state_dict(config, seed)
    save_file(sd, str(path), metadata={"config": json.dumps({"transformer": {"causal_ar": True}})})
    return path


def random_wan_vae(dim: int, seed: int = 0, bias_std: float = 0.0):
    """The Wan 2.1 VAE architecture (the host's own class: z_dim 16, dim_mult 1,2,4,4, 2 res blocks, temporal
    downsampling False,True,True) with seeded random weights, since the host builds it uninitialised: weights
    N(0, 1/fan_in), norm gammas 1, biases N(0, bias_std). Needs the host on sys.path."""
    import comfy.ldm.wan.vae as wan_vae

    vae = wan_vae.WanVAE(
        dim=dim,
        z_dim=16,
        dim_mult=[1, 2, 4, 4],
        num_res_blocks=2,
        attn_scales=[],
        temperal_downsample=[False, True, True],
    )
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in vae.named_parameters():
            if "gamma" in name:
                p.fill_(1.0)
            elif name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * bias_std) if bias_std else p.zero_()
            else:
                p.copy_(torch.randn(p.shape, generator=g) * p[0].numel() ** -0.5)
    return vae


def write_tiny_wan_vae(path: Path, seed: int = 0) -> Path:
    """A random Wan 2.1 VAE at dim 8 as safetensors (the host detects Wan 2.1 VAEs by key names and takes dim
    from a shape). Needs the host on sys.path."""
    save_file({k: v.contiguous() for k, v in random_wan_vae(8, seed).state_dict().items()}, str(path))
    return path


def random_tiny_vae(seed: int = 0, channels: int = 16):
    """The host's own TAEHV (comfy/taesd/taehv.py: taew2_1 / lighttaew2_1's architecture) for ``channels`` latent
    channels with seeded random weights, since the host builds it uninitialised: weights N(0, 1/fan_in), biases
    N(0, 0.05). Needs the host on sys.path."""
    import comfy.taesd.taehv as taehv

    vae = taehv.TAEHV(latent_channels=channels)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in vae.named_parameters():
            if name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * p[0].numel() ** -0.5)
    return vae


def write_tiny_video_vae(path: Path, seed: int = 0, dtype=torch.float32) -> Path:
    """A random TAEHV-family VAE for Wan 2.1 as safetensors, as Load VAE recognises it (key ``decoder.22.bias``):
    float32 is taken as lighttaew2_1 (no latent scaling), float16 as taehv (HunyuanVideo's scaling). Name it
    ``lighttaew2_1.safetensors`` / ``taehv.safetensors`` in models/vae_approx, or anything in models/vae."""
    sd = random_tiny_vae(seed).state_dict()
    save_file({k: v.to(dtype).contiguous() for k, v in sd.items()}, str(path))
    return path
