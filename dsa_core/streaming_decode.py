"""Streaming decode: video frames from each committed chunk as soon as it exists, never a whole-video pass.

The Wan 2.1 VAE is causal in time. Its decoder walks the latent a few frames per call and keeps, for every causal
3D convolution, the last frames of that convolution's input (a "feature cache"); decoding the next latent frames
needs only them and that cache. So decoding chunk after chunk with the cache carried over gives the same frames as
decoding the whole latent at once, while holding one call's activations plus the cache, never the whole video. Its
first-frame rule: the first latent frame of a video decodes to 1 frame (the temporal upsamplers repeat nothing
yet), every later one to 4 (81 frames = 21 latent frames = 1 + 4 * 20).

The frames equal the host's own decode only when the decoder is called on the same groups of latent frames as the
host's ``WanVAE.decode`` calls it. Hosts differ: ComfyUI 0.3.x decodes one latent frame per call; newer hosts (the
ones with ``count_cache_layers``, e.g. 0.33) the first frame alone, then aligned pairs (1, 2), (3, 4), ..., a
trailing odd frame alone. On such a host a chunk whose last frame would start a pair holds that frame back
(``DecodeState.pending``) until the next chunk brings its partner; at the end of a video ``flush`` decodes it
alone, as the host does for the last frame of an even-length latent. A flushed state ends its video: a
continuation must start from the state before the flush, so that the held-back frame is paired with its successor.

A ``DecodeState`` is immutable: ``decode`` returns a new state and never writes into the one it was given (the
decoder replaces cache entries, it never writes into cached tensors), so a state held by a cached node output can
be continued by any number of branches.

The TAEHV family of tiny video decoders (taew2_1, lighttaew2_1: ``CausalMemBlockDecoder``) is causal too, with
a memory of one frame per block instead of a convolution cache; it decodes latent frame by latent frame, gives the
same frame count and alignment as the Wan VAE, and its state travels in the same immutable ``DecodeState``.

Decoders return frames as [B, T, H, W, 3] float32 on the decoder's device: in [0, 1] for the Wan VAE; a tiny
decoder's as its host gives them (unclamped).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

WAN_TEMPORAL = 4


def wan_video_frames(latent_frames: int, first: bool) -> int:
    """Video frames that ``latent_frames`` Wan latent frames decode to; ``first``: they start the video."""
    if latent_frames <= 0:
        return 0
    return 1 + WAN_TEMPORAL * (latent_frames - 1) if first else WAN_TEMPORAL * latent_frames


@dataclass(frozen=True)
class DecodeState:
    """Where a streaming decode stands: the decoder's causal cache after ``latent_frames`` latent frames."""

    cache: tuple = ()  # per cache slot: a tensor, a marker string, or None; never written in place
    latent_frames: int = 0  # latent frames taken in so far (decoded, plus the pending one)
    video_frames: int = 0  # frames they gave so far (the pending frame's not yet)
    source: object = None  # identifies the decoder (and weights) that made the cache
    pending: Tensor | None = None  # a projected latent frame held back to be decoded with the next one (pairs)
    flushed: bool = False  # the pending frame was decoded alone: the video ended here, it cannot continue

    def to(self, device) -> "DecodeState":
        """The same state with its cached tensors on ``device`` (a copy; this one is untouched)."""
        return replace(
            self,
            cache=tuple(c.to(device) if isinstance(c, Tensor) else c for c in self.cache),
            pending=None if self.pending is None else self.pending.to(device),
        )

    @property
    def nbytes(self) -> int:
        held = list(self.cache) + [self.pending]
        return sum(c.numel() * c.element_size() for c in held if isinstance(c, Tensor))


def count_causal_convs(module: torch.nn.Module) -> int:
    """Cache slots a Wan decoder needs: one per causal 3D convolution (by class name; no host import)."""
    return sum(type(m).__name__ == "CausalConv3d" for m in module.modules())


def to_frames(out: Tensor) -> Tensor:
    """The decoder's output [B, 3, T, H, W] in [-1, 1] -> frames [B, T, H, W, 3] float32 in [0, 1]."""
    return torch.clamp((out.float() + 1.0) / 2.0, 0.0, 1.0).movedim(1, -1)


