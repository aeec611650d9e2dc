"""Between the host's MODEL (a ModelPatcher around a Wan 2.1 BaseModel) and dsa_core's causal forward.

The host keeps owning the weights: dsa_core runs over `model.model.diffusion_model` after load_models_gpu, so
the host's casting, LoRA patches and low-VRAM offloading apply and nothing is copied.
"""

from __future__ import annotations

import logging

import comfy.model_base
import comfy.model_management
import torch

from ..dsa_core.causal_wan import CausalWan
from ..dsa_core.config import WanConfig
from . import host_patches
from .host_forward import HostCausalWan


class DSAInputError(ValueError):
    """Bad input from the graph; the message tells the artist what to change."""


SUPPORTED_FAMILIES = (
    "autoregressive Wan 2.1 text-to-video checkpoints: Self-Forcing and CausVid (.pt converted "
    "with python -m dsa_core.convert, or ComfyUI repacks), DSA-trained files, and the host's "
    "native causal-AR repacks such as Causal Forcing (causal_forcing-framewise.safetensors) "
    "loaded with UNETLoader or DSA Model Loader"
)


def causal_ar_class():
    """The host's native causal-AR model class (comfy.model_base.WAN21_CausalAR), or None on hosts without it."""
    return getattr(comfy.model_base, "WAN21_CausalAR", None)


def accepted_model_classes() -> tuple:
    """Wan 2.1 T2V bases DSA samples: plain WAN21 and, where the host has it, its native causal-AR WAN21."""
    causal = causal_ar_class()
    return (comfy.model_base.WAN21,) + ((causal,) if causal is not None else ())


def wan_config_of(model) -> WanConfig:
    """The WanConfig of a host MODEL; DSAInputError unless it is a Wan 2.1 text-to-video model."""
    base = getattr(model, "model", None)
    dm = getattr(base, "diffusion_model", None)
    if not isinstance(base, comfy.model_base.WAN21) or dm is None or not hasattr(dm, "blocks"):
        raise DSAInputError(
            f"this MODEL is {type(base).__name__}, not a Wan 2.1 text-to-video model. DSA samples "
            f"{SUPPORTED_FAMILIES}. Other models (image models, Wan 2.2, LTX, Hunyuan...) are not "
            "autoregressive: sample them with KSampler"
        )
    kind = getattr(dm, "model_type", "t2v")
    if kind != "t2v" or type(base) not in accepted_model_classes() or getattr(base, "image_to_video", False):
        raise DSAInputError(
            f"this MODEL is a Wan 2.1 '{kind}' model ({type(base).__name__}); DSA samples "
            f"{SUPPORTED_FAMILIES}. For image-to-video connect a start image and a VAE to the "
            "sampler with a T2V AR model instead of an I2V/VACE/Fun checkpoint"
        )
    return WanConfig(
        dim=dm.dim,
        ffn_dim=dm.ffn_dim,
        num_heads=dm.num_heads,
        num_layers=dm.num_layers,
        in_dim=dm.in_dim,
        out_dim=dm.out_dim,
        text_dim=dm.text_dim,
        text_len=dm.text_len,
        freq_dim=dm.freq_dim,
        patch_size=tuple(dm.patch_size),
        eps=dm.eps,
        qk_norm=dm.qk_norm,
        cross_attn_norm=dm.cross_attn_norm,
    )


def model_schedule_sigmas(model, steps: int) -> tuple[list[float], float]:
    """The noise levels the MODEL's own sampling gives ('simple' schedule, as BasicScheduler does) without the
    trailing 0, and its flow shift (for extending the ladder below the last level the same way)."""
    import comfy.samplers

    sampling = model.get_model_object("model_sampling")
    sigmas = comfy.samplers.calculate_sigmas(sampling, "simple", steps)
    levels = [float(s) for s in sigmas.flatten().tolist() if float(s) > 0.0]
    return levels, float(getattr(sampling, "shift", 1.0))


def host_attention(transformer_options: dict | None = None):
    """The host's optimized attention (its --use-* choice, SDPA, xformers, sage...) in dsa_core's signature. With
    ``transformer_options`` every call gets them, as the host's WanModel passes them (an attention override in them
    is then called instead, with the same arguments; q, k, v come as [B, H, L, D] with skip_reshape=True)."""
    from comfy.ldm.modules.attention import optimized_attention

    if transformer_options is None:

        def attention(q, k, v):
            return optimized_attention(q, k, v, heads=q.shape[1], skip_reshape=True)

        return attention

    def attention_with_options(q, k, v):
        return optimized_attention(
            q, k, v, heads=q.shape[1], skip_reshape=True, transformer_options=transformer_options
        )

    return attention_with_options


def compute_dtype(model) -> torch.dtype:
    """The dtype activations run in: the host's manual-cast dtype for fp8/offloaded weights, else the weights'."""
    base = model.model
    return getattr(base, "manual_cast_dtype", None) or base.get_dtype()


def load_causal_wan(model) -> tuple[CausalWan, torch.device, torch.dtype]:
    """Load the MODEL through the host's memory management and wrap its modules for chunked causal sampling, with the
    MODEL's transformer_options at every attention call and its torch.compile request (nodes.host_forward)."""
    config = wan_config_of(model)
    comfy.model_management.load_models_gpu([model])
    dm = model.model.diffusion_model
    to = host_patches.transformer_options(model)
    cw = HostCausalWan(dm, config, to, host_attention(to), host_patches.compile_request(model))
    return cw, model.load_device, compute_dtype(model)


def text_context(positive, device, dtype) -> torch.Tensor:
    """The text embedding [B, L, C] of a CONDITIONING (its first entry)."""
    if not positive:
        raise DSAInputError("positive conditioning is empty: connect a CLIP Text Encode (Wan / UMT5) output")
    if len(positive) > 1:
        logging.warning("DSA: the conditioning has %d entries; only the first one is used", len(positive))
    ctx = positive[0][0]
    if ctx.dim() != 3:
        raise DSAInputError(f"conditioning tensor has shape {tuple(ctx.shape)}, expected [batch, tokens, channels]")
    return ctx.to(device=device, dtype=dtype)
