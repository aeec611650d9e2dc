"""Which of the host's MODEL patches reach DSA's chunk forward, and a name for each one that cannot.

The host applies its patches inside its own sampler (CFGGuider -> BaseModel.apply_model -> WanModel.forward). DSA
calls the diffusion model's submodules chunk by chunk over a KV cache instead, so:
- what lives in the modules applies by itself: weights and LoRA (the patcher's weight patches), weight wrappers,
  object patches on modules, fp8 storage and the compute dtype (all set when load_models_gpu loads the MODEL);
- what DSA reads: the transformer_options (every attention call gets them, an attention override included), the
  compile options TorchCompileModel records (DSA compiles its own block pieces with them), model_sampling (with
  schedule 'model'), the patcher's pre-run and clean-up callbacks (run around the sampling as the host's sampler
  does);
- the rest (sampler and model wrappers, block patches and replacements, CFG functions, hooks) assumes the host's
  whole-video forward: named once per run in the report and the console, never dropped silently.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import comfy.patcher_extension as pe

try:  # both supported hosts have it; the names are the host's own
    from comfy_api.torch_helpers.torch_compile import COMPILE_KEY, TORCH_COMPILE_KWARGS
except ImportError:  # pragma: no cover - a host without the torch.compile helper
    COMPILE_KEY, TORCH_COMPILE_KWARGS = "torch.compile", "torch_compile_kwargs"

SCHEDULE_HINT = "use schedule 'model' to sample with it"
LADDER_HINT = "disconnect the ladder and use schedule 'model' to sample with it"
# ModelPatcher callbacks the patcher runs itself (clone, load, unload, inject) or DSA runs (pre_run / cleanup)
_RUN_CALLBACKS = {
    getattr(pe.CallbacksMP, name)
    for name in (
        "ON_CLONE",
        "ON_LOAD",
        "ON_DETACH",
        "ON_CLEANUP",
        "ON_PRE_RUN",
        "ON_INJECT_MODEL",
        "ON_EJECT_MODEL",
        "ON_DEEPCLONE_MULTIGPU",
        "ON_MATCH_MULTIGPU_CLONES",
    )
    if hasattr(pe.CallbacksMP, name)
}
# model_options entries only the host's sampler calls (DSA samples at CFG 1 with its own step loop)
_SAMPLER_FUNCTIONS = (
    "model_function_wrapper",
    "sampler_cfg_function",
    "sampler_pre_cfg_function",
    "sampler_post_cfg_function",
    "sampler_calc_cond_batch_function",
    "denoise_mask_function",
)
_DTYPE_PATCH = "manual_cast_dtype"
SAMPLING_PATCH = "model_sampling"


@dataclass
class HostPatches:
    """What of the MODEL's patches a DSA run applies, what it cannot run (named), and hints for the artist."""

    applied: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)
    compiled_graphs: int | None = None  # torch.compile graphs made during the run (None: not compiled)

    def to_dict(self) -> dict:
        return {
            "applied": list(self.applied),
            "ignored": list(self.ignored),
            "hints": list(self.hints),
            "compiled_graphs": self.compiled_graphs,
        }

    def log(self, node_id=None):
        """One console line for what cannot apply and one per hint (once per run, never per step)."""
        where = f"DSA (node {node_id})" if node_id is not None else "DSA"
        if self.ignored:
            logging.warning("%s: ignored host patches (DSA cannot run them): %s", where, "; ".join(self.ignored))
        for hint in self.hints:
            logging.warning("%s: %s", where, hint)


def transformer_options(model) -> dict:
    """The MODEL's transformer_options as the host's sampler builds them (a copy: the cached MODEL is never
    changed), with the patcher's wrappers and callbacks merged in (comfy.sampler_helpers.prepare_model_patcher)."""
    to = pe.copy_nested_dicts(model.model_options.get("transformer_options", {}))
    pe.merge_nested_dicts(to.setdefault("wrappers", {}), getattr(model, "wrappers", {}), copy_dict1=False)
    pe.merge_nested_dicts(to.setdefault("callbacks", {}), getattr(model, "callbacks", {}), copy_dict1=False)
    return to