class CausalWanDecoder:
    """The Wan 2.1 VAE decoder run chunk by chunk. ``vae`` is a module with the Wan 2.1 VAE layout: ``conv2``
    (the 1x1x1 latent projection) and ``decoder(x, feat_cache=list, feat_idx=[0])`` (the causal decoder, returning
    a tensor or, on newer hosts, a list of pieces), e.g. the host's ``comfy.ldm.wan.vae.WanVAE``. Latents go in raw
    VAE space (the host's LATENT format). ``pairs``: after the first frame, decode aligned pairs of latent frames
    per call (what newer hosts' decode does; see the module docstring); ``slots``: the cache's length as the host
    counts it. ``for_host`` reads both from the host's module."""

    temporal = WAN_TEMPORAL
    spatial = 8

    def __init__(
        self,
        vae: torch.nn.Module,
        *,
        device=None,
        dtype=None,
        slots: int | None = None,
        pairs: bool = False,
        source=None,
    ):
        self.vae = vae
        p = next(vae.parameters())
        self.device = torch.device(device) if device is not None else p.device
        self.dtype = dtype or p.dtype
        self.slots = slots if slots is not None else count_causal_convs(vae.decoder)
        self.pairs = pairs
        self.source = source

    @classmethod
    def for_host(cls, wan_vae_module, vae: torch.nn.Module, **kwargs) -> "CausalWanDecoder":
        """The decoder grouping frames as the host whose ``comfy.ldm.wan.vae`` module is ``wan_vae_module`` does:
        hosts with ``count_cache_layers`` decode pairs and count their cache slots with it; older ones decode one
        frame per call and count with ``count_conv3d``. (The module is passed in: dsa_core never imports comfy.)"""
        pairs = hasattr(wan_vae_module, "count_cache_layers")
        count = wan_vae_module.count_cache_layers if pairs else wan_vae_module.count_conv3d
        return cls(vae, slots=count(vae.decoder), pairs=pairs, **kwargs)

    def start(self) -> DecodeState:
        return DecodeState(source=self.source)

    def video_frames(self, latent_frames: int, state: DecodeState) -> int:
        return wan_video_frames(latent_frames, state.latent_frames == 0)

    def _call(self, x: Tensor, feat: list) -> list[Tensor]:
        o = self.vae.decoder(x, feat_cache=feat, feat_idx=[0])
        return o if isinstance(o, list) else [o]

    def _empty(self, x: Tensor) -> Tensor:
        return x.new_zeros(x.shape[0], 3, 0, self.spatial * x.shape[3], self.spatial * x.shape[4])

    @torch.no_grad()
    def decode_raw(self, state: DecodeState, latent: Tensor) -> tuple[Tensor, DecodeState]:
        """latent [B, 16, T, h, w] (raw VAE space) -> (the decoder's output [B, 3, T', 8h, 8w] in [-1, 1], the new
        state). On a pairing host T' may include a frame held back by the previous chunk, and this chunk's last
        frame may be held back (T' = 0 when it is the only one)."""
        if latent.ndim != 5:
            raise ValueError(f"expected a video latent [B, C, T, H, W], got shape {tuple(latent.shape)}")
        if state.flushed:
            raise ValueError(
                "this decode state was flushed at the end of its video and cannot be continued: "
                "continue the state from before the flush"
            )
        feat = list(state.cache) if state.cache else [None] * self.slots
        x = self.vae.conv2(latent.to(device=self.device, dtype=self.dtype))
        if state.pending is not None:
            x = torch.cat([state.pending.to(x), x], 2)
        first = state.latent_frames == 0
        outs, i = [], 0
        if first and x.shape[2]:
            outs += self._call(x[:, :, :1], feat)
            i = 1
        step = 2 if self.pairs else 1
        while i + step <= x.shape[2]:
            outs += self._call(x[:, :, i : i + step], feat)
            i += step
        pending = x[:, :, i:].clone() if i < x.shape[2] else None
        out = torch.cat(outs, 2) if outs else self._empty(x)
        del outs
        expect = wan_video_frames(i, first)
        if out.shape[2] != expect:
            raise ValueError(
                f"the decoder gave {out.shape[2]} frames for {i} latent frames, expected {expect}: "
                "not a causal Wan 2.1 VAE decoder"
            )
        return out, DecodeState(
            tuple(feat), state.latent_frames + latent.shape[2], state.video_frames + out.shape[2], self.source, pending
        )

    @torch.no_grad()
    def flush_raw(self, state: DecodeState) -> tuple[Tensor | None, DecodeState]:
        """The end of a video: the held-back frame decoded alone (as the host decodes a trailing odd frame) and the
        flushed state, or (None, ``state``) when nothing is held back."""
        if state.pending is None:
            return None, state
        feat = list(state.cache)
        out = torch.cat(self._call(state.pending.to(device=self.device, dtype=self.dtype), feat), 2)
        return out, DecodeState(
            tuple(feat), state.latent_frames, state.video_frames + out.shape[2], self.source, None, flushed=True
        )

    def decode(self, state: DecodeState, latent: Tensor) -> tuple[Tensor, DecodeState]:
        """latent [B, 16, T, h, w] (raw VAE space) -> (frames [B, T', 8h, 8w, 3] in [0, 1], the new state)."""
        out, state = self.decode_raw(state, latent)
        return to_frames(out), state

    def flush(self, state: DecodeState) -> tuple[Tensor | None, DecodeState]:
        """The end of a video: (frames of the held-back latent frame or None, the flushed state). Keep the state
        from before the flush for a continuation."""
        out, state = self.flush_raw(state)
        return (None if out is None else to_frames(out)), state


