"""Preallocated self-attention KV cache with a rolling window plus sink frames, and O(1) snapshots.

Layout. Per layer, K and V are [B, H, capacity_frames, tokens_per_frame, head_dim]. K is stored
*after* RoPE with absolute frame positions (as Self-Forcing does), so evicting frames never requires
re-rotating anything and positions keep counting after the window rolls.

Slots. Frames 0..sink-1 live in slots 0..sink-1 forever. Every later frame f lives in ring slot
sink + (f - sink) % window. A chunk ending at frame `end` therefore sees the sink frames plus the last
`window` frames [end-window, end), which always occupy the slot prefix [0, min(end, sink+window)):
attention reads one contiguous slice and never gathers or shifts (reconstruction: Self-Forcing shifts
its buffer left instead; the set of visible frames is the same, the key order differs, which attention
does not depend on).

window_frames=None keeps every frame: capacity = total_frames, and writing past it raises.

Snapshots are copy-on-write per layer: snapshot() shares storage, and whichever copy writes a layer
first clones that layer, so neither copy sees the other's later writes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def tokens_per_frame(config, latent_h: int, latent_w: int) -> int:
    _, ph, pw = config.patch_size
    return math.ceil(latent_h / ph) * math.ceil(latent_w / pw)


def _capacity(window_frames, chunk_frames, sink_frames, total_frames) -> int:
    if sink_frames < 0:
        raise ValueError(f"sink_frames must be >= 0, got {sink_frames}")
    if window_frames is None:
        if total_frames is None:
            raise ValueError("window_frames=None keeps every frame: pass total_frames to size the cache")
        if total_frames < chunk_frames:
            raise ValueError(f"total_frames {total_frames} is smaller than chunk_frames {chunk_frames}")
        return int(total_frames)
    if window_frames < chunk_frames:
        raise ValueError(
            f"window_frames {window_frames} must be >= chunk_frames {chunk_frames} (a chunk must see itself)"
        )
    return int(window_frames) + int(sink_frames)


class KVCache:
    def __init__(
        self,
        num_layers: int,
        batch: int,
        num_heads: int,
        head_dim: int,
        tokens_per_frame: int,
        chunk_frames: int,
        window_frames: int | None = None,
        sink_frames: int = 0,
        total_frames: int | None = None,
        device=None,
        dtype=torch.bfloat16,
        _storage=None,
    ):
        self.num_layers, self.batch, self.num_heads, self.head_dim = num_layers, batch, num_heads, head_dim
        self.tokens_per_frame, self.chunk_frames = tokens_per_frame, chunk_frames
        self.window_frames = window_frames
        self.sink_frames = 0 if window_frames is None else int(sink_frames)
        self.total_frames = total_frames
        self.capacity_frames = _capacity(window_frames, chunk_frames, self.sink_frames, total_frames)
        self.dtype = dtype
        self.frames_written = 0  # absolute number of latent frames written so far
        self.last_chunk_start: int | None = None
        self.last_chunk_frames = 0
        if _storage is None:
            shape = (batch, num_heads, self.capacity_frames, tokens_per_frame, head_dim)
            _storage = [
                (torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype))
                for _ in range(num_layers)
            ]
            self._owned = [True] * num_layers
        else:
            self._owned = [False] * num_layers
        self._kv = list(_storage)

    # ---- sizing -------------------------------------------------------------------------------
    @staticmethod
    def bytes_required(
        config,
        latent_h: int,
        latent_w: int,
        window_frames: int | None,
        chunk_frames: int,
        sink_frames: int = 0,
        batch: int = 1,
        dtype=torch.bfloat16,
        total_frames: int | None = None,
    ) -> int:
        """Bytes of K+V storage for a config and latent size, before allocating anything."""
        cap = _capacity(window_frames, chunk_frames, 0 if window_frames is None else sink_frames, total_frames)
        itemsize = torch.empty((), dtype=dtype).element_size()
        tokens = tokens_per_frame(config, latent_h, latent_w)
        return 2 * config.num_layers * batch * cap * tokens * config.dim * itemsize

    @property
    def nbytes(self) -> int:
        """Bytes held by this cache's storage (shared layers counted once per copy)."""
        return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in self._kv)

    # ---- snapshots ----------------------------------------------------------------------------
    def snapshot(self) -> "KVCache":
        """O(1) copy-on-write copy: shares storage until either side writes a layer."""
        snap = KVCache.__new__(KVCache)
        snap.__dict__.update(self.__dict__)
        snap._kv = list(self._kv)
        snap._owned = [False] * self.num_layers
        self._owned = [False] * self.num_layers
        return snap

    def to(self, device) -> "KVCache":
        """A copy on ``device`` (this cache untouched); on the same device, a snapshot. Lets a host park a
        finished video's cache in CPU memory between nodes and bring it back to the GPU to continue."""
        device = torch.device(device)
        snap = self.snapshot()
        if all(k.device == device for k, _ in self._kv):
            return snap
        snap._kv = [(k.to(device), v.to(device)) for k, v in self._kv]
        snap._owned = [True] * self.num_layers
        return snap

    @property
    def device(self) -> torch.device:
        return self._kv[0][0].device

    def grown(self, total_frames: int) -> "KVCache":
        """A keep-all cache (window_frames=None) resized to hold total_frames, contents copied (for
        continuing a finished video). Rolling caches never need it."""
        if self.window_frames is not None:
            raise ValueError("only a keep-all cache (window_frames=None) can grow; a rolling one never fills")
        if total_frames < self.capacity_frames:
            raise ValueError(f"cannot shrink a cache from {self.capacity_frames} to {total_frames} frames")
        new = KVCache.__new__(KVCache)
        new.__dict__.update(self.__dict__)
        new.capacity_frames = new.total_frames = int(total_frames)
        kv = []
        for k, v in self._kv:
            shape = list(k.shape)
            shape[2] = total_frames
            k2, v2 = k.new_zeros(shape), v.new_zeros(shape)
            k2[:, :, : k.shape[2]].copy_(k)
            v2[:, :, : v.shape[2]].copy_(v)
            kv.append((k2, v2))
        new._kv, new._owned = kv, [True] * self.num_layers
        return new

    def rewind(self, frames: int) -> None:
        """Forget every frame from `frames` on, so generation restarts there (append at `frames`).
        Exact only while none of frames [0, frames) was evicted: always for keep-all caches, and for
        rolling ones while nothing has been evicted yet; else raises."""
        if not 0 <= frames <= self.frames_written:
            raise ValueError(f"cannot rewind to frame {frames}: {self.frames_written} frames written")
        if self.window_frames is not None and self.frames_written > self.capacity_frames:
            raise ValueError(
                "this rolling cache has evicted frames; rewinding would lose their K/V "
                "(branch with snapshot() before generating instead)"
            )
        self.frames_written = frames
        self.last_chunk_start, self.last_chunk_frames = None, 0

    # ---- slots --------------------------------------------------------------------------------
    def slot(self, frame: int) -> int:
        if self.window_frames is None or frame < self.sink_frames:
            return frame
        return self.sink_frames + (frame - self.sink_frames) % self.window_frames

    def begin_chunk(self, frame_start: int, frames: int) -> None:
        """Validate a chunk position and advance the bookkeeping (call once per forward, before writes)."""
        if frame_start == self.frames_written:
            pass  # append
        elif frame_start == self.last_chunk_start:
            if frames != self.last_chunk_frames:
                raise ValueError(
                    f"overwriting the chunk at frame {frame_start} with {frames} frames, but it "
                    f"was written with {self.last_chunk_frames}; a re-denoised chunk keeps its size"
                )
        else:
            raise ValueError(
                f"frame_start={frame_start} is neither the start of the last chunk ({self.last_chunk_start}, "
                f"overwrite) nor frames_written ({self.frames_written}, append); chunks go in order"
            )
        if frames > (self.window_frames or self.capacity_frames):
            raise ValueError(
                f"a chunk of {frames} frames does not fit the cache window "
                f"({self.window_frames or self.capacity_frames} frames)"
            )
        if self.window_frames is None and frame_start + frames > self.capacity_frames:
            raise ValueError(
                f"cache full: it keeps all {self.capacity_frames} frames (window_frames=None) and "
                f"frames {frame_start}..{frame_start + frames - 1} do not fit; size it with "
                "total_frames or use a rolling window"
            )
        self.last_chunk_start, self.last_chunk_frames = frame_start, frames
        self.frames_written = max(self.frames_written, frame_start + frames)

    def _ensure_owned(self, layer: int) -> None:
        if not self._owned[layer]:
            k, v = self._kv[layer]
            self._kv[layer] = (k.clone(), v.clone())
            self._owned[layer] = True

    def write(self, layer: int, frame_start: int, k: Tensor, v: Tensor) -> None:
        """Store a chunk's K (post-RoPE) and V, each [B, H, Tc*tokens_per_frame, D], at its frames' slots."""
        b, h, n, d = k.shape
        tc = n // self.tokens_per_frame
        if b != self.batch or h != self.num_heads or d != self.head_dim or tc * self.tokens_per_frame != n:
            raise ValueError(
                f"K/V of shape {tuple(k.shape)} do not fit this cache (batch {self.batch}, heads "
                f"{self.num_heads}, {self.tokens_per_frame} tokens per frame, head_dim {self.head_dim})"
            )
        self._ensure_owned(layer)
        ks, vs = self._kv[layer]
        k5, v5 = k.unflatten(2, (tc, self.tokens_per_frame)), v.unflatten(2, (tc, self.tokens_per_frame))
        # the chunk's frames occupy at most two contiguous slot runs (the ring wraps once at most): slice
        # copies straight into the storage, no index tensor (a host-to-device copy on CUDA)
        done = 0
        while done < tc:
            s0 = self.slot(frame_start + done)
            run = 1
            while done + run < tc and self.slot(frame_start + done + run) == s0 + run:
                run += 1
            ks[:, :, s0 : s0 + run].copy_(k5[:, :, done : done + run])
            vs[:, :, s0 : s0 + run].copy_(v5[:, :, done : done + run])
            done += run

    def visible(self, layer: int, end_frame: int) -> tuple[Tensor, Tensor]:
        """K, V [B, H, L, D] of every frame a chunk ending at end_frame attends to (sink + window): views of the
        storage, no copy; once the window is full, L is the same for every chunk (static shapes)."""
        n = min(end_frame, self.capacity_frames)
        ks, vs = self._kv[layer]
        return ks[:, :, :n].flatten(2, 3), vs[:, :, :n].flatten(2, 3)

    def visible_frames(self, end_frame: int) -> list[int]:
        """Absolute frame indices visible to a chunk ending at end_frame (for tests and references)."""
        if self.window_frames is None:
            return list(range(end_frame))
        return [f for f in range(end_frame) if f < self.sink_frames or f >= end_frame - self.window_frames]
