"""Loading and saving Wan 2.1 T2V generator weights (safetensors), with errors that say what to do.

Accepted key layouts: see checkpoint_keys.py (bare Wan keys, the usual prefixes and training wrappers);
keys under 'confidence_head.' belong to the DSA head and are split off. Pickled .pt files are never read here:
`python -m dsa_core.convert` turns them into safetensors with torch.load(weights_only=True).

The config comes from tensor shapes; num_heads is dim // 128 (Wan's head_dim, as ComfyUI detects it)
unless the file's metadata carries a 'dsa_config' JSON.
"""

from __future__ import annotations

import math
import os
import re

import torch
from safetensors import safe_open

from .checkpoint_keys import (
    HEAD_PREFIX,
    CheckpointError,
    normalize_wan_keys,
    refuse_pickle,
    require_file,
    split_state_dict,
)
from .config import WanConfig
from .safe_write import write_safetensors
from .wan_model import WanDiT

# The keys every Wan 2.1 checkpoint has (block 0 stands for all blocks).
CORE_KEYS = (
    "patch_embedding.weight",
    "text_embedding.0.weight",
    "time_embedding.0.weight",
    "time_projection.1.weight",
    "blocks.0.self_attn.q.weight",
    "blocks.0.cross_attn.q.weight",
    "blocks.0.ffn.0.weight",
    "blocks.0.modulation",
    "head.head.weight",
    "head.modulation",
)
I2V_MARKERS = ("img_emb.", ".cross_attn.k_img.", ".cross_attn.v_img.", ".cross_attn.norm_k_img.")


# ---- dtypes ---------------------------------------------------------------------------------------
_DTYPES = {
    "fp32": "float32",
    "float32": "float32",
    "float": "float32",
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
    "fp16": "float16",
    "float16": "float16",
    "half": "float16",
    "fp8_e4m3fn": "float8_e4m3fn",
    "fp8": "float8_e4m3fn",
    "float8_e4m3fn": "float8_e4m3fn",
    "fp8_e5m2": "float8_e5m2",
    "float8_e5m2": "float8_e5m2",
}


def parse_dtype(name) -> torch.dtype | None:
    """'fp32' | 'bf16' | 'fp16' | 'fp8_e4m3fn' | 'fp8_e5m2' (or a torch.dtype, or None/'auto') -> dtype."""
    if name is None or isinstance(name, torch.dtype):
        return name
    key = str(name).lower().strip()
    if key in ("", "auto", "default", "none"):
        return None
    if key not in _DTYPES:
        raise CheckpointError(f"unknown dtype {name!r}; use one of {sorted(set(_DTYPES))}")
    dt = getattr(torch, _DTYPES[key], None)
    if dt is None:
        raise CheckpointError(
            f"dtype {name!r} needs a torch with {_DTYPES[key]} (this torch is {torch.__version__}); use bf16 instead"
        )
    return dt


def is_fp8(dtype) -> bool:
    return dtype is not None and dtype.is_floating_point and dtype.itemsize == 1


def storage_dtype(key: str, tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.dtype:
    """Per-tensor storage dtype. fp8 applies to Linear weight matrices only; biases, norms, modulation and
    the patch embedding stay bf16 (reconstruction: small, precision-sensitive tensors)."""
    if dtype is None:
        return tensor.dtype
    if is_fp8(dtype) and not (tensor.ndim == 2 and key.endswith(".weight")):
        return torch.bfloat16
    return dtype


# ---- shapes ---------------------------------------------------------------------------------------
def expected_shapes(config: WanConfig) -> dict[str, tuple]:
    """Key -> shape of a Wan 2.1 T2V checkpoint for a config (no allocation: a meta-device model)."""
    return {k: tuple(v.shape) for k, v in WanDiT(config, device="meta").state_dict().items()}


def _check_wan(sd: dict, what: str) -> None:
    if sd and all(k.startswith(HEAD_PREFIX) for k in sd):
        raise CheckpointError(
            f"{what} only holds confidence-head weights ({len(sd)} 'confidence_head.' keys): "
            "this is a confidence-head file, load it in the head slot, not as the generator"
        )
    i2v = sorted(k for k in sd if any(k.startswith(m) or m in k for m in I2V_MARKERS))
    pe = sd.get("patch_embedding.weight")
    if i2v or (pe is not None and pe.ndim == 5 and pe.shape[1] != 16 and pe.shape[1] in (20, 36, 48)):
        example = i2v[:3] or f"patch_embedding in_dim {pe.shape[1]}"
        raise CheckpointError(
            f"{what} is a Wan image-to-video (I2V) checkpoint (e.g. {example}); "
            "DSA needs a text-to-video (T2V) generator such as Wan2.1-T2V-1.3B / Self-Forcing"
        )
    missing = [k for k in CORE_KEYS if k not in sd]
    if missing:
        sample = sorted(sd)[:5]
        raise CheckpointError(
            f"{what} is not a Wan 2.1 checkpoint: missing keys {missing} (found {len(sd)} keys, e.g. {sample})"
        )


def infer_config(sd: dict) -> WanConfig:
    """WanConfig from tensor shapes of a normalized state dict."""
    sd = {k: v for k, v in sd.items() if not k.startswith(HEAD_PREFIX)}
    _check_wan(sd, "this state dict")
    pe = sd["patch_embedding.weight"]
    dim, in_dim, patch = pe.shape[0], pe.shape[1], tuple(pe.shape[2:])
    layers = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k)))
    out_dim = sd["head.head.weight"].shape[0] // math.prod(patch)
    if dim % 128:
        raise CheckpointError(
            f"dim {dim} is not a multiple of Wan's head_dim 128; cannot infer num_heads "
            "(save the file with a 'dsa_config' metadata entry)"
        )
    return WanConfig(
        dim=dim,
        ffn_dim=sd["blocks.0.ffn.0.weight"].shape[0],
        num_heads=dim // 128,
        num_layers=layers,
        in_dim=in_dim,
        out_dim=out_dim,
        text_dim=sd["text_embedding.0.weight"].shape[1],
        freq_dim=sd["time_embedding.0.weight"].shape[1],
        patch_size=patch,
        qk_norm="blocks.0.self_attn.norm_q.weight" in sd,
        cross_attn_norm="blocks.0.norm3.weight" in sd,
    )