class FrameWiseDecoder:
    """A codec without temporal state (e.g. the toy world's linear codec): one latent frame -> one frame.
    ``fn`` maps latent [B, C, T, h, w] to frames [B, T, H, W, 3] in [0, 1]."""

    temporal = 1

    def __init__(self, fn: Callable[[Tensor], Tensor], source=None, device="cpu"):
        self.fn, self.source, self.device = fn, source, torch.device(device)

    def start(self) -> DecodeState:
        return DecodeState(source=self.source)

    def video_frames(self, latent_frames: int, state: DecodeState) -> int:
        return latent_frames

    @torch.no_grad()
    def decode(self, state: DecodeState, latent: Tensor) -> tuple[Tensor, DecodeState]:
        frames = self.fn(latent).float()
        return frames, replace(
            state,
            latent_frames=state.latent_frames + latent.shape[2],
            video_frames=state.video_frames + frames.shape[1],
        )

    def flush(self, state: DecodeState) -> tuple[None, DecodeState]:
        return None, state  # nothing is ever held back


class FrameBuffer:
    """The video's frames [B, T, H, W, 3], filled chunk by chunk into one allocation made when the first chunk
    arrives (no growing concatenation: a whole-video copy would double the output's memory at the end)."""

    def __init__(self, total_frames: int, device=None, dtype=torch.float32):
        self.total, self.device, self.dtype = total_frames, device, dtype
        self.data: Tensor | None = None
        self.count = 0

    def append(self, frames: Tensor) -> None:
        n = frames.shape[1]
        if self.data is None:
            b, _, h, w, c = frames.shape
            self.data = torch.empty(
                b, max(self.total, n), h, w, c, device=self.device or frames.device, dtype=self.dtype
            )
        if self.count + n > self.data.shape[1]:  # more than announced (a live run): grow geometrically
            size = max(self.count + n, 2 * self.data.shape[1])
            grown = torch.empty(
                self.data.shape[0], size, *self.data.shape[2:], device=self.data.device, dtype=self.dtype
            )
            grown[:, : self.count] = self.data[:, : self.count]
            self.data = grown
        self.data[:, self.count : self.count + n] = frames
        self.count += n

    @property
    def frames(self) -> Tensor | None:
        return None if self.data is None else self.data[:, : self.count]


def decode_chunks(
    decoder, latent: Tensor, chunk_frames: int, state: DecodeState | None = None
) -> tuple[Tensor, DecodeState]:
    """Decode ``latent`` chunk by chunk (as a streaming run does), flushing at the end; returns (all frames, the
    state before the flush: the one a continuation starts from)."""
    state = state or decoder.start()
    out = []
    for s in range(0, latent.shape[2], chunk_frames):
        frames, state = decoder.decode(state, latent[:, :, s : s + chunk_frames])
        out.append(frames)
    tail, _ = decoder.flush(state)
    if tail is not None:
        out.append(tail)
    return torch.cat(out, 1), state


def memblock_video_frames(latent_frames: int, first: bool, temporal: int, trim: int) -> int:
    """Frames a TAEHV-family decoder gives for ``latent_frames`` latent frames: ``temporal`` per latent frame, the
    first ``trim`` of the video dropped (taew2_1 / lighttaew2_1: 4 and 3, the Wan VAE's 1 + 4 * (T - 1))."""
    if latent_frames <= 0:
        return 0
    return temporal * latent_frames - (trim if first else 0)


