"""Training checkpoints without pickles: one safetensors file per checkpoint.

Layout (all in one ``.safetensors``):
  ``model.<name>.<param>``           weights of each trained / frozen module (full precision)
  ``optim.<name>.<idx>.<key>``       every tensor of each optimizer's per-parameter state
  ``rng.<name>``                     torch.Generator states (uint8), so a resumed run draws the same noise
  ``extra.<name>``                   any other tensors (e.g. the running-median window of a head target)
and the metadata key ``dsa.train_state``: JSON with the step, the optimizers' param_groups and non-tensor
state, the run's config and loss history. Loading reads safetensors and JSON only (nothing is unpickled),
and a resumed run continues bit-for-bit where the saved one was (tests check this on CPU).

Writes go to a temporary file and are renamed into place, so a crash never leaves a half-written
checkpoint under the final name. Only rank 0 calls ``save_training_state``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

META_KEY = "dsa.train_state"
FORMAT = "dsa-train-state-v1"


def _tensor_ok(v) -> bool:
    return isinstance(v, torch.Tensor)


def save_training_state(
    path,
    *,
    step: int,
    modules: dict[str, nn.Module],
    optimizers: dict | None = None,
    generators: dict[str, torch.Generator] | None = None,
    extra_tensors: dict | None = None,
    info: dict | None = None,
) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for name, mod in modules.items():
        for k, v in mod.state_dict().items():
            tensors[f"model.{name}.{k}"] = v.detach().cpu().contiguous()
    optim_meta = {}
    for name, opt in (optimizers or {}).items():
        sd = opt.state_dict()
        plain_state = {}
        for idx, st in sd["state"].items():
            for k, v in st.items():
                if _tensor_ok(v):
                    tensors[f"optim.{name}.{idx}.{k}"] = v.detach().cpu().contiguous()
                else:
                    plain_state.setdefault(str(idx), {})[k] = v
        optim_meta[name] = {
            "param_groups": sd["param_groups"],
            "plain_state": plain_state,
            "tensor_state": {
                str(i): sorted(k for k, v in st.items() if _tensor_ok(v)) for i, st in sd["state"].items()
            },
        }
    for name, g in (generators or {}).items():
        tensors[f"rng.{name}"] = g.get_state().clone()
    for name, t in (extra_tensors or {}).items():
        tensors[f"extra.{name}"] = t.detach().cpu().contiguous()
    meta = {"format": FORMAT, "step": int(step), "optimizers": optim_meta, "info": info or {}}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta)})
    os.replace(tmp, path)
    return path


class TrainingState:
    """A loaded checkpoint: ``step``, ``info`` and methods that restore into live objects."""

    def __init__(self, tensors: dict, meta: dict, path: str):
        self.tensors, self.meta, self.path = tensors, meta, path

    @property
    def step(self) -> int:
        return int(self.meta["step"])

    @property
    def info(self) -> dict:
        return self.meta.get("info", {})

    def module_state(self, name: str) -> dict:
        p = f"model.{name}."
        return {k[len(p) :]: v for k, v in self.tensors.items() if k.startswith(p)}

    def has_module(self, name: str) -> bool:
        return any(k.startswith(f"model.{name}.") for k in self.tensors)

    def load_module(self, name: str, module: nn.Module) -> None:
        sd = self.module_state(name)
        if not sd:
            raise KeyError(f"{self.path} has no weights for '{name}'")
        ref = module.state_dict()
        module.load_state_dict(
            {k: v.to(device=ref[k].device, dtype=ref[k].dtype) if k in ref else v for k, v in sd.items()}, strict=True
        )

    def load_optimizer(self, name: str, opt: torch.optim.Optimizer) -> None:
        om = self.meta["optimizers"][name]
        state = {}
        for idx, keys in om["tensor_state"].items():
            st = {k: self.tensors[f"optim.{name}.{idx}.{k}"] for k in keys}
            st.update(om["plain_state"].get(idx, {}))
            state[int(idx)] = st
        for idx, st in om["plain_state"].items():
            state.setdefault(int(idx), {}).update(st)
        groups = [dict(g) for g in om["param_groups"]]
        for g in groups:
            if "betas" in g and isinstance(g["betas"], list):
                g["betas"] = tuple(g["betas"])
        opt.load_state_dict({"state": state, "param_groups": groups})  # moves state to the params' device

    def load_generator(self, name: str, g: torch.Generator) -> None:
        g.set_state(self.tensors[f"rng.{name}"])

    def extra(self, name: str, default=None):
        return self.tensors.get(f"extra.{name}", default)


def load_training_state(path) -> TrainingState:
    from safetensors import safe_open

    path = os.fspath(path)
    with safe_open(path, framework="pt", device="cpu") as f:
        meta = json.loads((f.metadata() or {}).get(META_KEY, "null") or "null")
        if not meta or meta.get("format") != FORMAT:
            raise ValueError(
                f"{path} is not a DSA training checkpoint (no '{META_KEY}' metadata); "
                "to start from plain weights pass them as --init / --generator instead of --resume"
            )
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return TrainingState(tensors, meta, path)


def latest_checkpoint(directory) -> Path | None:
    """``<dir>/latest.safetensors`` when present (what --resume auto picks up)."""
    p = Path(directory) / "latest.safetensors"
    return p if p.is_file() else None