def compile_request(model) -> dict | None:
    """The torch.compile options TorchCompileModel recorded on the MODEL (a copy), or None when it is not compiled."""
    if not model.get_wrappers(pe.WrappersMP.APPLY_MODEL, COMPILE_KEY):
        return None
    return pe.copy_nested_dicts(model.model_options.get(TORCH_COMPILE_KWARGS) or {})


def _key_name(key) -> str:
    return "(no key)" if key is None else str(key)


def _by_key(table: dict, skip) -> dict[str, list[str]]:
    """{kind: {key: [functions]}} (the host's wrappers/callbacks layout) -> {key name: [kinds]}, one entry per key."""
    out: dict[str, list[str]] = {}
    for kind, by_key in table.items():
        for key, fns in by_key.items():
            if fns and not skip(kind, key):
                out.setdefault(_key_name(key), []).append(kind)
    return out


def survey(model, to: dict, uses_model_sampling: bool, ladder_name: str) -> HostPatches:
    """Sort the MODEL's patches into applied / ignored; a hint when a shift patch is not what the ladder walks."""
    out = HostPatches()
    if model.patches:
        out.applied.append(f"weight patches ({len(model.patches)} weights: LoRA, merges)")
    if getattr(model, "weight_wrapper_patches", None):
        out.applied.append("weight wrappers")
    dtype_patch = model.object_patches.get(_DTYPE_PATCH)
    if dtype_patch is not None:
        out.applied.append(f"compute dtype {str(dtype_patch).replace('torch.', '')}")
    if SAMPLING_PATCH in model.object_patches:
        sampling = model.object_patches[SAMPLING_PATCH]
        detail = f"{type(sampling).__name__}, shift {getattr(sampling, 'shift', '?')}"
        if uses_model_sampling:
            out.applied.append(f"model_sampling patch ({detail})")
        else:
            out.ignored.append(f"model_sampling patch ({detail})")
            fix = SCHEDULE_HINT if ladder_name.startswith("schedule") else LADDER_HINT
            out.hints.append(f"the MODEL's sampling is patched ({detail}) but the {ladder_name} ignores it: {fix}")
    for key, obj in model.object_patches.items():
        if key not in (_DTYPE_PATCH, SAMPLING_PATCH) and not _is_module_patch(key, obj):
            out.ignored.append(f"object patch {key}")
    compile_kw = compile_request(model)
    if compile_kw is not None:
        out.applied.append(f"torch.compile (backend {compile_kw.get('backend', 'inductor')}) of DSA's block pieces")
    if "optimized_attention_override" in to:
        out.applied.append("attention override (optimized_attention_override)")
    wrappers = _by_key(
        to.get("wrappers", {}), skip=lambda kind, key: kind == pe.WrappersMP.APPLY_MODEL and key == COMPILE_KEY
    )
    out.ignored += [f"wrapper {key} ({', '.join(kinds)})" for key, kinds in wrappers.items()]
    callbacks = _by_key(to.get("callbacks", {}), skip=lambda kind, key: kind in _RUN_CALLBACKS)
    out.ignored += [f"callback {key} ({', '.join(kinds)})" for key, kinds in callbacks.items()]
    for name, fns in to.get("patches", {}).items():
        if fns:
            out.ignored.append(f"patches {name} ({len(fns)})")
    for name, by_block in to.get("patches_replace", {}).items():
        if by_block:
            out.ignored.append(f"patches_replace {name} ({len(by_block)} blocks)")
    if to.get("rope_options"):
        out.ignored.append("rope_options")
    for key in _SAMPLER_FUNCTIONS:
        if model.model_options.get(key):
            out.ignored.append(key)
    for key in getattr(model, "additional_models", {}):
        out.ignored.append(f"additional models {_key_name(key)}")
    if getattr(model, "hook_patches", None):
        out.ignored.append("hooks (hook_patches)")
    return out


def _is_module_patch(key: str, obj) -> bool:
    """An object patch on a module inside the diffusion model: DSA calls that module, so the patch applies."""
    import torch

    return key.startswith("diffusion_model.") and isinstance(obj, torch.nn.Module)


def compiled_graph_count() -> int:
    """Graphs torch.compile has made in this process so far (dynamo's own counter)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])