class CausalMemBlockDecoder:
    """A TAEHV-family tiny video decoder (madebyollin's taehv / taew2_1, LightX2V's lighttaew2_1) run chunk by
    chunk. Such a decoder is a sequence of per-frame 2-D blocks; its ``MemBlock``s also see their own input of the
    previous frame (their temporal memory) and its ``TGrow``s turn one frame into ``stride`` frames. Walking every
    latent frame through the blocks depth first (each grown frame to the end before its successor), with one memory
    tensor per MemBlock carried in the ``DecodeState``, gives the frames of the decoder's own sequential
    whole-video pass; the first ``frames_to_trim`` frames of a video are dropped as it drops them (so 4 * T - 3
    frames: the Wan VAE's count and alignment). Nothing is ever held back (``flush`` has nothing to do).

    ``model``: the host's TAEHV module (``decoder``, ``frames_to_trim``, ``patch_size``), blocks recognised by class
    name (dsa_core imports no host); ``process_in``: the model's latent scaling, applied to the raw VAE latent as
    its ``decode`` applies it; ``to_frames``: decoder output [B, 3, T, H, W] -> frames [B, T, H, W, 3] (default:
    as the host gives a TAEHV's frames, float, unclamped)."""

    spatial = 8
    pairs = False  # one latent frame at a time, always

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        device=None,
        dtype=None,
        process_in: Callable[[Tensor], Tensor] | None = None,
        to_frames: Callable[[Tensor], Tensor] | None = None,
        source=None,
    ):
        self.model, self.blocks = model, list(model.decoder)
        self.kinds = [type(b).__name__ for b in self.blocks]
        if "MemBlock" not in self.kinds:
            raise ValueError("not a TAEHV-family decoder: no MemBlock in its decoder")
        p = next(model.parameters())
        self.device = torch.device(device) if device is not None else p.device
        self.dtype = dtype or p.dtype
        self.process_in = process_in or (lambda x: x)
        self.to_frames = to_frames or (lambda out: out.float().movedim(1, -1))
        self.patch = int(getattr(model, "patch_size", 1))
        self.trim = int(model.frames_to_trim)
        self.temporal = 1
        for b, kind in zip(self.blocks, self.kinds):
            if kind == "TGrow":
                self.temporal *= int(b.stride)
        self.source = source

    def start(self) -> DecodeState:
        return DecodeState(cache=(None,) * len(self.blocks), source=self.source)

    def video_frames(self, latent_frames: int, state: DecodeState) -> int:
        return memblock_video_frames(latent_frames, state.latent_frames == 0, self.temporal, self.trim)

    def _frame(self, x: Tensor, mem: list) -> list[Tensor]:
        """One latent frame [B, C, h, w] through every block; ``mem`` updated (entries replaced, never written)."""
        out, todo, batch = [], [(x, 0)], x.shape[0]
        while todo:
            x, i = todo.pop()
            if i == len(self.blocks):
                out.append(F.pixel_shuffle(x, self.patch) if self.patch > 1 else x)
                continue
            block, kind = self.blocks[i], self.kinds[i]
            if kind == "MemBlock":
                past = mem[i] if mem[i] is not None else torch.zeros_like(x)
                y = block(x, past)
                mem[i] = x.detach().clone()
                todo.append((y, i + 1))
            elif kind == "TGrow":
                y = block(x)
                grown = y.view(batch, block.stride * y.shape[1], *y.shape[2:]).chunk(block.stride, 1)
                todo.extend((g, i + 1) for g in reversed(grown))  # the first grown frame goes on first
            else:
                todo.append((block(x), i + 1))
        return out

    @torch.no_grad()
    def decode_raw(self, state: DecodeState, latent: Tensor) -> tuple[Tensor, DecodeState]:
        """latent [B, C, T, h, w] (raw VAE space) -> (decoder output [B, 3, T', H, W], the new state)."""
        if latent.ndim != 5:
            raise ValueError(f"expected a video latent [B, C, T, H, W], got shape {tuple(latent.shape)}")
        mem = list(state.cache) if state.cache else [None] * len(self.blocks)
        x = self.process_in(latent.to(device=self.device, dtype=self.dtype))
        frames = []
        for t in range(x.shape[2]):
            frames += self._frame(x[:, :, t], mem)
        out = (
            torch.stack(frames, 2)
            if frames
            else x.new_zeros(x.shape[0], 3, 0, *(self.spatial * s for s in x.shape[3:]))
        )
        if state.latent_frames == 0:
            out = out[:, :, self.trim :]
        return out, DecodeState(
            tuple(mem), state.latent_frames + latent.shape[2], state.video_frames + out.shape[2], self.source
        )

    def decode(self, state: DecodeState, latent: Tensor) -> tuple[Tensor, DecodeState]:
        """latent [B, C, T, h, w] (raw VAE space) -> (frames [B, T', H, W, 3], the new state)."""
        out, state = self.decode_raw(state, latent)
        return self.to_frames(out), state

    def flush_raw(self, state: DecodeState) -> tuple[None, DecodeState]:
        return None, state  # frame by frame: nothing is ever held back

    def flush(self, state: DecodeState) -> tuple[None, DecodeState]:
        return None, state
