"""Where the test host lives, and how to import its `comfy` package in-process on CPU.

The host is installed by scripts/host.py (never vendored). Tests that need it import it through here.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
import host as host_script  # noqa: E402  (scripts/host.py: one place that knows the host's layout)

sys.path.pop(0)


def comfy_dir() -> Path:
    d = Path(os.environ.get("DSA_COMFY_DIR") or host_script.comfy_dir())
    if not (d / "main.py").exists():
        raise RuntimeError(f"No ComfyUI host at {d}: run `python3 scripts/host.py install` first")
    return d


def import_comfy_cpu(base_directory: str | None = None, cpu: bool = True):
    """Put the host on sys.path and configure it for CPU (unless ``cpu`` is False) before any other comfy import."""
    d = str(comfy_dir())
    if d not in sys.path:
        sys.path.insert(0, d)
    import comfy.cli_args as cli_args

    cli_args.args.cpu = cpu
    cli_args.args.disable_api_nodes = True
    if base_directory is not None:
        cli_args.args.base_directory = base_directory
    import comfy  # noqa: F401

    return comfy
