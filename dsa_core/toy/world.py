"""The toy world: synthetic videos made by code, a fixed linear "codec" into a 16-channel latent space,
and prompt embeddings built from the scene attributes (toy-scale reproduction, not the paper's data).

Everything here is deterministic code; no video data is downloaded or stored.

Scenes. One shape (square or disc, side/diameter 3 latent pixels) of one of 7 colours on a black or
grey background, in an 8 x 8 latent-pixel frame, 9 latent frames (3 chunks of 3). Motions:

  still                     the shape sits at a random position (hard only in the first chunk)
  drifting <dir>            0.25 px/frame in a stated direction (easy to continue)
  moving <dir> fast         0.75 px/frame, reflecting off the walls
  bouncing                  (+-0.75, +-0.5) px/frame, random signs, reflecting off the walls
  appearing                 background only until a random frame in 1..8, then a still shape at a random
                            position: the chunk where it appears is genuinely uncertain

So the difficulty of a chunk varies within a video and across prompts, which is what step allocation
exploits. The start position (and the appearing frame, and the bouncing signs) are not in the prompt:
a prompt describes a distribution of videos. Positions and velocities are multiples of 0.25 px and the
walls lie on that grid, so every trajectory stays on a 0.25 px grid; ``fit_error`` uses that to find
the nearest video a prompt allows exactly (real data has fit error 0).

Rendering: 4x4 supersampled coverage per latent pixel (anti-aliased, so sub-pixel motion is visible).

Codec (the toy stand-in for the Wan VAE). latent = SCALE * E @ (2 rgb - 1) per latent pixel, with E a
fixed 16 x 3 matrix with orthonormal columns (QR of a seeded Gaussian, seed CODEC_SEED). Decoding is the
least-squares inverse rgb = (E^T latent / SCALE + 1) / 2, clipped to [0, 1], then nearest-neighbour
upsampling by PIXEL_SCALE (8) for viewing: 8 x 8 latent pixels -> 64 x 64 pixels. One latent frame is
one video frame (no temporal compression, unlike Wan's VAE).

Prompts. A fixed random vector (seeded from the word) for each attribute word, one token per slot
[colour, shape, motion, direction, background], zero-padded to PROMPT_TOKENS = 8 tokens of 4096 channels
(Wan's UMT5 width; Wan also zero-pads its context). The all-zero context is the "empty prompt" used for
classifier-free-guidance dropout.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor

LATENT_CHANNELS = 16
LATENT_H = LATENT_W = 8
NUM_FRAMES = 9
CHUNK_FRAMES = 3
PIXEL_SCALE = 8
CODEC_SEED = 20260604
SCALE = 4.0            # latent = SCALE * E (2 rgb - 1): per-channel mean square 0.1-2.4, near normalised Wan latents
TEXT_DIM = 4096
PROMPT_TOKENS = 8
SUPERSAMPLE = 4
GRID = 0.25            # positions and velocities are multiples of this (latent pixels)
HALF = 1.5             # half side / radius of a shape
LO, HI = HALF, LATENT_W - HALF  # centre range (on the grid)

COLOURS = {
    "red": (0.9, 0.15, 0.15), "green": (0.15, 0.8, 0.2), "blue": (0.2, 0.35, 0.95), "yellow": (0.95, 0.85, 0.1),
    "cyan": (0.1, 0.85, 0.9), "magenta": (0.9, 0.2, 0.85), "white": (0.95, 0.95, 0.95),
}
BACKGROUNDS = {"black": (0.05, 0.05, 0.05), "grey": (0.45, 0.45, 0.45)}
SHAPES = ("square", "disc")
DIRECTIONS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}
MOTIONS = (["still"] + [f"drifting {d}" for d in DIRECTIONS] + [f"moving {d} fast" for d in DIRECTIONS]
           + ["bouncing", "appearing"])
DRIFT_SPEED, FAST_SPEED, BOUNCE_VEL = 0.25, 0.75, (0.75, 0.5)


# ---- scenes --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scene:
    shape: str
    colour: str
    motion: str
    background: str

    @property
    def prompt(self) -> str:
        m = self.motion
        if m == "still":
            desc = "sitting still"
        elif m == "appearing":
            desc = "appearing"
        else:
            desc = m
        return f"a {self.colour} {self.shape} {desc} on {self.background}"

    def to_dict(self) -> dict:
        return asdict(self)


def all_scenes() -> list[Scene]:
    return [Scene(s, c, m, b) for s in SHAPES for c in COLOURS for m in MOTIONS for b in BACKGROUNDS]


def random_scene(g: torch.Generator) -> Scene:
    def pick(seq):
        seq = list(seq)
        return seq[int(torch.randint(len(seq), (1,), generator=g))]
    return Scene(pick(SHAPES), pick(COLOURS), pick(MOTIONS), pick(BACKGROUNDS))


def _velocity(motion: str, signs=(1, 1)) -> tuple[float, float]:
    if motion in ("still", "appearing"):
        return 0.0, 0.0
    if motion == "bouncing":
        return BOUNCE_VEL[0] * signs[0], BOUNCE_VEL[1] * signs[1]
    parts = motion.split()
    d = DIRECTIONS[parts[1]]
    speed = FAST_SPEED if motion.endswith("fast") else DRIFT_SPEED
    return d[0] * speed, d[1] * speed


def _reflect(p: np.ndarray) -> np.ndarray:
    """Positions bouncing between LO and HI (triangle wave)."""
    span = HI - LO
    q = np.mod(p - LO, 2 * span)
    return LO + np.where(q > span, 2 * span - q, q)


def trajectory(motion: str, start: tuple[float, float], frames: int = NUM_FRAMES, signs=(1, 1),
               appear: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(centres [frames, 2] (x, y), visible [frames] bool) for a motion from a start centre."""
    vx, vy = _velocity(motion, signs)
    f = np.arange(frames, dtype=np.float64)
    xs = _reflect(start[0] + vx * f)
    ys = _reflect(start[1] + vy * f)
    visible = f >= appear if motion == "appearing" else np.ones(frames, dtype=bool)
    return np.stack([xs, ys], 1), visible


