"""DSA Toy Decode: frames from the bundled toy model's latents, which the Wan VAE cannot decode.

The toy world (dsa_core.toy.world) uses a fixed linear codec instead of a VAE, so the toy workflow runs with no
download. Its latents come out of the sampler in the host's Wan 2.1 latent format; this undoes that first.
"""

from __future__ import annotations

import comfy.latent_formats
import comfy.model_management
from comfy_api.latest import io

from ..dsa_core.toy.world import decode_to_rgb


class DSAToyDecode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DSAToyDecode",
            display_name="DSA Toy Decode",
            category="DSA",
            description="Decodes latents of the bundled DSA toy model (synthetic moving shapes) to frames. Use VAE "
            "Decode with the Wan 2.1 VAE for real models.",
            inputs=[
                io.Latent.Input("samples", tooltip="A video latent from the DSA sampler running the toy model."),
                io.Int.Input(
                    "scale",
                    default=8,
                    min=1,
                    max=32,
                    tooltip="Pixels per latent pixel (nearest-neighbour upscaling; the toy's frames are 8x8).",
                ),
            ],
            outputs=[io.Image.Output(display_name="images")],
        )

    @classmethod
    def execute(cls, samples, scale) -> io.NodeOutput:
        lat = samples["samples"]
        if lat.ndim != 5 or lat.shape[1] != 16:
            raise ValueError(f"expected a video latent [batch, 16, frames, h, w], got {tuple(lat.shape)}")
        model_space = comfy.latent_formats.Wan21().process_in(lat.float())
        rgb = decode_to_rgb(model_space, scale)  # [B, T, H, W, 3]
        return io.NodeOutput(rgb.flatten(0, 1).to(comfy.model_management.intermediate_device()))
