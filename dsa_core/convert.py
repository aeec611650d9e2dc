"""Convert a Self-Forcing / CausVid training checkpoint (.pt) into a generator safetensors file.

    python -m dsa_core.convert IN.pt OUT.safetensors [--which generator_ema|generator] [--dtype bf16] [--overwrite]

The weights keep the checkpoint's own dtype unless --dtype asks for another (bf16 halves an fp32 file, fp8
quarters it, both lose precision); the command prints what it wrote.

Reads with torch.load(weights_only=True) only (tensors and plain containers, no arbitrary pickles).
Default --which: generator_ema when present (what Self-Forcing samples with), else generator.
The source is never written: an output path that is the input is refused, an existing output only with
--overwrite, and the output is written atomically (a temporary file renamed once complete).
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from .checkpoint import CheckpointError, build_generator, parse_dtype, save_generator
from .checkpoint_keys import normalize_key

GENERATOR_KEYS = ("generator_ema", "generator")


def _is_tensor_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(torch.is_tensor(v) for v in obj.values())


def read_pt(path) -> dict:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"no such file: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(
            f"could not read {path} with torch.load(weights_only=True): {e}. The file is "
            "truncated/corrupted, or holds objects other than tensors"
        ) from e


def pick_generator(ckpt, which: str | None = None, what: str = "the checkpoint") -> tuple[dict, str]:
    """(generator state dict, the entry it came from)."""
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{what} holds a {type(ckpt).__name__}, not a dict of weights")
    if which:
        if which not in GENERATOR_KEYS:
            raise CheckpointError(f"--which must be one of {GENERATOR_KEYS}, got {which!r}")
        if which not in ckpt:
            raise CheckpointError(f"{what} has no '{which}' entry; its top-level keys are {sorted(ckpt)[:10]}")
        if not _is_tensor_dict(ckpt[which]):
            raise CheckpointError(
                f"{what}: the '{which}' entry is a {type(ckpt[which]).__name__}, not a dict of tensors"
            )
        return ckpt[which], which
    for key in GENERATOR_KEYS:
        if key in ckpt:
            if not _is_tensor_dict(ckpt[key]):
                raise CheckpointError(
                    f"{what}: the '{key}' entry is a {type(ckpt[key]).__name__}, not a dict of tensors"
                )
            return ckpt[key], key
    # A bare state dict of a Wan model (e.g. already extracted) is accepted too.
    if _is_tensor_dict(ckpt) and any(normalize_key(k).startswith("blocks.") for k in ckpt):
        return ckpt, "<state dict>"
    raise CheckpointError(
        f"{what} has no generator weights: expected a 'generator_ema' or 'generator' entry "
        f"(Self-Forcing / CausVid checkpoints), found top-level keys {sorted(map(str, ckpt))[:10]}"
    )


def check_output_path(src, dst, overwrite: bool = False) -> None:
    """Refuse, before reading anything, an output that would destroy the input or (without ``overwrite``) any
    existing file."""
    src, dst = os.fspath(src), os.fspath(dst)
    same = os.path.realpath(src) == os.path.realpath(dst)
    if not same and os.path.exists(src) and os.path.exists(dst):
        same = os.path.samefile(src, dst)
    if same:
        raise CheckpointError(
            f"the output {dst} is the input checkpoint: writing it would destroy the original; "
            "choose another output path (e.g. with a .safetensors extension)"
        )
    if os.path.exists(dst) and not overwrite:
        raise CheckpointError(f"{dst} already exists; choose another output path, or pass --overwrite to replace it")


def convert(src, dst, which: str | None = None, dtype=None, overwrite: bool = False) -> str:
    """Convert; returns which entry was used. Validates the result as a Wan T2V generator. ``dtype`` None keeps
    every tensor's own dtype."""
    check_output_path(src, dst, overwrite)
    sd, used = pick_generator(read_pt(src), which, what=os.fspath(src))
    model = build_generator(sd, what=f"{os.fspath(src)}[{used}]")
    save_generator(
        model,
        dst,
        dtype=parse_dtype(dtype),
        metadata={"source": os.path.basename(os.fspath(src)), "source_entry": used},
        overwrite=overwrite,
    )
    return used


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dsa_core.convert", description=__doc__.split("\n\n")[0])
    ap.add_argument("src", help="Self-Forcing / CausVid .pt checkpoint")
    ap.add_argument("dst", help="output .safetensors")
    ap.add_argument("--which", choices=GENERATOR_KEYS, default=None)
    ap.add_argument(
        "--dtype",
        default=None,
        help="fp32 | bf16 | fp16 | fp8_e4m3fn | fp8_e5m2 (default: keep the checkpoint's dtype)",
    )
    ap.add_argument("--overwrite", action="store_true", help="replace an existing output file (never the input)")
    args = ap.parse_args(argv)
    try:
        used = convert(args.src, args.dst, args.which, args.dtype, overwrite=args.overwrite)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.dst} from {used}: {describe_written(args.dst)}")
    return 0


def describe_written(path) -> str:
    """Tensor count, dtypes and size of a written safetensors file, e.g. '825 tensors, float32, 5.68 GB'."""
    from .checkpoint_header import read_header

    sd, _ = read_header(path)
    counts: dict[str, int] = {}
    for t in sd.values():
        name = str(t.dtype).replace("torch.", "")
        counts[name] = counts.get(name, 0) + 1
    dtypes = ", ".join(f"{n} x{c}" if len(counts) > 1 else n for n, c in sorted(counts.items()))
    return f"{len(sd)} tensors, {dtypes}, {os.path.getsize(path) / 1e9:.2f} GB"


if __name__ == "__main__":
    sys.exit(main())
