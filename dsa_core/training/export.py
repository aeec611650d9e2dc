"""Writing trained weights in the formats the loaders and ComfyUI read.

``save_generator_with_head``: one safetensors with the generator under bare Wan 2.1 keys (written by
checkpoint.save_generator: same per-tensor storage dtypes and 'format' / 'dsa_config' metadata) plus the
confidence head under 'confidence_head.' (float32) and its config under 'dsa.head_config'.
checkpoint.load_generator ignores the head keys; confidence_head.load_head reads only them.
"""

from __future__ import annotations

from ..checkpoint import save_generator
from ..confidence_head import FORMAT_NAME, META_CONFIG, META_FORMAT, head_state_dict


def save_generator_with_head(dit, head, path, dtype=None, metadata: dict | None = None) -> None:
    meta = {}
    if head is not None:
        meta.update({META_CONFIG: head.config.to_json(), META_FORMAT: FORMAT_NAME + "+generator"})
    meta.update(metadata or {})
    save_generator(
        dit, path, dtype=dtype, metadata=meta, extra_tensors=head_state_dict(head) if head is not None else None
    )
