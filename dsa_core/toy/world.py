"""The toy world (v3, "wall teleport"): synthetic videos made by code in which a chunk's difficulty is
visible in its context, a fixed linear "codec" into a 16-channel latent space, and prompt embeddings built
from the scene attributes (toy-scale reproduction, not the paper's data). Everything is deterministic
code; no video data is downloaded or stored.

Scenes. One shape (square or disc, side/diameter 3 latent pixels) of one of 7 colours on a black or grey
background, in an 8 x 8 latent-pixel frame, 12 latent frames = 4 chunks of 3. Motions: ``still`` or
``drifting <dir>`` (0.25 px/frame in the stated direction). Positions live on a 0.25 px grid (21 x 21
centres), so every frame is one of 7 x 441 renders per shape and background.

Chunks. The first chunk starts at one of the 36 *whole-pixel* positions (grid indices 0, 4, .., 20 on
each axis), uniformly (not in the prompt): 36 allowed chunks. A drifting shape stops at the wall it moves
towards; if the last frame before a chunk shows it AT that wall, an *event is due*: at that chunk's first
frame it teleports to one of the whole-pixel positions at least TELEPORT_MIN px (Chebyshev) away from the
wall position (uniformly, 30 of the 36 for a wall position off the corners) and keeps its motion. There
are no other events; still shapes never teleport; the colour never changes. Every other later chunk is a
*continuation*: exactly one allowed chunk, fixed by the last frame before it (what the KV cache holds).

So a chunk's kind (first / event due / continuation) is read from its CONTEXT (``context_kind``), not
from the generated chunk, and the event timing is not random: it is where the shape is. The start
position spreads the wall arrivals so that the share of chunks with an event due is nearly flat over
chunk positions (``event_due_share``: 0.133 / 0.148 / 0.164 for chunks 2-4, exact), so a per-position step
schedule cannot exploit timing. ``continuations`` enumerates every allowed next chunk with its exact
probability; ``sample_video`` draws from exactly that enumeration, so the metrics are exact.

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

Quality (``SceneFitter``). The primary number is *validity*: a chunk is valid when it is sharp (every
frame within VALID_TOL RGB MSE of a clean render) and consistent (the fitted per-frame states form an
allowed continuation of the fitted prefix); a video is valid when all its chunks are. ``conditional``
(MSE to the nearest allowed continuation) is kept as a secondary number; it is blur-tolerant (a blur over
all start positions can score better than a sharp render one pixel off).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

LATENT_CHANNELS = 16
LATENT_H = LATENT_W = 8
CHUNK_FRAMES = 3
NUM_CHUNKS = 4
NUM_FRAMES = CHUNK_FRAMES * NUM_CHUNKS
PIXEL_SCALE = 8
CODEC_SEED = 20260604
SCALE = 4.0  # latent = SCALE * E (2 rgb - 1): per-channel mean square 0.1-2.4, near normalised Wan latents
TEXT_DIM = 4096
PROMPT_TOKENS = 8
SUPERSAMPLE = 4
GRID = 0.25  # centres are multiples of this (latent pixels)
HALF = 1.5  # half side / radius of a shape
LO, HI = HALF, LATENT_W - HALF  # centre range
NPOS = int(round((HI - LO) / GRID)) + 1  # 21 grid values per axis
WHOLE = tuple(range(0, NPOS, int(round(1 / GRID))))  # grid indices of whole-pixel centres (6 per axis)
TELEPORT_MIN = 2.0  # a teleport lands at least this far (px, Chebyshev) from the wall position
EVENT_KINDS = {"teleport": 1.0}  # the only event
VALID_TOL = 1e-3  # RGB MSE (RMS ~0.03) of a frame to its nearest clean render for the frame to count as sharp
CHUNK_KINDS = ("first", "event", "continuation")  # read from the context (``context_kind``)

COLOURS = {
    "red": (0.9, 0.15, 0.15),
    "green": (0.15, 0.8, 0.2),
    "blue": (0.2, 0.35, 0.95),
    "yellow": (0.95, 0.85, 0.1),
    "cyan": (0.1, 0.85, 0.9),
    "magenta": (0.9, 0.2, 0.85),
    "white": (0.95, 0.95, 0.95),
}
COLOUR_NAMES = tuple(COLOURS)
BACKGROUNDS = {"black": (0.05, 0.05, 0.05), "grey": (0.45, 0.45, 0.45)}
SHAPES = ("square", "disc")
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
MOTIONS = ["still"] + [f"drifting {d}" for d in DIRECTIONS]


# ---- scenes --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scene:
    shape: str
    colour: str
    motion: str
    background: str

    @property
    def prompt(self) -> str:
        desc = "sitting still" if self.motion == "still" else self.motion
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


def velocity(motion: str) -> tuple[int, int]:
    """Grid units (0.25 px) per frame."""
    if motion == "still":
        return 0, 0
    return DIRECTIONS[motion.split()[1]]


# ---- rendering -----------------------------------------------------------------------------------
_SUB = (np.arange(LATENT_W * SUPERSAMPLE) + 0.5) / SUPERSAMPLE  # sub-pixel centres


def coverage(shape: str, cx: float, cy: float) -> np.ndarray:
    """Anti-aliased coverage [H, W] in [0, 1] of a shape centred at (cx, cy) (latent pixel units)."""
    xx, yy = np.meshgrid(_SUB, _SUB[: LATENT_H * SUPERSAMPLE])
    if shape == "square":
        m = (np.abs(xx - cx) <= HALF) & (np.abs(yy - cy) <= HALF)
    elif shape == "disc":
        m = (xx - cx) ** 2 + (yy - cy) ** 2 <= HALF**2
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return m.reshape(LATENT_H, SUPERSAMPLE, LATENT_W, SUPERSAMPLE).mean(axis=(1, 3))


@lru_cache(maxsize=None)
def frame_table(shape: str, background: str) -> np.ndarray:
    """Every frame a scene of this shape and background can show: [7 colours, 441 positions, H, W, 3]
    (position index = iy * NPOS + ix, centre = LO + GRID * i)."""
    vals = LO + GRID * np.arange(NPOS)
    cov = np.stack([coverage(shape, x, y) for y in vals for x in vals])[..., None]  # [441, H, W, 1]
    bg = np.array(BACKGROUNDS[background])
    out = np.stack([bg * (1 - cov) + np.array(COLOURS[c]) * cov for c in COLOUR_NAMES])
    out.setflags(write=False)
    return out


# ---- the generative process: states, continuations, sampling ------------------------------------
@dataclass(frozen=True)
class State:
    """What a frame shows: the shape's grid position (ix, iy in 0..20) and colour index."""

    ix: int
    iy: int
    colour: int