def check_shapes(sd: dict, config: WanConfig, what: str = "the checkpoint") -> None:
    """Every expected key present with its shape, no unexpected keys."""
    exp = expected_shapes(config)
    bad = [
        f"{k}: file {tuple(sd[k].shape)} vs expected {s}" for k, s in exp.items() if k in sd and tuple(sd[k].shape) != s
    ]
    if bad:
        raise CheckpointError(
            f"shape mismatch in {what} for config dim={config.dim} layers={config.num_layers} "
            f"heads={config.num_heads}: {bad[:5]}{' ...' if len(bad) > 5 else ''}; "
            "the file is from a different model size or mixes models"
        )
    missing = [k for k in exp if k not in sd]
    if missing:
        raise CheckpointError(f"{what} is missing {len(missing)} Wan keys, e.g. {missing[:5]}; the file is incomplete")
    extra = [k for k in sd if k not in exp]
    if extra:
        raise CheckpointError(f"{what} has {len(extra)} keys that are not Wan 2.1 T2V keys, e.g. {extra[:5]}")


# ---- files ----------------------------------------------------------------------------------------
def load_state_dict_file(path, device: str = "cpu") -> tuple[dict, dict]:
    """(state dict, metadata) of a .safetensors file; .pt files get a pointer to the converter."""
    path = require_file(path)
    refuse_pickle(path)
    try:
        with safe_open(path, framework="pt", device=device) as f:
            meta = dict(f.metadata() or {})
            sd = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise CheckpointError(
            f"could not read {path}: the file is truncated or corrupted ({e}); download or convert it again"
        ) from e
    return sd, meta


def _config_from_meta(meta: dict) -> WanConfig | None:
    text = meta.get("dsa_config")
    if not text:
        return None
    try:
        return WanConfig.from_json(text)
    except Exception as e:
        raise CheckpointError(f"the file's 'dsa_config' metadata is invalid ({e})") from e


def check_generator_state(
    sd: dict, metadata: dict | None = None, config: WanConfig | None = None, what: str = "the checkpoint"
) -> tuple[dict, dict, WanConfig]:
    """(generator keys, 'confidence_head.' keys, the config they fit) of a (prefixed) state dict, or a
    CheckpointError. Works on meta tensors too, so a file can be checked from its header alone.
    The config: ``config``, else the file's 'dsa_config' metadata, else inferred from shapes."""
    sd = normalize_wan_keys(sd)
    gen, head = split_state_dict(sd)
    _check_wan(sd if not gen else gen, what)
    inferred = infer_config(gen)
    cfg = config or _config_from_meta(metadata or {}) or inferred
    check_shapes(gen, cfg, what)
    return gen, head, cfg


def build_generator(sd: dict, config: WanConfig | None = None, dtype=None, device="cpu", what="the checkpoint"):
    """WanDiT from a (normalized or prefixed) state dict, without a second copy of the weights."""
    gen, _head, cfg = check_generator_state(sd, config=config, what=what)
    dtype = parse_dtype(dtype)
    model = WanDiT(cfg, device="meta")
    conv = {k: v.to(device=device, dtype=storage_dtype(k, v, dtype)) for k, v in gen.items()}
    model.load_state_dict(conv, strict=True, assign=True)
    return model


def load_generator(path, dtype=None, device="cpu", config: WanConfig | None = None):
    """WanDiT from a safetensors file (combined generator+head files: the head keys are ignored)."""
    sd, meta = load_state_dict_file(path)
    return build_generator(sd, config or _config_from_meta(meta), dtype, device, what=os.fspath(path))


def save_generator(
    dit, path, dtype=None, metadata: dict | None = None, extra_tensors: dict | None = None, *, overwrite: bool = True
) -> None:
    """Bare Wan keys, optional dtype conversion (fp8: matrices only), the config in metadata.

    ``extra_tensors`` (e.g. a confidence head under 'confidence_head.') are stored as given, next to the
    generator; they must not collide with Wan keys (the loaders split them off by prefix)."""
    dtype = parse_dtype(dtype)
    sd = {k: v.detach().cpu().to(storage_dtype(k, v, dtype)).contiguous() for k, v in dit.state_dict().items()}
    for k, v in (extra_tensors or {}).items():
        if k in sd:
            raise ValueError(f"extra tensor {k!r} collides with a generator key; give it its own prefix")
        sd[k] = v.detach().cpu().contiguous()
    meta = {"format": "wan2.1-t2v", "dsa_config": dit.config.to_json()}
    meta.update({str(k): str(v) for k, v in (metadata or {}).items()})
    write_safetensors(sd, path, metadata=meta, overwrite=overwrite)
