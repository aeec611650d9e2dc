"""Resource limits of one sampling call on the host: refuse what cannot fit in memory before allocating it, and
let an interrupt land between transformer blocks, and inside a long attention call, instead of after a whole step.
"""

from __future__ import annotations

import comfy.model_management

from ..dsa_core.attention_slices import sliced_attention
from ..dsa_core.memory_estimate import InsufficientMemory, estimate_sampling_memory, refusal_message

CHUNKED_ATTENTION = {"attention_sub_quad", "attention_split", "attention_basic"}


def host_attention_kind() -> str:
    """'chunked' when the host's attention holds score blocks (its CPU default), else 'fused'."""
    from comfy.ldm.modules.attention import optimized_attention

    return "chunked" if getattr(optimized_attention, "__name__", "") in CHUNKED_ATTENTION else "fused"


def check_memory(
    model, config, *, device, dtype, latent_h, latent_w, chunk_frames, total_frames, window_frames, sink_frames, batch
) -> None:
    """InsufficientMemory (a node error with the estimate, the free memory and the fix) unless the call fits in
    what the host's model management says is free on ``device``. Runs before any large allocation."""
    free = comfy.model_management.get_free_memory(device)
    est = estimate_sampling_memory(
        config,
        latent_h=latent_h,
        latent_w=latent_w,
        chunk_frames=chunk_frames,
        total_frames=total_frames,
        window_frames=window_frames,
        sink_frames=sink_frames,
        batch=batch,
        dtype=dtype,
        attention=host_attention_kind(),
        free_bytes=free,
    )
    if est.total > free and getattr(device, "type", "cpu") != "cpu":
        # let the host unload other models to make room, as its own nodes do
        comfy.model_management.load_models_gpu([model], memory_required=est.total)
        free = comfy.model_management.get_free_memory(device)
    problem = refusal_message(est, free, device=device, window_frames=window_frames, dtype=dtype)
    if problem:
        raise InsufficientMemory(problem)


def stop_between_blocks(causal_wan) -> None:
    """The host's interrupt check between transformer blocks and between query slices of a long attention call
    (it raises the host's own interrupt)."""
    check = comfy.model_management.throw_exception_if_processing_interrupted
    causal_wan.between_blocks = check
    causal_wan.attention = sliced_attention(causal_wan.attention, check)