@dataclass
class Continuations:
    """Every allowed chunk given a prefix: positions [N, F] (index iy * NPOS + ix), colours [N, F],
    exact probabilities [N] (sum 1), kinds [N] ('start' | 'none' | 'teleport')."""

    positions: np.ndarray
    colours: np.ndarray
    probs: np.ndarray
    kinds: list

    def __len__(self):
        return len(self.probs)

    def frames(self, scene: Scene) -> np.ndarray:
        """RGB [N, F, H, W, 3]."""
        return frame_table(scene.shape, scene.background)[self.colours, self.positions]

    @property
    def is_event(self) -> np.ndarray:
        return np.array([k in EVENT_KINDS for k in self.kinds])


def _track(ix: np.ndarray, iy: np.ndarray, motion: str, frames: int) -> np.ndarray:
    """Position indices [N, frames] of shapes starting at (ix, iy) (frame 0) and moving by ``motion``,
    stopping at the walls."""
    vx, vy = velocity(motion)
    t = np.arange(frames)
    xs = np.clip(ix[:, None] + vx * t, 0, NPOS - 1)
    ys = np.clip(iy[:, None] + vy * t, 0, NPOS - 1)
    return ys * NPOS + xs


def at_wall(scene: Scene, prev: State) -> bool:
    """The shape in ``prev`` touches the wall it drifts towards (so an event is due next chunk)."""
    vx, vy = velocity(scene.motion)
    return (
        (vx > 0 and prev.ix == NPOS - 1)
        or (vx < 0 and prev.ix == 0)
        or (vy > 0 and prev.iy == NPOS - 1)
        or (vy < 0 and prev.iy == 0)
    )