# ---- rendering -----------------------------------------------------------------------------------
_SUB = (np.arange(LATENT_W * SUPERSAMPLE) + 0.5) / SUPERSAMPLE  # sub-pixel centres


def coverage(shape: str, cx: float, cy: float) -> np.ndarray:
    """Anti-aliased coverage [H, W] in [0, 1] of a shape centred at (cx, cy) (latent pixel units)."""
    xx, yy = np.meshgrid(_SUB, _SUB[: LATENT_H * SUPERSAMPLE])
    if shape == "square":
        m = (np.abs(xx - cx) <= HALF) & (np.abs(yy - cy) <= HALF)
    elif shape == "disc":
        m = (xx - cx) ** 2 + (yy - cy) ** 2 <= HALF ** 2
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return m.reshape(LATENT_H, SUPERSAMPLE, LATENT_W, SUPERSAMPLE).mean(axis=(1, 3))


def render(scene: Scene, centres: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """RGB video [T, H, W, 3] in [0, 1]."""
    bg = np.array(BACKGROUNDS[scene.background])
    fg = np.array(COLOURS[scene.colour])
    out = np.empty((len(centres), LATENT_H, LATENT_W, 3))
    for i, ((cx, cy), vis) in enumerate(zip(centres, visible)):
        a = coverage(scene.shape, cx, cy)[..., None] if vis else np.zeros((LATENT_H, LATENT_W, 1))
        out[i] = bg * (1 - a) + fg * a
    return out


def _grid_values(lo: float, hi: float) -> np.ndarray:
    return np.arange(round(lo / GRID), round(hi / GRID) + 1) * GRID


def sample_video(scene: Scene, g: torch.Generator, frames: int = NUM_FRAMES) -> np.ndarray:
    """One random clean RGB video [T, H, W, 3] of a scene (start position, signs, appear frame random)."""
    grid = _grid_values(LO, HI)
    ix = torch.randint(len(grid), (2,), generator=g)
    start = (float(grid[ix[0]]), float(grid[ix[1]]))
    signs = tuple(int(v) * 2 - 1 for v in torch.randint(2, (2,), generator=g))
    appear = int(torch.randint(1, frames, (1,), generator=g))
    centres, visible = trajectory(scene.motion, start, frames, signs, appear)
    return render(scene, centres, visible)


# ---- codec ---------------------------------------------------------------------------------------
def codec_matrix() -> Tensor:
    """E [16, 3], orthonormal columns, fixed by CODEC_SEED."""
    g = torch.Generator().manual_seed(CODEC_SEED)
    q, _ = torch.linalg.qr(torch.randn(LATENT_CHANNELS, 3, generator=g, dtype=torch.float64))
    return q.float()


_E = codec_matrix()


def encode_rgb(rgb) -> Tensor:
    """RGB [B, T, H, W, 3] (or [T, H, W, 3]) in [0, 1] -> latent [B, 16, T, H, W] float32."""
    x = torch.as_tensor(np.asarray(rgb), dtype=torch.float32)
    if x.dim() == 4:
        x = x[None]
    lat = SCALE * torch.einsum("cj,bthwj->bcthw", _E, 2.0 * x - 1.0)
    return lat.contiguous()


def latent_to_rgb_small(latent: Tensor) -> Tensor:
    """latent [B, 16, T, H, W] -> RGB [B, T, H, W, 3] in [0, 1] at latent resolution (no upsampling)."""
    lat = latent.float().cpu()
    rgb = torch.einsum("cj,bcthw->bthwj", _E, lat) / SCALE
    return ((rgb + 1.0) / 2.0).clamp(0.0, 1.0)


def decode_to_rgb(latent: Tensor, scale: int = PIXEL_SCALE) -> Tensor:
    """Toy decoder: latent [B, 16, T, H, W] -> RGB [B, T, H*scale, W*scale, 3] float32 in [0, 1]
    (least-squares inverse of the codec, then nearest-neighbour upsampling)."""
    rgb = latent_to_rgb_small(latent)
    if scale > 1:
        rgb = rgb.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    return rgb


# ---- prompts -------------------------------------------------------------------------------------
def _word_vector(word: str) -> Tensor:
    seed = int.from_bytes(hashlib.sha256(f"dsa-toy-word:{word}".encode()).digest()[:8], "little") & ((1 << 63) - 1)
    return torch.randn(TEXT_DIM, generator=torch.Generator().manual_seed(seed))


def prompt_tokens(scene: Scene) -> list[str]:
    parts = scene.motion.split()
    motion = {"still": "still", "drifting": "drifting", "moving": "moving-fast", "bouncing": "bouncing",
              "appearing": "appearing"}[parts[0]]
    direction = parts[1] if len(parts) > 1 else None
    toks = [scene.colour, scene.shape, motion]
    if direction:
        toks.append(direction)
    toks.append("bg-" + scene.background)
    return toks


def prompt_embedding(scene: Scene) -> Tensor:
    """[PROMPT_TOKENS, 4096] context for a scene (deterministic)."""
    ctx = torch.zeros(PROMPT_TOKENS, TEXT_DIM)
    for i, w in enumerate(prompt_tokens(scene)):
        ctx[i] = _word_vector(w)
    return ctx


def empty_prompt() -> Tensor:
    return torch.zeros(PROMPT_TOKENS, TEXT_DIM)


def scene_from_prompt(text: str) -> Scene:
    """Inverse of Scene.prompt for the prompts this world writes."""
    for s in all_scenes():
        if s.prompt == text.strip():
            return s
    raise ValueError(f"{text!r} is not a toy-world prompt (e.g. {all_scenes()[0].prompt!r})")


# ---- batches -------------------------------------------------------------------------------------
def make_batch(batch: int, g: torch.Generator, frames: int = NUM_FRAMES, scenes=None):
    """(latents [B, 16, T, H, W], contexts [B, 8, 4096], scenes) of random scenes."""
    scenes = scenes or [random_scene(g) for _ in range(batch)]
    vids = np.stack([sample_video(s, g, frames) for s in scenes])
    ctx = torch.stack([prompt_embedding(s) for s in scenes])
    return encode_rgb(vids), ctx, scenes


# ---- the reproduction's quality metric ----------------------------------------------------------
class SceneFitter:
    """Distance from a generated video to the nearest clean video its prompt allows.

    Every video a scene allows is enumerated exactly (start centre on the 0.25 px grid, bouncing signs,
    appearing frame), rendered once, and the generated video's RGB (decoded at latent resolution) is
    compared with all of them: ``fit_error`` = min over allowed videos of the mean squared RGB error
    (in [0, 1] units). Real videos score exactly 0. It measures fidelity (sharp, right shape and colour,
    clean background) and motion consistency (the whole trajectory must match one allowed trajectory)
    together; it does not measure diversity.
    """

    def __init__(self, frames: int = NUM_FRAMES):
        self.frames = frames
        self._cache: dict = {}

    def candidates(self, scene: Scene) -> Tensor:
        key = scene
        if key not in self._cache:
            grid = _grid_values(LO, HI)
            # per-position single frames, rendered once
            pos = [(x, y) for y in grid for x in grid]
            index = {p: i for i, p in enumerate(pos)}
            bg = np.array(BACKGROUNDS[scene.background])
            fg = np.array(COLOURS[scene.colour])
            frames_at = np.stack([bg * (1 - coverage(scene.shape, x, y)[..., None])
                                  + fg * coverage(scene.shape, x, y)[..., None] for x, y in pos])
            empty = np.broadcast_to(bg, (LATENT_H, LATENT_W, 3))
            sign_sets = [(a, b) for a in (1, -1) for b in (1, -1)] if scene.motion == "bouncing" else [(1, 1)]
            appears = range(1, self.frames) if scene.motion == "appearing" else [0]
            vids = []
            for signs in sign_sets:
                for ap in appears:
                    for p in pos:
                        centres, visible = trajectory(scene.motion, p, self.frames, signs, ap)
                        idx = [index[(float(round(cx / GRID) * GRID), float(round(cy / GRID) * GRID))]
                               for cx, cy in centres]
                        vids.append(np.stack([frames_at[i] if v else empty for i, v in zip(idx, visible)]))
            self._cache[key] = torch.as_tensor(np.stack(vids), dtype=torch.float32)  # [N, T, H, W, 3]
        return self._cache[key]

    def fit_error(self, scene: Scene, latent: Tensor) -> float:
        """latent [16, T, H, W] (one video) -> min MSE in RGB against every allowed video."""
        rgb = latent_to_rgb_small(latent[None])[0]  # [T, H, W, 3]
        cand = self.candidates(scene)
        err = (cand - rgb[None]).pow(2).flatten(1).mean(1)
        return float(err.min())

    def energy_distance(self, scene: Scene, latents: Tensor) -> float:
        """Energy distance between n >= 2 generated videos of one prompt and the prompt's real videos.

        ED = 2 E d(X, Y) - E d(X, X') - E d(Y, Y'), d = RMS RGB difference over the whole video, X the
        generated videos (latents [n, 16, T, H, W]), Y every allowed clean video (uniform, as the world
        samples them). 0 iff the two distributions are equal (in the limit). Unlike ``fit_error`` it does
        not reward blur: a blurred hedge sits close to every real video but has no spread (E d(X, X')
        ~ 0), so it scores far from 0, as do mode collapse and off-prompt videos. E d(X, X') uses
        i != j pairs only (unbiased).
        """
        if latents.shape[0] < 2:
            raise ValueError("energy_distance needs at least 2 videos per prompt")
        x = latent_to_rgb_small(latents).flatten(1)
        y = self.candidates(scene).flatten(1)
        dim = x.shape[1]
        dxy = torch.cdist(x[None].double(), y[None].double())[0].mean() / dim ** 0.5
        n = x.shape[0]
        dxx = torch.cdist(x[None].double(), x[None].double())[0].sum() / (n * (n - 1)) / dim ** 0.5
        return float(2 * dxy - dxx - self.spread(scene))

    def spread(self, scene: Scene) -> float:
        """E d(Y, Y') over the prompt's allowed videos (cached)."""
        key = ("spread", scene)
        if key not in self._cache:
            y = self.candidates(scene).flatten(1).double()
            tot = 0.0
            for i in range(0, y.shape[0], 512):
                tot += float(torch.cdist(y[i:i + 512][None], y[None])[0].sum())
            n = y.shape[0]
            self._cache[key] = tot / (n * (n - 1)) / y.shape[1] ** 0.5 if n > 1 else 0.0
        return self._cache[key]

    def frame_errors(self, scene: Scene, latent: Tensor) -> Tensor:
        """Per-frame MSE [T] against the best-fitting allowed video (for per-chunk breakdowns)."""
        rgb = latent_to_rgb_small(latent[None])[0]
        cand = self.candidates(scene)
        err = (cand - rgb[None]).pow(2).flatten(1).mean(1)
        best = cand[int(err.argmin())]
        return (best - rgb).pow(2).flatten(1).mean(1)


def psnr(mse: float) -> float:
    return 10.0 * math.log10(1.0 / max(mse, 1e-10))
