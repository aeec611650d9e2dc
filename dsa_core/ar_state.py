"""The state of an autoregressive generation, to continue later without recomputing anything.

An ARState holds the KV cache (every committed frame's clean K/V), the prompt's cross-attention
context, all committed latent frames, and how they were grouped into chunks. Functions here never
mutate the state they are given: they branch it with ``snapshot()`` (KVCache.snapshot is copy-on-write,
so a branch costs one cache copy only when it is first written).

- ``prime_with_latents``: start from existing latent frames (a clip to extend, an image's latent),
  committed to the cache with t = 0 passes, chunk by chunk, exactly like generated chunks are committed.
- ``switch_prompt``: a new prompt from the next chunk on. Cross-attention always uses the new prompt;
  optionally the cached self-attention K/V are recomputed under it (LongLive's "recache").
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from .kv_cache import KVCache
from .policies import BudgetAllowance

RECACHE_NONE = "none"
RECACHE_ALL = "all"


@dataclass
class ARState:
    cache: KVCache
    text: object  # causal_wan.TextContext of the current prompt
    latents: Tensor  # [B, 16, T, H, W]: every committed frame (context and generated), in order
    chunk_frames: int  # frames per generated chunk
    latent_h: int
    latent_w: int
    chunk_sizes: tuple = ()  # sizes of the committed groups, in order (sum = T); replayed by recache
    next_chunk_index: int = 0  # generated chunks so far in this lineage (prompt_schedule keys on it)
    noise: object = None  # the noise source used so far (continuations reuse it by default)
    nfe: int = 0  # generator forwards spent on this lineage (all calls)
    allowance: BudgetAllowance = field(default_factory=BudgetAllowance)  # what budget chunks spent (policies.py)
    meta: dict = field(default_factory=dict)

    @property
    def frames(self) -> int:
        return self.latents.shape[2]

    @property
    def batch(self) -> int:
        return self.latents.shape[0]

    @property
    def device(self):
        return self.latents.device

    def to(self, device) -> "ARState":
        """An independent copy on ``device`` (cache, prompt context and frames); this state is untouched."""
        return replace(
            self,
            cache=self.cache.to(device),
            text=self.text.to(device=device),
            latents=self.latents.to(device),
            meta=dict(self.meta),
        )

    def snapshot(self) -> "ARState":
        """An independent branch: later writes to either side are invisible to the other."""
        return replace(self, cache=self.cache.snapshot(), meta=dict(self.meta))


def commit_clean(model, x0: Tensor, text, cache: KVCache, frame_start: int) -> None:
    """The t = 0 pass on clean frames ``x0`` [B, C, T, H, W] at ``frame_start``: writes their K/V to ``cache``."""
    b = x0.shape[0]
    model.forward_chunk(x0, torch.zeros(b, device=x0.device, dtype=x0.dtype), text, cache, frame_start)


def new_state(
    model,
    text,
    *,
    batch: int,
    latent_h: int,
    latent_w: int,
    chunk_frames: int,
    window_frames: int | None = None,
    sink_frames: int = 0,
    total_frames: int | None = None,
    device=None,
    dtype=None,
    noise=None,
) -> ARState:
    """An empty state (no frames yet). ``total_frames`` sizes a keep-everything cache
    (window_frames=None); it grows on demand when a continuation needs more."""
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
    dtype = dtype or torch.float32
    total = total_frames if window_frames is None else None
    if window_frames is None and total is None:
        total = chunk_frames
    cache = model.new_cache(
        batch,
        latent_h,
        latent_w,
        chunk_frames,
        window_frames,
        sink_frames,
        max(total, chunk_frames) if total is not None else None,
        device=device,
        dtype=dtype,
    )
    latents = torch.zeros(batch, model.config.in_dim, 0, latent_h, latent_w, device=device, dtype=dtype)
    return ARState(cache, text, latents, chunk_frames, latent_h, latent_w, noise=noise)


def ensure_capacity(state: ARState, frames_needed: int) -> None:
    """Grow a keep-everything cache (window_frames=None) of an already-branched state to hold
    ``frames_needed`` frames, copying its K/V (rolling-window caches never need it)."""
    cache = state.cache
    if cache.window_frames is not None or cache.capacity_frames >= frames_needed:
        return
    state.cache = cache.grown(frames_needed)


def append_committed(model, state: ARState, latents: Tensor, group: int) -> int:
    """Commit ``latents`` [B, C, P, H, W] to a branched state in groups of ``group`` frames (t = 0)."""
    p = latents.shape[2]
    ensure_capacity(state, state.frames + p)
    passes, sizes = 0, list(state.chunk_sizes)
    lat = latents.to(device=state.device, dtype=state.latents.dtype)
    for s in range(0, p, group):
        x0 = lat[:, :, s : s + group]
        commit_clean(model, x0, state.text, state.cache, state.cache.frames_written)
        sizes.append(x0.shape[2])
        passes += 1
    state.latents = torch.cat([state.latents, lat], dim=2)
    state.chunk_sizes = tuple(sizes)
    state.nfe += passes
    return passes


def prime_with_latents(
    model,
    text,
    latents: Tensor,
    *,
    chunk_frames: int,
    state: ARState | None = None,
    window_frames: int | None = None,
    sink_frames: int = 0,
    total_frames: int | None = None,
    dtype=None,
) -> ARState:
    """A state whose cache holds ``latents`` [B, 16, P, H, W] (clean frames) as context.

    The frames are committed with t = 0 passes in groups of ``chunk_frames`` (the last group may be
    shorter), the same pass that commits a generated chunk. With ``state`` the frames are appended to a
    branch of it (its prompt unless ``text`` is given). Costs ceil(P / chunk_frames) forwards.
    """
    if latents.ndim != 5:
        raise ValueError(f"context latents must be [B, C, T, H, W], got shape {tuple(latents.shape)}")
    if state is None:
        b, _, p, h, w = latents.shape
        state = new_state(
            model,
            text,
            batch=b,
            latent_h=h,
            latent_w=w,
            chunk_frames=chunk_frames,
            window_frames=window_frames,
            sink_frames=sink_frames,
            total_frames=max(total_frames or 0, p),
            device=latents.device,
            dtype=dtype or latents.dtype,
        )
    else:
        check_latents_match(state, latents)
        state = state.snapshot()
        if text is not None:
            state.text = text
    append_committed(model, state, latents, chunk_frames)
    return state


def check_latents_match(state: ARState, latents: Tensor) -> None:
    b, c, _, h, w = latents.shape
    if (b, h, w) != (state.batch, state.latent_h, state.latent_w) or c != state.latents.shape[1]:
        raise ValueError(
            f"latents of shape {tuple(latents.shape)} do not match the state's "
            f"batch {state.batch}, {state.latents.shape[1]} channels, {state.latent_h}x{state.latent_w}"
        )


def switch_prompt(model, state: ARState, text, recache="none") -> tuple[ARState, int]:
    """A branch of ``state`` that continues under ``text``; returns (state, forwards spent).

    recache (reconstruction of LongLive's prompt-switch recache; selectable because it costs forwards):
      'none'  cross-attention switches, the cached self-attention K/V stay as computed under the old
              prompt (no cost).
      'all'   rebuild the cache by re-committing every frame under the new prompt, in the original chunk
              grouping (one t = 0 forward per group). Exact for every cache kind.
      N (int) re-commit only the groups covering the last N frames, on top of the older frames' cached K/V
              (LongLive's "recent frames"). Needs a keep-everything cache (window_frames=None): in a
              rolling window the slots still hold frames the rewrite must not see; use 'all' there.
    """
    new = state.snapshot()
    new.text = text
    if recache in (None, RECACHE_NONE, 0):
        return new, 0
    sizes = list(state.chunk_sizes)
    if recache == RECACHE_ALL:
        start_group = 0
    elif isinstance(recache, int) and not isinstance(recache, bool) and recache > 0:
        if state.cache.window_frames is not None:
            raise ValueError(
                "recaching only the recent frames needs a cache that keeps every frame "
                "(window_frames=None); with a rolling window use recache='all'"
            )
        start_group, covered = len(sizes), 0
        while start_group > 0 and covered < recache:
            start_group -= 1
            covered += sizes[start_group]
    else:
        raise ValueError(f"recache must be 'none', 'all' or a positive number of frames, got {recache!r}")
    start_frame = sum(sizes[:start_group])
    if start_group == 0:
        c = state.cache
        new.cache = model.new_cache(
            state.batch,
            state.latent_h,
            state.latent_w,
            c.chunk_frames,
            c.window_frames,
            c.sink_frames,
            c.capacity_frames if c.window_frames is None else None,
            device=state.device,
            dtype=c.dtype,
        )
    else:
        # Rewind the (branched, keep-everything) cache: frames >= start_frame are rewritten in order
        # and a chunk only reads slots below its end, so stale slots above are never seen.
        new.cache.rewind(start_frame)
    passes, f = 0, start_frame
    for size in sizes[start_group:]:
        commit_clean(model, state.latents[:, :, f : f + size], text, new.cache, f)
        f += size
        passes += 1
    new.nfe += passes
    return new, passes
