"""Where training prompts come from (DSA training is data-free: prompts, no videos).

A prompt source is a callable ``(batch, generator) -> context [B, L, 4096]`` on the CPU.
- ``FilePrompts``: prompt embedding files (dsa_core.prompt_files format, e.g. UMT5 outputs saved once),
  drawn at random; shorter contexts are zero-padded to the longest (Wan zero-pads its text context too).
- ``RandomPrompts``: Gaussian or all-zero contexts, for calibrating without any prompt files (weaker: the
  head then only sees the generator's unconditional behaviour).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..prompt_files import load_prompt_embedding


class FilePrompts:
    def __init__(self, paths):
        paths = [Path(p) for p in paths]
        files = []
        for p in paths:
            files += sorted(p.glob("*.safetensors")) if p.is_dir() else [p]
        if not files:
            raise ValueError(f"no prompt embedding files (*.safetensors) in {[str(p) for p in paths]}")
        embs = [load_prompt_embedding(f) for f in files]
        self.texts = [e.prompt for e in embs]
        length = max(e.context.shape[1] for e in embs)
        dims = {e.context.shape[2] for e in embs}
        if len(dims) != 1:
            raise ValueError(f"prompt files have different channel counts {sorted(dims)}")
        self.contexts = torch.zeros(len(embs), length, dims.pop())
        for i, e in enumerate(embs):
            self.contexts[i, : e.context.shape[1]] = e.context[0].float()

    def __len__(self):
        return self.contexts.shape[0]

    def __call__(self, batch: int, g: torch.Generator) -> torch.Tensor:
        idx = torch.randint(len(self), (batch,), generator=g)
        return self.contexts[idx]


class RandomPrompts:
    def __init__(self, tokens: int = 16, dim: int = 4096, kind: str = "randn", std: float = 1.0):
        if kind not in ("randn", "zero"):
            raise ValueError(f"kind must be 'randn' or 'zero', got {kind!r}")
        self.tokens, self.dim, self.kind, self.std = tokens, dim, kind, std

    def __call__(self, batch: int, g: torch.Generator) -> torch.Tensor:
        if self.kind == "zero":
            return torch.zeros(batch, self.tokens, self.dim)
        return self.std * torch.randn(batch, self.tokens, self.dim, generator=g)
