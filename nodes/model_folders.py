"""The pack's model folders in the host's folder_paths: models/dsa (confidence heads), models/dsa_prompts,
plus the bundled toy model (the pack's own models/toy), so the toy workflow runs in any install with no download.

Registered at import so extra_model_paths.yaml entries under the same names add to them, not replace them. The toy
folder is the pack's own entry, not a diffusion_models folder: the host lists folders recursively, so its prompt
embeddings (models/toy/prompts) would show up in UNETLoader's list, which cannot load them. DSA Model Loader
lists the diffusion models plus the toy model (``generator_names`` / ``generator_path``).
"""

from __future__ import annotations

import os

import folder_paths

HEADS = "dsa"
PROMPTS = "dsa_prompts"
TOY = "dsa_toy"
PACK_TOY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models", "toy")


def register() -> None:
    for name in (HEADS, PROMPTS):
        folder_paths.add_model_folder_path(name, os.path.join(folder_paths.models_dir, name))
        paths, exts = folder_paths.folder_names_and_paths[name]
        folder_paths.folder_names_and_paths[name] = (paths, set(exts) | {".safetensors"})
    # Appended, never default: users' own folders come first.
    folder_paths.add_model_folder_path(TOY, PACK_TOY)
    folder_paths.folder_names_and_paths[TOY] = (folder_paths.folder_names_and_paths[TOY][0], {".safetensors"})
    folder_paths.add_model_folder_path(PROMPTS, os.path.join(PACK_TOY, "prompts"))


def toy_generators() -> list[str]:
    """The toy model files (top level of the toy folders; the prompts below them are not generators)."""
    return [n for n in folder_paths.get_filename_list(TOY) if "/" not in n.replace(os.sep, "/")]


def generator_names() -> list[str]:
    """DSA Model Loader's list: the host's diffusion models, then the toy model(s) not shadowed by one of them."""
    names = folder_paths.get_filename_list("diffusion_models")
    return names + [n for n in toy_generators() if n not in names]


def generator_path(name: str) -> str:
    """The file of a generator_names entry (the host's folders first)."""
    if name in toy_generators() and name not in folder_paths.get_filename_list("diffusion_models"):
        return folder_paths.get_full_path_or_raise(TOY, name)
    return folder_paths.get_full_path_or_raise("diffusion_models", name)


register()