def context_kind(scene: Scene, prev: State | None) -> str:
    """A chunk's kind from its context alone: 'first' (no prefix), 'event' (the prefix ends at the wall
    the shape drifts towards: it teleports now) or 'continuation' (one allowed chunk)."""
    if prev is None:
        return "first"
    return "event" if at_wall(scene, prev) else "continuation"


def continuations(scene: Scene, prev: State | None, frames: int = CHUNK_FRAMES) -> Continuations:
    """The exact distribution of the next chunk (``frames`` frames) given the last frame's state ``prev``
    (None: the first chunk, which starts at any whole-pixel position in the prompt's colour)."""
    whole = np.array(WHOLE)
    if prev is None:
        ix, iy = np.meshgrid(whole, whole)
        ix, iy = ix.ravel(), iy.ravel()
        pos = _track(ix, iy, scene.motion, frames)
        col = np.full(pos.shape, COLOUR_NAMES.index(scene.colour))
        return Continuations(pos, col, np.full(len(pos), 1.0 / len(pos)), ["start"] * len(pos))
    vx, vy = velocity(scene.motion)
    nx, ny = min(max(prev.ix + vx, 0), NPOS - 1), min(max(prev.iy + vy, 0), NPOS - 1)  # where it would be
    if not at_wall(scene, prev):
        pos = _track(np.array([nx]), np.array([ny]), scene.motion, frames)
        return Continuations(pos, np.full(pos.shape, prev.colour), np.ones(1), ["none"])
    jx, jy = np.meshgrid(whole, whole)
    far = np.maximum(np.abs(jx - nx), np.abs(jy - ny)) * GRID >= TELEPORT_MIN
    pos = _track(jx[far], jy[far], scene.motion, frames)
    col = np.full(pos.shape, prev.colour)
    return Continuations(pos, col, np.full(len(pos), 1.0 / len(pos)), ["teleport"] * len(pos))


