"""What the generator loader (checkpoint.py) and the head loader (confidence_head.py) share: the error type,
the key layouts of the files they read, and the refusal to read pickles.

Key layouts: bare Wan keys, 'model.', 'diffusion_model.', 'model.diffusion_model.' prefixes, and the wrapper
segments of Self-Forcing / CausVid training checkpoints ('_fsdp_wrapped_module.', '_checkpoint_wrapped_module.',
'_orig_mod.'). The confidence head's keys sit under ``HEAD_PREFIX`` in its own file or next to a generator's.
"""

from __future__ import annotations

import os

HEAD_PREFIX = "confidence_head."
WRAPPER_SEGMENTS = {"_fsdp_wrapped_module", "_checkpoint_wrapped_module", "_orig_mod"}
LEADING_SEGMENTS = ("model", "diffusion_model")
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
CONVERT_HINT = "python -m dsa_core.convert IN.pt OUT.safetensors"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, with the problem and the fix in the message."""


def normalize_key(key: str) -> str:
    """A key without wrapper segments and leading 'model.' / 'diffusion_model.' prefixes."""
    parts = [p for p in key.split(".") if p not in WRAPPER_SEGMENTS]
    while parts and parts[0] in LEADING_SEGMENTS:
        parts = parts[1:]
    return ".".join(parts)


def normalize_wan_keys(sd: dict) -> dict:
    """Strip the known prefixes and wrapper segments; raises if two keys collapse onto one."""
    out = {}
    for k, v in sd.items():
        nk = normalize_key(k)
        if nk in out:
            raise CheckpointError(
                f"keys collide after stripping prefixes: {k!r} -> {nk!r}; "
                "the file mixes several models (e.g. generator and critic)"
            )
        out[nk] = v
    return out


def split_state_dict(sd: dict) -> tuple[dict, dict]:
    """(generator_sd, head_sd) of a normalized state dict; head keys keep their prefix."""
    gen = {k: v for k, v in sd.items() if not k.startswith(HEAD_PREFIX)}
    head = {k: v for k, v in sd.items() if k.startswith(HEAD_PREFIX)}
    return gen, head


def head_keys(keys) -> dict:
    """{original key: key inside the head} for every confidence-head key, also under wrapper prefixes such as
    'model.diffusion_model.' (stripped as ``normalize_key`` strips them)."""
    out = {}
    for k in keys:
        nk = normalize_key(k)
        if nk.startswith(HEAD_PREFIX):
            out[k] = nk[len(HEAD_PREFIX) :]
    return out


def looks_like_generator(keys) -> bool:
    return any(("blocks." in k and ".self_attn." in k) or "patch_embedding" in k for k in keys)


def refuse_pickle(path: str) -> None:
    """Raise CheckpointError, with the converter command, for a pickled PyTorch file: by its suffix, or by a zip
    or pickle signature where a safetensors file would have its header (8-byte length, then '{')."""
    with open(path, "rb") as f:
        start = f.read(9)
    safetensors = len(start) == 9 and start[8:9] == b"{" and int.from_bytes(start[:8], "little") < os.path.getsize(path)
    pickled = not safetensors and (start[:2] == b"PK" or start[:1] == b"\x80")
    if path.lower().endswith(PICKLE_SUFFIXES) or pickled:
        raise CheckpointError(
            f"{path} is a pickled PyTorch checkpoint; convert it to safetensors first with "
            f"`{CONVERT_HINT}` (pickles are never loaded here)"
        )


def require_file(path) -> str:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"no such file: {path}")
    return path
