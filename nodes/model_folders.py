"""The pack's model folders in the host's folder_paths: models/dsa (confidence heads), models/dsa_prompts,
plus the bundled toy model (the pack's own models/toy), so the toy workflow runs in any install with no download.

Registered at import so extra_model_paths.yaml entries under the same names add to them, not replace them.
"""

from __future__ import annotations

import os

import folder_paths

HEADS = "dsa"
PROMPTS = "dsa_prompts"
PACK_TOY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models", "toy")


def register() -> None:
    for name in (HEADS, PROMPTS):
        folder_paths.add_model_folder_path(name, os.path.join(folder_paths.models_dir, name))
        paths, exts = folder_paths.folder_names_and_paths[name]
        folder_paths.folder_names_and_paths[name] = (paths, set(exts) | {".safetensors"})
    # Appended, never default: users' own folders come first.
    folder_paths.add_model_folder_path("diffusion_models", PACK_TOY)
    folder_paths.add_model_folder_path(PROMPTS, os.path.join(PACK_TOY, "prompts"))


register()
