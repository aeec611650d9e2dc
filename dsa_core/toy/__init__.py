"""Toy-scale DSA: a synthetic video world, its teacher, the distilled causal generator + confidence head,
and the reproduction script. Everything runs on a CPU in minutes (see results/toy_repro/README.md).

``demo_assets()`` says where the committed toy model and its prompt embeddings are; ``decode_to_rgb``
turns its latents into pixels (the toy codec, world.py); ``write_gif`` / ``write_webp`` save a video.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .world import decode_to_rgb  # noqa: F401  (public)

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = REPO_ROOT / "models" / "toy"
MODEL_FILE = MODEL_DIR / "dsa_toy_wan.safetensors"
PROMPT_DIR = MODEL_DIR / "prompts"
DEFAULT_PROMPT = "toy_green_disc_drifting_left_on_black.safetensors"


@dataclass(frozen=True)
class DemoAssets:
    model: Path  # generator + confidence head in one safetensors (bare Wan keys + 'confidence_head.')
    prompts: tuple  # prompt embedding files (dsa_core.prompt_files format)
    default_prompt: Path
    latent_h: int
    latent_w: int
    num_frames: int  # latent frames the toy model was trained on (it can continue further)
    chunk_frames: int
    max_steps: int  # ladder levels it was trained on (Self-Forcing's 4 + 2 extended)
    pixel_scale: int


def demo_assets() -> DemoAssets:
    from . import world as W

    prompts = tuple(sorted(PROMPT_DIR.glob("*.safetensors")))
    return DemoAssets(
        MODEL_FILE,
        prompts,
        PROMPT_DIR / DEFAULT_PROMPT,
        W.LATENT_H,
        W.LATENT_W,
        W.NUM_FRAMES,
        W.CHUNK_FRAMES,
        6,
        W.PIXEL_SCALE,
    )


def _frames_u8(video):
    """[T, H, W, 3] float in [0, 1] (torch or numpy) -> list of PIL images."""
    import numpy as np
    from PIL import Image

    arr = video.detach().cpu().numpy() if hasattr(video, "detach") else np.asarray(video)
    arr = (np.clip(arr, 0, 1) * 255 + 0.5).astype("uint8")
    return [Image.fromarray(f) for f in arr]


def write_gif(video, path, fps: float = 6.0) -> Path:
    """Save [T, H, W, 3] in [0, 1] as a looping GIF (Pillow only)."""
    frames = _frames_u8(video)
    path = Path(path)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0)
    return path


def write_webp(video, path, fps: float = 6.0) -> Path:
    frames = _frames_u8(video)
    path = Path(path)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0, lossless=True)
    return path
