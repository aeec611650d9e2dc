"""Random inputs for the generator tests (a plain module: conftest names collide across folders)."""

import torch


def make_inputs(batch=1, frames=7, h=4, w=6, text_len=5, seed=0, text_dim=4096):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 16, frames, h, w, generator=g)
    t = torch.rand(batch, frames, generator=g) * 1000
    ctx = torch.randn(batch, text_len, text_dim, generator=g)
    return x, t, ctx
