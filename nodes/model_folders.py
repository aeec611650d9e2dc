"""The pack's model folders in the host's folder_paths: models/dsa (confidence heads), models/dsa_prompts.

Registered at import so extra_model_paths.yaml entries under the same names add to them, not replace them.
"""
from __future__ import annotations

import os

import folder_paths

HEADS = "dsa"
PROMPTS = "dsa_prompts"


def register() -> None:
    for name in (HEADS, PROMPTS):
        folder_paths.add_model_folder_path(name, os.path.join(folder_paths.models_dir, name))
        paths, exts = folder_paths.folder_names_and_paths[name]
        folder_paths.folder_names_and_paths[name] = (paths, set(exts) | {".safetensors"})


register()
