"""Read a safetensors file's keys and shapes without loading weights, so checks run before anything loads.

The result is a state dict of meta tensors, so checkpoint.py's checks (infer_config, check_shapes,
head detection) run on it unchanged, in milliseconds, even for multi-GB files.
"""

from __future__ import annotations

import os

import torch
from safetensors import safe_open

from .checkpoint_keys import CheckpointError, refuse_pickle, require_file

_ST_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": getattr(torch, "float8_e4m3fn", torch.uint8),
    "F8_E5M2": getattr(torch, "float8_e5m2", torch.uint8),
}


def read_header(path) -> tuple[dict, dict]:
    """(key -> meta tensor with the stored shape and dtype, metadata) of a .safetensors file."""
    path = require_file(path)
    refuse_pickle(path)
    try:
        with safe_open(path, framework="pt") as f:
            meta = dict(f.metadata() or {})
            sd = {}
            for k in f.keys():
                sl = f.get_slice(k)
                sd[k] = torch.empty(sl.get_shape(), dtype=_ST_DTYPES.get(sl.get_dtype(), torch.float32), device="meta")
    except CheckpointError:
        raise
    except Exception as e:
        raise CheckpointError(
            f"could not read {path}: the file is truncated or corrupted or not safetensors ({e}); "
            "download or convert it again"
        ) from e
    expected = os.path.getsize(path)
    with open(path, "rb") as fh:
        header_len = int.from_bytes(fh.read(8), "little")
    data = sum(t.numel() * t.element_size() for t in sd.values())
    if 8 + header_len + data > expected:
        raise CheckpointError(
            f"{path} is truncated: {expected} bytes on disk, its header describes "
            f"{8 + header_len + data}; download or convert it again"
        )
    return sd, meta
