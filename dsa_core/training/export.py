"""Writing trained weights in the formats the loaders and ComfyUI read.

``save_generator_with_head``: one safetensors with the generator under bare Wan 2.1 keys (exactly what
checkpoint.save_generator writes, same per-tensor storage dtypes and 'format' / 'dsa_config' metadata) plus
the confidence head under 'confidence_head.' (float32) and its config under 'dsa.head_config'.
checkpoint.load_generator ignores the head keys; confidence_head.load_head reads only them.
"""
from __future__ import annotations

import os

from safetensors.torch import save_file

from ..checkpoint import parse_dtype, storage_dtype
from ..confidence_head import FORMAT_NAME, META_CONFIG, META_FORMAT, head_state_dict


def generator_state(dit, dtype=None) -> dict:
    dtype = parse_dtype(dtype)
    return {k: v.detach().cpu().to(storage_dtype(k, v, dtype)).contiguous() for k, v in dit.state_dict().items()}


def save_generator_with_head(dit, head, path, dtype=None, metadata: dict | None = None) -> None:
    sd = generator_state(dit, dtype)
    if head is not None:
        sd.update(head_state_dict(head))
    meta = {"format": "wan2.1-t2v", "dsa_config": dit.config.to_json()}
    if head is not None:
        meta.update({META_CONFIG: head.config.to_json(), META_FORMAT: FORMAT_NAME + "+generator"})
    meta.update({str(k): str(v) for k, v in (metadata or {}).items()})
    save_file(sd, os.fspath(path), metadata=meta)