@lru_cache(maxsize=None)
def event_due_share(frames: int = NUM_FRAMES, chunk: int = CHUNK_FRAMES) -> tuple:
    """Exact probability, per chunk position, that an event is due (all scenes' motions equally likely,
    as ``random_scene`` draws them), by propagating the state distribution through ``continuations``."""
    shares = []
    for motion in MOTIONS:
        scene = Scene(SHAPES[0], COLOUR_NAMES[0], motion, "black")
        dist, mine = {None: 1.0}, []
        for _ in range(frames // chunk):
            nxt, due = {}, 0.0
            for prev, p in dist.items():
                if prev is not None and at_wall(scene, prev):
                    due += p
                c = continuations(scene, prev, chunk)
                for i, q in enumerate(c.probs):
                    st = state_of(c.positions, c.colours, i)
                    nxt[st] = nxt.get(st, 0.0) + p * float(q)
            mine.append(due)
            dist = nxt
        shares.append(mine)
    return tuple(float(np.mean([m[c] for m in shares])) for c in range(frames // chunk))


def world_event_rate() -> float:
    """The world's share of later chunks (2..) with an event due."""
    later = event_due_share()[1:]
    return sum(later) / len(later)


def state_of(positions: np.ndarray, colours: np.ndarray, i: int, j: int = -1) -> State:
    p = int(positions[i, j])
    return State(p % NPOS, p // NPOS, int(colours[i, j]))


def sample_states(
    scene: Scene, g: torch.Generator, frames: int = NUM_FRAMES, chunk: int = CHUNK_FRAMES
) -> tuple[np.ndarray, np.ndarray, list]:
    """One draw of the process: (positions [T], colours [T], kind of each chunk), chunk by chunk from
    ``continuations`` (so sampling and enumeration are the same distribution by construction)."""
    pos, col, kinds, prev = [], [], [], None
    for _ in range(frames // chunk):
        c = continuations(scene, prev, chunk)
        cdf = np.cumsum(c.probs)
        i = min(
            int(np.searchsorted(cdf, float(torch.rand((), generator=g, dtype=torch.float64)) * cdf[-1], side="right")),
            len(cdf) - 1,
        )
        pos.append(c.positions[i])
        col.append(c.colours[i])
        kinds.append(c.kinds[i])
        prev = state_of(c.positions, c.colours, i)
    return np.concatenate(pos), np.concatenate(col), kinds


def render_states(scene: Scene, positions: np.ndarray, colours: np.ndarray) -> np.ndarray:
    return frame_table(scene.shape, scene.background)[colours, positions]


def sample_video(scene: Scene, g: torch.Generator, frames: int = NUM_FRAMES, with_events: bool = False):
    """One random clean RGB video [T, H, W, 3] of a scene; with ``with_events`` also the list of chunk
    kinds ('start', then 'none' / 'teleport' per later chunk)."""
    pos, col, kinds = sample_states(scene, g, frames)
    video = render_states(scene, pos, col)
    return (video, kinds) if with_events else video


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
    motion = parts[0]
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


# ---- the reproduction's quality metrics ---------------------------------------------------------
@dataclass
class ChunkScore:
    """One chunk of one generated video, scored against the world.

    valid: ``sharp`` and ``consistent`` (the primary quality measure). sharp: every frame is within
        VALID_TOL RGB MSE of a clean render (its nearest state). consistent: those fitted per-frame states
        are exactly one of the allowed continuations of the fitted prefix (its last frame's state).
    conditional: RGB MSE of the chunk to the nearest continuation the world allows given the generated
        prefix (secondary; blur-tolerant: a hedge between continuations scores well while rendering none).
    realism: mean over the chunk's frames of the MSE to the nearest frame the scene can show at all.
    event: the context says an event is due (``context_kind`` == 'event').
    kind: the kind of the nearest allowed continuation ('start' | 'none' | 'teleport').
    context: the chunk's kind read from its context ('first' | 'event' | 'continuation').
    destination: for a consistent event chunk, the whole-pixel position index it teleported to, else -1.
    """

    conditional: float
    realism: float
    event: bool
    kind: str
    context: str = "first"
    sharp: bool = False
    consistent: bool = False
    destination: int = -1

    @property
    def valid(self) -> bool:
        return self.sharp and self.consistent


class SceneFitter:
    """The world-side metrics of the reproduction (see ChunkScore and ``energy_distance``)."""

    def __init__(self, frames: int = NUM_FRAMES, chunk: int = CHUNK_FRAMES, real_videos: int = 256):
        self.frames, self.chunk, self.real_videos = frames, chunk, real_videos
        self._cache: dict = {}

    def _table(self, scene: Scene) -> Tensor:
        key = ("table", scene.shape, scene.background)
        if key not in self._cache:
            t = frame_table(scene.shape, scene.background)
            self._cache[key] = torch.tensor(t.reshape(-1, *t.shape[2:]), dtype=torch.float32)  # [7*441, H, W, 3]
        return self._cache[key]

    def _flat_table(self, scene: Scene) -> tuple[Tensor, Tensor]:
        key = ("flat", scene.shape, scene.background)
        if key not in self._cache:
            t = self._table(scene).flatten(1)
            self._cache[key] = t, t.pow(2).sum(1)
        return self._cache[key]

    def fit_state(self, scene: Scene, frame_rgb: Tensor) -> tuple[State, float]:
        """Nearest state (and its MSE) for one RGB frame [H, W, 3]."""
        pos, col, err = self.fit_frames(scene, frame_rgb[None])
        return State(int(pos[0]) % NPOS, int(pos[0]) // NPOS, int(col[0])), float(err[0])

    def fit_frames(self, scene: Scene, rgb: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Every frame's nearest clean render: rgb [T, H, W, 3] -> (position index [T], colour [T], MSE [T])."""
        table, sq = self._flat_table(scene)
        flat = rgb.flatten(1).float()
        d2 = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ table.T + sq[None]
        best = d2.min(1)
        col, pos = best.indices // (NPOS * NPOS), best.indices % (NPOS * NPOS)
        return pos, col, best.values.clamp_min(0) / flat.shape[1]

    def chunk_scores(self, scene: Scene, latent: Tensor, chunks=None, realism: bool = True) -> list[ChunkScore]:
        """latent [16, T, H, W] (one video) -> a ChunkScore per chunk (``chunks``: only these; ``realism``
        is kept for callers; the per-frame fit it needs is always computed, validity needs it)."""
        rgb = latent_to_rgb_small(latent[None])[0]  # [T, H, W, 3]
        n = rgb.shape[0] // self.chunk
        fpos, fcol, real = self.fit_frames(scene, rgb)
        out = []
        for ci in chunks if chunks is not None else range(n):
            f0 = ci * self.chunk
            seg = rgb[f0 : f0 + self.chunk]
            prev = None if ci == 0 else State(int(fpos[f0 - 1]) % NPOS, int(fpos[f0 - 1]) // NPOS, int(fcol[f0 - 1]))
            cont = continuations(scene, prev, self.chunk)
            cand = torch.as_tensor(cont.frames(scene), dtype=torch.float32)  # [N, F, H, W, 3]
            err = (cand - seg[None]).pow(2).flatten(1).mean(1)
            i = int(err.argmin())
            mine_p, mine_c = fpos[f0 : f0 + self.chunk].numpy(), fcol[f0 : f0 + self.chunk].numpy()
            match = np.flatnonzero((cont.positions == mine_p[None]).all(1) & (cont.colours == mine_c[None]).all(1))
            ctx = context_kind(scene, prev)
            out.append(
                ChunkScore(
                    conditional=float(err[i]),
                    realism=float(real[f0 : f0 + self.chunk].mean()),
                    event=ctx == "event",
                    kind=cont.kinds[i],
                    context=ctx,
                    sharp=bool((real[f0 : f0 + self.chunk] <= VALID_TOL).all()),
                    consistent=len(match) > 0,
                    destination=int(mine_p[0]) if ctx == "event" and len(match) else -1,
                )
            )
        return out

    def valid_video(self, scene: Scene, latent: Tensor) -> bool:
        """Every chunk valid (sharp and an allowed continuation of its fitted prefix)."""
        return all(c.valid for c in self.chunk_scores(scene, latent))

    def fit_error(self, scene: Scene, latent: Tensor) -> float:
        """Mean over chunks of the conditional error (0 for every real video)."""
        s = self.chunk_scores(scene, latent)
        return sum(c.conditional for c in s) / len(s)

    def real(self, scene: Scene) -> Tensor:
        """``real_videos`` clean videos of the scene (seeded by the prompt), RGB flattened [N, T*H*W*3]."""
        key = ("real", scene)
        if key not in self._cache:
            seed = int.from_bytes(hashlib.sha256(scene.prompt.encode()).digest()[:4], "little")
            g = torch.Generator().manual_seed(seed)
            v = np.stack([sample_video(scene, g, self.frames) for _ in range(self.real_videos)])
            self._cache[key] = torch.as_tensor(v, dtype=torch.float64).flatten(1)
        return self._cache[key]

    def energy_distance(self, scene: Scene, latents: Tensor) -> float:
        """Energy distance between n >= 2 generated videos of one prompt and the prompt's real videos.

        ED = 2 E d(X, Y) - E d(X, X') - E d(Y, Y'), d = RMS RGB difference over the whole video, X the
        generated videos (latents [n, 16, T, H, W]), Y ``real_videos`` samples of the world (fixed per
        prompt). 0 iff the two distributions are equal (in the limit). It does not reward blur (a hedge
        has no spread), and it penalises mode collapse, e.g. a generator that never makes events.
        E d(X, X') and E d(Y, Y') use i != j pairs only (unbiased).
        """
        if latents.shape[0] < 2:
            raise ValueError("energy_distance needs at least 2 videos per prompt")
        x = latent_to_rgb_small(latents).flatten(1).double()
        y = self.real(scene)
        dim = x.shape[1]
        dxy = torch.cdist(x[None], y[None])[0].mean() / dim**0.5
        n = x.shape[0]
        dxx = torch.cdist(x[None], x[None])[0].sum() / (n * (n - 1)) / dim**0.5
        return float(2 * dxy - dxx - self.spread(scene))

    def spread(self, scene: Scene) -> float:
        """E d(Y, Y') over the prompt's real sample (cached)."""
        key = ("spread", scene)
        if key not in self._cache:
            y = self.real(scene)
            n = y.shape[0]
            self._cache[key] = float(torch.cdist(y[None], y[None])[0].sum()) / (n * (n - 1)) / y.shape[1] ** 0.5
        return self._cache[key]


def psnr(mse: float) -> float:
    return 10.0 * math.log10(1.0 / max(mse, 1e-10))
