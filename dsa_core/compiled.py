"""torch.compile of the chunk forward's block pieces (causal_wan.BlockPieces), shared by every run that asks.

The pieces are plain functions of (block module, tensors, ints), so the graphs dynamo makes for them are keyed by
shapes, not by which block or which run calls them: one graph per piece serves all blocks, all denoising steps and
all chunks of one size, and a later run with the same options reuses them. The attention calls between the pieces
stay eager (the KV-cache write/read, and whatever attention the host or an override picks).
Shapes are static unless the options ask otherwise (a chunk's shapes never depend on the cache length).
"""

from __future__ import annotations

import torch

from .causal_wan import EAGER_PIECES, BlockPieces

_COMPILED: dict[tuple, BlockPieces] = {}


def _key(options: dict) -> tuple:
    """A hashable key of torch.compile's keyword arguments (callables and dicts by identity/contents)."""

    def freeze(v):
        if isinstance(v, dict):
            return tuple(sorted((k, freeze(x)) for k, x in v.items()))
        if isinstance(v, (list, tuple)):
            return tuple(freeze(x) for x in v)
        return v if isinstance(v, (str, int, float, bool, type(None))) else id(v)

    return freeze(options)


def compile_options(options: dict | None) -> dict:
    """torch.compile keyword arguments for the pieces: the caller's (e.g. the ones the host's TorchCompileModel
    records), unset values dropped, and dynamic=False unless set (static shapes per chunk)."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in (options or {}).items() if v is not None}
    out.setdefault("dynamic", False)  # (torch.compile pops entries of a nested 'options' dict: hence the copies)
    return out


def compiled_pieces(options: dict | None = None) -> BlockPieces:
    """The block pieces compiled with ``options`` (torch.compile keyword arguments); the same object for equal
    options, so their dynamo caches persist across runs."""
    kw = compile_options(options)
    key = _key(kw)
    if key not in _COMPILED:
        _raise_cache_limits()
        _COMPILED[key] = BlockPieces(*(torch.compile(fn, **kw) for fn in EAGER_PIECES))
    return _COMPILED[key]


def _raise_cache_limits(at_least: int = 64):
    """Room for a graph per chunk size and dtype without dynamo falling back to eager after its default 8."""
    import torch._dynamo

    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, max(getattr(torch._dynamo.config, name), at_least))
