"""What DSA shares with the host's native autoregressive video nodes (ComfyUI's Sampler AR Video / AR Video I2V):
the start image of image-to-video, the native sampler's noise, and the schedule from the MODEL's own sampling.
"""

from __future__ import annotations

import comfy.utils
import torch
from comfy_api.latest import io

from ..dsa_core.noise import NativeARNoise
from .combo_input import Combo
from .host_model import DSAInputError

NOISE_DSA = "dsa"
NOISE_NATIVE = "sampler_ar_video"
NOISE_SOURCES = [NOISE_DSA, NOISE_NATIVE]
MODEL_SCHEDULE = "model"
MODEL_SCHEDULE_STEPS = 4  # the native template's BasicScheduler steps; more via max_steps (extra lower levels)


def sampler_inputs() -> list:
    """The sampler's image-to-video and noise inputs (appended after its older inputs; all optional). The start
    image is encoded with the sampler's one ``vae`` input (sampling.streaming_inputs), which also streams."""
    return [
        io.Image.Input(
            "start_image",
            optional=True,
            tooltip="Image-to-video: the first frame. It is resized to width x height (center crop, as "
            "AR Video I2V does), encoded with the VAE into the first latent frame and committed "
            "to the cache as context; the generated frames follow it. length counts it: 81 "
            "frames = the start frame + 20 generated latent frames (frame-wise: 20 chunks; "
            "chunk-wise needs (latent frames - 1) a multiple of frames_per_chunk, e.g. 73 or 85).",
        ),
        Combo(
            "noise",
            options=NOISE_SOURCES,
            default=NOISE_DSA,
            optional=True,
            tooltip="dsa: noise keyed by chunk and step, so a chunk's noise does not depend on how many "
            "steps earlier chunks took. sampler_ar_video: the host's Sampler AR Video seeding "
            "(one draw for the whole video, re-noising seeded seed + block*1000 + step): policy "
            "fixed with schedule model then reproduces the native sampler on the CPU.",
        ),
    ]


def encode_start_image(model, vae, image, width: int, height: int):
    """The start image as one clean latent frame in model space [1, 16, 1, height/8, width/8], encoded the way the
    host's AR Video I2V does (first image, bilinear resize with center crop, RGB only)."""
    if vae is None:
        raise DSAInputError(
            "a start_image needs the Wan 2.1 VAE to encode it: connect a Load VAE "
            "(wan_2.1_vae.safetensors) to the sampler's vae input"
        )
    problem = start_image_problem(image)
    if problem:
        raise DSAInputError(problem)
    if getattr(vae, "latent_channels", 16) != 16:
        raise DSAInputError(
            f"this VAE makes {vae.latent_channels}-channel latents; Wan 2.1 AR models need the Wan "
            "2.1 VAE (16 channels): load wan_2.1_vae.safetensors"
        )
    frame = comfy.utils.common_upscale(image[:1].movedim(-1, 1), width, height, "bilinear", "center").movedim(1, -1)
    raw = vae.encode(frame[:, :, :, :3])
    if raw.ndim != 5 or raw.shape[2] != 1 or raw.shape[3:] != (height // 8, width // 8):
        raise DSAInputError(
            f"the VAE encoded the start image to shape {tuple(raw.shape)}, expected [1, 16, 1, "
            f"{height // 8}, {width // 8}]: use the Wan 2.1 VAE"
        )
    return model.model.latent_format.process_in(raw.float())


def start_image_problem(image) -> str | None:
    """What makes an IMAGE unusable as the one start frame, in words, or None."""
    if image.ndim != 4:
        return f"start_image has shape {tuple(image.shape)}, expected an IMAGE [frames, height, width, channels]"
    n, h, w, c = image.shape
    if n != 1:
        return (
            f"start_image is a batch of {n} images; image-to-video starts from one: pick it with the host's "
            "ImageFromBatch (batch_index, length 1)"
            if n
            else "start_image is an empty batch (0 images): connect a Load Image"
        )
    if h < 1 or w < 1:
        return f"start_image is {w}x{h} pixels: connect a real image (Load Image)"
    if c not in (3, 4):
        return (
            f"start_image has {c} channel{'s' if c != 1 else ''}; the VAE encodes RGB: connect an RGB (or RGBA) "
            "image, e.g. from Load Image"
        )
    if not bool(torch.isfinite(image).all()):
        return "start_image holds NaN/Inf values: check the nodes that made it"
    return None


def make_noise(noise_source, seed: int, *, total_frames: int, chunk_frames: int, start_frames: int):
    """None (dsa_core's default per-chunk noise) or the native sampler's noise."""
    if noise_source in (None, NOISE_DSA):
        return None
    if noise_source != NOISE_NATIVE:
        raise DSAInputError(f"noise must be one of {NOISE_SOURCES}, got {noise_source!r}")
    return NativeARNoise(seed, total_frames, chunk_frames, start_frames)
