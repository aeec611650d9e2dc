"""DSA's chunk forward over the host's WanModel, carrying the MODEL's transformer_options and compile request.

Every forward DSA makes (denoising steps, commit passes, recache, extension, live sampling) is a CausalWan
forward_chunk, so this one class is where the host's per-call options meet it: each attention call (self and cross,
every block) gets the transformer_options, with block_index / total_blocks / block_type / grid_sizes set as the
host's WanModel.forward_orig sets them, and an attention override in them applies exactly as in the host's sampler.
"""

from __future__ import annotations

import torch

from ..dsa_core.causal_wan import CausalWan, TextContext
from ..dsa_core.compiled import compiled_pieces
from ..dsa_core.config import WanConfig


class HostCausalWan(CausalWan):
    def __init__(self, dit, config: WanConfig, transformer_options: dict, attention, compile_options: dict | None):
        super().__init__(dit, config, attention=attention)
        self.transformer_options = transformer_options
        self.compiled = compile_options is not None
        opts = compile_options or {}
        # CUDA graphs (backend 'cudagraphs' or mode 'reduce-overhead') replay into the same memory: a forward is one
        # graph step, as bench_gpu.py's compiled model marks it (not yet run through this path on a GPU)
        self.cuda_graphs = self.compiled and (
            opts.get("backend") == "cudagraphs" or opts.get("mode") == "reduce-overhead"
        )
        if self.compiled:
            self.pieces = compiled_pieces(compile_options)

    def run(self, x: torch.Tensor, t: torch.Tensor, text: TextContext, frame_start: int, self_attend):
        to = self.transformer_options
        patch = self.config.patch_size
        to["grid_sizes"] = tuple(-(-n // p) for n, p in zip(x.shape[2:], patch))
        to["total_blocks"] = len(self.dit.blocks)
        to["block_type"] = "double"
        if self.cuda_graphs and x.is_cuda:
            torch.compiler.cudagraph_mark_step_begin()
        return super().run(x, t, text, frame_start, self_attend)

    def _block(self, i, block, *args):
        self.transformer_options["block_index"] = i
        return super()._block(i, block, *args)
