"""Streaming decode: video frames from each committed chunk as soon as it exists, never a whole-video pass.

The Wan 2.1 VAE is causal in time. Its decoder walks the latent one frame at a time and keeps, for every causal
3D convolution, the last two frames of that convolution's input (a "feature cache"); decoding latent frame i needs
only frame i and that cache. So decoding chunk after chunk with the cache carried over gives the same frames as
decoding the whole latent at once, while holding one latent frame's activations plus the cache, never the whole
video. Its first-frame rule: the first latent frame of a video decodes to 1 frame (the temporal upsamplers repeat
nothing yet), every later one to 4 (81 frames = 21 latent frames = 1 + 4 * 20).

A ``DecodeState`` is immutable: ``decode`` returns a new state and never writes into the one it was given (the
decoder replaces cache entries, it never writes into cached tensors), so a state held by a cached node output can
be continued by any number of branches.

Decoders return frames as [B, T, H, W, 3] float32 in [0, 1] on the decoder's device.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch
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

    cache: tuple = ()  # per causal conv: a tensor, a marker string, or None; never written in place
    latent_frames: int = 0  # latent frames decoded so far
    video_frames: int = 0  # frames they gave
    source: object = None  # identifies the decoder (and weights) that made the cache

    def to(self, device) -> "DecodeState":
        """The same state with its cached tensors on ``device`` (a copy; this one is untouched)."""
        return replace(self, cache=tuple(c.to(device) if isinstance(c, Tensor) else c for c in self.cache))

    @property
    def nbytes(self) -> int:
        return sum(c.numel() * c.element_size() for c in self.cache if isinstance(c, Tensor))


def count_causal_convs(module: torch.nn.Module) -> int:
    """Cache slots a Wan decoder needs: one per causal 3D convolution (by class name; no host import)."""
    return sum(type(m).__name__ == "CausalConv3d" for m in module.modules())


class CausalWanDecoder:
    """The Wan 2.1 VAE decoder run chunk by chunk. ``vae`` is a module with the Wan 2.1 VAE layout: ``conv2``
    (the 1x1x1 latent projection) and ``decoder(x, feat_cache=list, feat_idx=[0])`` (the causal decoder), e.g. the
    host's ``comfy.ldm.wan.vae.WanVAE``. Latents go in raw VAE space (the host's LATENT format)."""

    temporal = WAN_TEMPORAL

    def __init__(self, vae: torch.nn.Module, *, device=None, dtype=None, slots: int | None = None, source=None):
        self.vae = vae
        p = next(vae.parameters())
        self.device = torch.device(device) if device is not None else p.device
        self.dtype = dtype or p.dtype
        self.slots = slots if slots is not None else count_causal_convs(vae.decoder)
        self.source = source

    def start(self) -> DecodeState:
        return DecodeState(source=self.source)

    def video_frames(self, latent_frames: int, state: DecodeState) -> int:
        return wan_video_frames(latent_frames, state.latent_frames == 0)

    @torch.no_grad()
    def decode(self, state: DecodeState, latent: Tensor) -> tuple[Tensor, DecodeState]:
        """latent [B, 16, T, h, w] (raw VAE space) -> (frames [B, T', 8h, 8w, 3] in [0, 1], the new state)."""
        if latent.ndim != 5:
            raise ValueError(f"expected a video latent [B, C, T, H, W], got shape {tuple(latent.shape)}")
        feat = list(state.cache) if state.cache else [None] * self.slots
        x = self.vae.conv2(latent.to(device=self.device, dtype=self.dtype))
        outs = []
        for i in range(x.shape[2]):
            o = self.vae.decoder(x[:, :, i : i + 1], feat_cache=feat, feat_idx=[0])
            outs.extend(o if isinstance(o, list) else [o])  # newer hosts' decoders return a list of pieces
        out = torch.cat(outs, 2)
        del outs, x
        expect = self.video_frames(latent.shape[2], state)
        if out.shape[2] != expect:
            raise ValueError(
                f"the decoder gave {out.shape[2]} frames for {latent.shape[2]} latent frames, expected "
                f"{expect}: not a causal Wan 2.1 VAE decoder"
            )
        frames = torch.clamp((out.float() + 1.0) / 2.0, 0.0, 1.0).movedim(1, -1)
        return frames, DecodeState(
            tuple(feat), state.latent_frames + latent.shape[2], state.video_frames + frames.shape[1], self.source
        )


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
        if self.count + n > self.data.shape[1]:  # more than announced: grow (never happens in a planned run)
            grown = torch.empty(
                self.data.shape[0], self.count + n, *self.data.shape[2:], device=self.data.device, dtype=self.dtype
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
    """Decode ``latent`` chunk by chunk (as a streaming run does); returns (all frames, the final state)."""
    state = state or decoder.start()
    out = []
    for s in range(0, latent.shape[2], chunk_frames):
        frames, state = decoder.decode(state, latent[:, :, s : s + chunk_frames])
        out.append(frames)
    return torch.cat(out, 1), state
