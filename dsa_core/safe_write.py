"""Writing safetensors files so that a checkpoint is never lost: atomically, with ordinary permissions."""

from __future__ import annotations

import contextlib
import os

from safetensors.torch import save_file

from .checkpoint_keys import CheckpointError


def write_safetensors(tensors: dict, path, metadata: dict | None = None, *, overwrite: bool = True) -> None:
    """Write a safetensors file atomically: into a temporary file beside ``path``, renamed over it once complete,
    so a failed or interrupted write never leaves a half file nor destroys the one it replaces. The file gets
    the permissions any new file gets (the umask). ``overwrite`` False refuses an existing ``path``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise CheckpointError(
            f"cannot write {path}: the folder {folder} does not exist; create it or choose another output path"
        )
    if not overwrite and os.path.exists(path):
        raise CheckpointError(f"{path} already exists; choose another output path, or pass --overwrite to replace it")
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.partial")
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.chmod(tmp, 0o666 & ~_umask())  # safetensors writes 0600; a model file is as readable as any other
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _umask() -> int:
    """The process umask, read without changing it where the OS tells it (Linux), else by setting it back."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
