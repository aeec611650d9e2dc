"""Prompt embeddings saved as safetensors: a text encoder's output, stored once and reused.

Format: tensor 'context' [tokens, channels] (a leading batch dim of 1 is accepted), optional metadata
'prompt' (the text it came from). Used by the ComfyUI node DSA Prompt Embedding and by the toy model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from .safe_write import write_safetensors


class PromptFileError(ValueError):
    pass


@dataclass
class PromptEmbedding:
    context: torch.Tensor  # [1, tokens, channels]
    prompt: str


def save_prompt_embedding(path, context: torch.Tensor, prompt: str = "") -> None:
    if context.dim() == 3 and context.shape[0] == 1:
        context = context[0]
    if context.dim() != 2:
        raise PromptFileError(f"a prompt embedding is [tokens, channels], got shape {tuple(context.shape)}")
    write_safetensors(
        {"context": context.detach().contiguous().cpu()}, path, metadata={"prompt": prompt, "format": "dsa-prompt"}
    )


def load_prompt_embedding(path) -> PromptEmbedding:
    path = Path(path)
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            keys = list(f.keys())
            if "context" not in keys:
                raise PromptFileError(
                    f"{path.name} is not a prompt embedding: it has no 'context' tensor "
                    f"(keys: {keys[:5]}). Save one with dsa_core.prompt_files.save_prompt_embedding."
                )
            ctx = f.get_tensor("context")
    except SafetensorError as e:
        raise PromptFileError(
            f"{path.name} is not a readable safetensors file ({e}); it may be truncated: save or copy it again."
        ) from None
    if ctx.dim() == 3 and ctx.shape[0] == 1:
        ctx = ctx[0]
    if ctx.dim() != 2 or not ctx.is_floating_point():
        raise PromptFileError(
            f"{path.name}: 'context' must be a float tensor [tokens, channels], got {tuple(ctx.shape)} {ctx.dtype}"
        )
    return PromptEmbedding(ctx.unsqueeze(0), meta.get("prompt", ""))
