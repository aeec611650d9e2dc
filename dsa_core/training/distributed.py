"""torch.distributed helpers: one code path for a single process and for torchrun.

Launched by ``torchrun --nproc_per_node N -m dsa_core.training.train_dmd ...`` the environment carries
RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT; ``setup()`` then initialises the default
process group (NCCL on CUDA, gloo on CPU), pins each rank to cuda:LOCAL_RANK, and ``wrap()`` puts a
module in DistributedDataParallel, which all-reduces (averages) gradients in backward. Without those
variables everything runs in one process and ``wrap()`` returns the module itself.

The training objectives are nn.Modules whose forward computes the loss (see dmd.py), so gradients go
through DDP's own forward/backward hooks, not through a home-made all-reduce. Rank 0 writes checkpoints
and logs; every rank draws its own prompts and noise (seed + rank).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialised_here: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1 or (dist.is_available() and dist.is_initialized())

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def setup(device: str | None = None, backend: str | None = None) -> DistEnv:
    """Initialise torch.distributed if launched by torchrun (or already initialised); pick the device.

    device: 'cpu', 'cuda' or None (cuda when available). backend: default nccl on CUDA, gloo on CPU.
    """
    want_cuda = (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    if want_cuda and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch.cuda.is_available() is False")
    env = DistEnv()
    if dist.is_available() and dist.is_initialized():
        env.rank, env.world_size = dist.get_rank(), dist.get_world_size()
        env.local_rank = int(os.environ.get("LOCAL_RANK", env.rank))
    elif launched_by_torchrun():
        env.rank, env.world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        env.local_rank = int(os.environ.get("LOCAL_RANK", env.rank))
        if want_cuda:
            torch.cuda.set_device(env.local_rank)
        dist.init_process_group(backend or ("nccl" if want_cuda else "gloo"))
        env.initialised_here = True
    if want_cuda:
        env.device = torch.device("cuda", env.local_rank if env.distributed else torch.cuda.current_device())
    elif device and device not in ("cpu", "cuda"):
        env.device = torch.device(device)
    return env


def cleanup(env: DistEnv) -> None:
    if env.initialised_here and dist.is_initialized():
        dist.destroy_process_group()


def wrap(module: nn.Module, env: DistEnv) -> nn.Module:
    """DistributedDataParallel around ``module`` when distributed (only if it has trainable parameters)."""
    if not env.distributed or not any(p.requires_grad for p in module.parameters()):
        return module
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [env.device.index] if env.device.type == "cuda" else None
    return DDP(module, device_ids=ids, output_device=ids[0] if ids else None)


def unwrap(module: nn.Module) -> nn.Module:
    return getattr(module, "module", module)


def mean_across_ranks(value: float, env: DistEnv) -> float:
    """Average a Python float over ranks (for logging)."""
    if not env.distributed:
        return float(value)
    t = torch.tensor([float(value)], device=env.device)
    dist.all_reduce(t)
    return float(t) / env.world_size


def gather_floats(values: list[float], env: DistEnv) -> list[float]:
    """All ranks' lists concatenated (for the running-median target scale)."""
    if not env.distributed:
        return list(values)
    out = [None] * env.world_size
    dist.all_gather_object(out, list(values))
    return [v for part in out for v in part]


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


def broadcast_module(module: nn.Module, env: DistEnv, src: int = 0) -> None:
    """Make every rank hold rank ``src``'s parameters and buffers (e.g. after loading on rank 0)."""
    if not env.distributed:
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src)
