"""ComfyUI-DSA: Dynamic Step Allocation for few-step autoregressive video (Self-Forcing-style causal Wan 2.1).

The host imports this folder as a package: nodes come through the V3 entry point, js/ is served to the
front end at /extensions/<folder name>/. dsa_core (pure PyTorch) never imports ComfyUI.
"""

from .nodes import comfy_entrypoint

WEB_DIRECTORY = "./js"

__all__ = ["comfy_entrypoint", "WEB_DIRECTORY"]
