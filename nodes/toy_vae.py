"""DSA Toy VAE: the toy world's linear codec as a VAE, so the toy model streams decoded frames like a real one.

The object answers the host VAE's decode/encode calls (VAE Decode, VAE Encode work with it) and gives the sampler
and extender a streaming decoder. The toy codec has no temporal compression: one latent frame is one frame.
"""

from __future__ import annotations

import comfy.latent_formats
import torch
from comfy_api.latest import io

from ..dsa_core.streaming_decode import FrameWiseDecoder
from ..dsa_core.toy.world import decode_to_rgb, encode_rgb
from .host_model import DSAInputError

TOY_FRAME_RATE = 4  # the toy template saves its video at 4 fps; the live player plays at the same rate


class ToyVAE:
    """Host-VAE-shaped wrapper around dsa_core.toy.world's codec. Latents are the host's Wan 2.1 LATENT format."""

    frame_rate = TOY_FRAME_RATE

    def __init__(self, scale: int):
        self.scale = scale
        self.latent_format = comfy.latent_formats.Wan21()

    def decode_frames(self, samples: torch.Tensor) -> torch.Tensor:
        """LATENT [B, 16, T, h, w] -> [B, T, h * scale, w * scale, 3] in [0, 1]."""
        return decode_to_rgb(self.latent_format.process_in(samples.float().cpu()), self.scale)

    def decode(self, samples: torch.Tensor) -> torch.Tensor:
        return self.decode_frames(samples)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """[T, H, W, 3] -> LATENT [1, 16, T, H / scale, W / scale] (area-downscaled to the toy's latent grid)."""
        x = torch.nn.functional.avg_pool2d(pixels[..., :3].movedim(-1, 1).float(), self.scale)
        return self.latent_format.process_out(encode_rgb(x.movedim(1, -1)))

    def streaming_decoder(self) -> FrameWiseDecoder:
        return FrameWiseDecoder(self.decode_frames, source=("dsa-toy-codec", self.scale))


class DSAToyVAE(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DSAToyVAE",
            display_name="DSA Toy VAE",
            category="DSA",
            description="The bundled toy model's codec (synthetic moving shapes) as a VAE: connect it to the DSA "
            "sampler's or extender's vae input to watch the toy video stream in. Real models use the "
            "Wan 2.1 VAE from Load VAE.",
            inputs=[
                io.Int.Input(
                    "scale",
                    default=8,
                    min=1,
                    max=32,
                    tooltip="Pixels per latent pixel (nearest-neighbour upscaling; the toy's frames are "
                    "8x8 latent pixels).",
                )
            ],
            outputs=[io.Vae.Output(display_name="vae")],
        )

    @classmethod
    def execute(cls, scale) -> io.NodeOutput:
        return io.NodeOutput(ToyVAE(scale))


# Set on the host's model object (shared by every clone of its MODEL, e.g. after a LoRA) by DSA Model Loader when
# the file is the toy world's model (its metadata carries dsa.toy.* keys): the toy's latents are its own codec's.
TOY_MODEL_MARK = "dsa_toy_world"
REAL_WAN_MIN_DIM = 1536  # Wan 2.1 1.3B; 14B is 5120. The toy and test models are far smaller.


def mark_if_toy(model, metadata: dict | None) -> None:
    if any(str(k).startswith("dsa.toy.") for k in (metadata or {})):
        setattr(model.model, TOY_MODEL_MARK, True)


def vae_mismatch(vae_is_toy: bool, model_is_toy: bool, model_dim: int) -> str | None:
    """Why this VAE cannot decode (or encode for) this model, in words, or None."""
    if vae_is_toy and (model_dim >= REAL_WAN_MIN_DIM and not model_is_toy):
        return (
            f"the DSA Toy VAE only decodes the bundled toy model's latents, and this MODEL is a Wan 2.1 model "
            f"(dim {model_dim}): connect the Wan 2.1 VAE (Load VAE, wan_2.1_vae.safetensors) to the vae input"
        )
    if model_is_toy and not vae_is_toy:
        return (
            "this MODEL is the bundled toy model, whose latents are its own toy codec's: a Wan VAE would decode "
            "them to meaningless frames; connect DSA Toy VAE to the vae input"
        )
    return None


def check_vae_matches_model(vae, model, model_dim: int) -> None:
    if vae is None:
        return
    problem = vae_mismatch(isinstance(vae, ToyVAE), bool(getattr(model.model, TOY_MODEL_MARK, False)), model_dim)
    if problem:
        raise DSAInputError(problem)
