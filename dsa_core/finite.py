"""Non-finite values after a denoising step: fail the run, naming the likely source, instead of returning NaN.

The check costs one fused reduction per step, read with the step's confidences in the sampler's one transfer
(policies without a confidence check each chunk's output once: NaN/Inf carry through every later step). Only
when it fails are the inputs looked
at (the prompt's K/V, the weights, the head, the dtype) to say where the NaN/Inf most likely came from.
"""

from __future__ import annotations

import math

import torch


class NonFiniteError(FloatingPointError):
    """A step produced NaN or Inf; the message names the likely source and what to change."""


def check_step(
    x0: torch.Tensor, confidence: float | None, latent_ok: bool, *, model, text, chunk: int, step: int
) -> None:
    """Raises NonFiniteError when this step's denoised estimate (``latent_ok``: the sampler read whether x0 is
    finite together with the confidence, in the step's one transfer) or the chunk's confidence is not finite."""
    if latent_ok and (confidence is None or math.isfinite(confidence)):
        return
    where = f"chunk {chunk}, step {step}"
    if not latent_ok:
        raise NonFiniteError(f"the denoised video has NaN/Inf values at {where}: {likely_source(x0, model, text)}")
    raise NonFiniteError(
        f"the confidence head returned NaN/Inf at {where} while the video is finite: the head's "
        "weights are broken; load another head file, or use policy 'fixed' without a head"
    )


def _finite(t: torch.Tensor) -> bool:
    if t.is_meta:
        return True
    if t.dtype.itemsize == 1 and t.is_floating_point():  # fp8 storage: isfinite has no kernel for it everywhere
        t = t.float()
    return bool(torch.isfinite(t).all())


def likely_source(x0: torch.Tensor, model, text) -> str:
    """What most likely made the step non-finite (looked at only after a failure). The weights first: NaN weights
    also make the prompt's K/V NaN, so those only point at the conditioning when the weights are finite. NaN in
    a start image or a latent to continue is refused by the nodes before sampling."""
    dit = getattr(model, "dit", None)
    bad = [] if dit is None else [n for n, p in dit.named_parameters() if not _finite(p)]
    if bad:
        return (
            f"the model's weights hold NaN/Inf ({len(bad)} tensors, e.g. {bad[0]}): the checkpoint is broken; "
            "download or convert it again"
        )
    if text is not None and not all(_finite(t) for kv in text.kv for t in kv):
        return (
            "the prompt conditioning holds NaN/Inf (or the model's text layers turned it into NaN): check the "
            "text encoder and the conditioning nodes before the sampler"
        )
    if x0.dtype == torch.float16:
        return (
            "the activations overflowed fp16's range (max 65504): load the model with weight_dtype bf16 or "
            "fp32, or run ComfyUI with --bf16-unet"
        )
    return (
        "the weights and the conditioning are finite, so the activations overflowed: try weight_dtype fp32, "
        "or check model patches (LoRAs) applied to the model"
    )
