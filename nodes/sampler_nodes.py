"""DSA Confidence Sampler and DSA AR Frame Extender: the nodes artists tune."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from . import native_ar, sampling, streaming, toy_vae, widget_ranges
from .combo_input import Combo
from .dsa_types import DSAState
from .host_model import DSAInputError, wan_config_of

MAX_RES = 8192


def latent_frames(length: int) -> int:
    return (length - 1) // 4 + 1


def _inside(valid, ranges, name) -> list[int]:
    """The candidate values that lie inside the widget's declared range."""
    lo, hi = ranges.get(name, (None, None)) if ranges else (None, None)
    return sorted({v for v in valid if (lo is None or v >= lo) and (hi is None or v <= hi)})


def check_video_shape(
    width, height, length, frames_per_chunk, start_frames: int | None = 0, ranges: dict | None = None
) -> str | None:
    """Wan's rules, in words an artist can act on; suggestions stay inside the widgets' ranges (``ranges``).
    ``start_frames``: latent frames given by a start image (they are part of ``length``, the rest is generated in
    whole chunks); None = not known yet (queue-time validation cannot see whether a start image is linked): either
    0 or 1 is accepted, execute checks the exact count."""
    ranges = ranges or {}
    if width % 16 or height % 16:
        w = widget_ranges.clamp(ranges, "width", max(16, round(width / 16) * 16))
        h = widget_ranges.clamp(ranges, "height", max(16, round(height / 16) * 16))
        return (
            f"width and height must be multiples of 16 (Wan's VAE divides by 8, the model's patches by 2): "
            f"got {width}x{height}, try {w}x{h}"
        )
    if (length - 1) % 4:
        lo = (length - 1) // 4 * 4 + 1
        ok = _inside((lo, lo + 4), ranges, "length")
        return (
            f"length must be 4k+1 frames (Wan's VAE packs 4 frames per latent frame): got {length}, "
            f"try {' or '.join(map(str, ok))}"
        )
    t = latent_frames(length)
    if start_frames and t <= start_frames:
        return (
            f"length {length} is the start image alone: nothing to generate; use length "
            f"{(start_frames + frames_per_chunk - 1) * 4 + 1} or more"
        )
    starts = (0, 1) if start_frames is None else (start_frames,)
    if all((t - s) % frames_per_chunk for s in starts):
        s = starts[0]
        k = max(1, (t - s) // frames_per_chunk)
        ok = _inside(
            ((s + k * frames_per_chunk - 1) * 4 + 1, (s + (k + 1) * frames_per_chunk - 1) * 4 + 1), ranges, "length"
        )
        what = f"{t} latent frames" if not s else f"{t} latent frames, {t - s} to generate after the start image"
        fix = f"use length {' or '.join(map(str, ok))}" if ok else "use a smaller frames_per_chunk"
        return f"length {length} gives {what}, not a multiple of frames_per_chunk {frames_per_chunk}: {fix}"
    return None


def latent_problem(samples, config) -> str | None:
    """What keeps a LATENT from being continued by a Wan 2.1 AR model, in words, or None."""
    want = f"a Wan 2.1 video latent [batch, {config.in_dim}, frames, height/8, width/8]"
    if samples.ndim != 5:
        return f"the latent has shape {tuple(samples.shape)}; the extender needs {want}"
    if samples.shape[1] != config.in_dim:
        return (
            f"the latent has {samples.shape[1]} channels: it comes from another model family's latent (e.g. "
            f"Mochi 12, LTXV 128, an image model 4); the extender needs {want}: make it with the Wan 2.1 VAE "
            "(VAE Encode) or a Wan sampler"
        )
    _, ph, pw = config.patch_size
    if samples.shape[2] < 1 or samples.shape[3] % ph or samples.shape[4] % pw or not samples.shape[3]:
        return (
            f"the latent has shape {tuple(samples.shape)}; the extender needs {want}, width and height multiples of 16"
        )
    if not bool(torch.isfinite(samples).all()):
        return "the latent holds NaN/Inf values: check the nodes that made it (it would poison every new frame)"
    return None


class DSASampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DSASampler",
            display_name="DSA Confidence Sampler",
            category="DSA",
            description="Generates a video chunk by chunk with a causal AR Wan 2.1 model. After every denoising step "
            "the confidence head scores the chunk: confident chunks stop early, hard chunks get extra "
            "refinement. Outputs a Wan latent (decode with VAE Decode), a state to extend, a step report.",
            inputs=[
                io.Model.Input(
                    "model",
                    tooltip="An autoregressive Wan 2.1 T2V model (DSA Model Loader or UNETLoader; "
                    "Self-Forcing, CausVid, or the host's causal-AR repacks such as "
                    "Causal Forcing; LoRAs and other model patches apply).",
                ),
                io.Conditioning.Input(
                    "positive",
                    tooltip="The prompt, from CLIP Text Encode with the Wan (UMT5) "
                    "text encoder. No negative: AR few-step models use no CFG.",
                ),
                io.Int.Input(
                    "seed",
                    default=0,
                    min=0,
                    max=0xFFFFFFFFFFFFFFFF,
                    control_after_generate=True,
                    tooltip="Noise seed. Each chunk and step draws its own noise from it, so a chunk's noise "
                    "does not depend on how many steps earlier chunks took.",
                ),
                io.Int.Input(
                    "width",
                    default=832,
                    min=16,
                    max=MAX_RES,
                    step=16,
                    tooltip="Video width in pixels (multiple of 16).",
                ),
                io.Int.Input(
                    "height",
                    default=480,
                    min=16,
                    max=MAX_RES,
                    step=16,
                    tooltip="Video height in pixels (multiple of 16).",
                ),
                io.Int.Input(
                    "length",
                    default=81,
                    min=1,
                    max=4097,
                    step=4,
                    tooltip="Frames, 4k+1 (Wan's rule): 81 frames = 21 latent frames = 7 chunks of 3.",
                ),
                io.Int.Input(
                    "frames_per_chunk",
                    default=3,
                    min=1,
                    max=21,
                    tooltip="Latent frames generated together (3 for chunk-wise Self-Forcing / CausVid, 1 for "
                    "frame-wise checkpoints). The latent frame count must be a multiple of it.",
                ),
                *sampling.policy_inputs(),
                *sampling.optional_inputs(),
                *sampling.streaming_inputs(),
                *native_ar.sampler_inputs(),
                *sampling.budget_inputs(),
            ],
            outputs=sampling.outputs(),
            hidden=[io.Hidden.unique_id, io.Hidden.prompt],
        )

    validate_inputs = sampling.VALIDATE_THRESHOLD

    @classmethod
    def execute(
        cls,
        model,
        positive,
        seed,
        width,
        height,
        length,
        frames_per_chunk,
        policy,
        threshold_preset,
        threshold,
        min_steps,
        max_steps,
        schedule,
        cache_window,
        sink_frames,
        head=None,
        ladder=None,
        vae=None,
        start_image=None,
        noise=None,
        mean_steps=2.5,
    ) -> io.NodeOutput:
        ranges = widget_ranges.declared_ranges(cls.define_schema())
        problem = check_video_shape(
            width, height, length, frames_per_chunk, start_frames=None, ranges=ranges
        ) or sampling.check_policy_widgets(min_steps, max_steps, cache_window, sink_frames, frames_per_chunk)
        if problem:
            raise DSAInputError(problem)
        toy_vae.check_vae_matches_model(vae, model, wan_config_of(model).dim)
        start_latent = None
        if start_image is not None:
            start_latent = native_ar.encode_start_image(model, vae, start_image, width, height)
        start_frames = 0 if start_latent is None else start_latent.shape[2]
        problem = check_video_shape(width, height, length, frames_per_chunk, start_frames, ranges=ranges)
        if problem:
            raise DSAInputError(problem)
        streaming.check_images_wanted(vae, cls.hidden.prompt, cls.hidden.unique_id, sampling.outputs())
        settings = sampling.SamplingSettings(
            seed=seed,
            policy=policy,
            threshold_preset=threshold_preset,
            threshold=threshold,
            min_steps=min_steps,
            max_steps=max_steps,
            schedule=schedule,
            cache_window=cache_window,
            sink_frames=sink_frames,
            ladder_sigmas=ladder,
            noise=noise,
            mean_steps=mean_steps,
        )
        start = sampling.NewVideo(
            latent_h=height // 8, latent_w=width // 8, chunk_frames=frames_per_chunk, context_latents=start_latent
        )
        frames, bundle, report = sampling.run(
            node_id=cls.hidden.unique_id,
            model=model,
            positive=positive,
            head=head,
            settings=settings,
            num_frames=latent_frames(length) - start_frames,
            start=start,
            vae=vae,
        )
        # With a start image the LATENT is the whole video: the start frame, then the generated ones.
        video = frames if start_latent is None else bundle.state.latents
        images = streaming.images_output(bundle.decoded)
        return io.NodeOutput(sampling.to_host_latent(model, video), bundle, report, images)


class DSAExtend(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DSAExtend",
            display_name="DSA AR Frame Extender",
            category="DSA",
            description="Continues a video: from a DSA state (nothing is recomputed) or from any Wan video latent "
            "(its frames are committed to the cache as context first), optionally under a new prompt. "
            "Outputs the whole video latent and the new state.",
            inputs=[
                io.Model.Input("model", tooltip="The same AR Wan 2.1 model that made the state."),
                io.Conditioning.Input(
                    "positive",
                    tooltip="The prompt for the new frames. A different prompt than the "
                    "state's switches the prompt from here on.",
                ),
                io.Int.Input(
                    "seed",
                    default=0,
                    min=0,
                    max=0xFFFFFFFFFFFFFFFF,
                    control_after_generate=True,
                    tooltip="Noise seed for the new chunks.",
                ),
                io.Int.Input(
                    "add_frames",
                    default=48,
                    min=4,
                    max=4096,
                    step=4,
                    tooltip="Frames to add: 4 per latent frame, a whole number of chunks (48 = 12 latent "
                    "frames = 4 chunks of 3).",
                ),
                io.Int.Input(
                    "frames_per_chunk",
                    default=3,
                    min=1,
                    max=21,
                    tooltip="Latent frames per chunk when starting from a latent; a state keeps its own.",
                ),
                *sampling.policy_inputs(),
                Combo(
                    "recache",
                    options=sampling.RECACHE,
                    default="none",
                    tooltip="On a prompt switch: none keeps the cached context as it was computed (free); "
                    "recent recomputes the last two chunks' context under the new prompt "
                    "(LongLive-style, smoother switch); all recomputes the whole cache.",
                ),
                *sampling.optional_inputs(),
                DSAState.Input("state", optional=True, tooltip="A DSA state from a sampler or extender."),
                io.Latent.Input(
                    "latent",
                    optional=True,
                    tooltip="Or an existing Wan video latent to continue (used when no state is connected).",
                ),
                *sampling.streaming_inputs(),
                *sampling.budget_inputs(),
            ],
            outputs=sampling.outputs(),
            hidden=[io.Hidden.unique_id, io.Hidden.prompt],
        )

    validate_inputs = sampling.VALIDATE_THRESHOLD

    @classmethod
    def execute(
        cls,
        model,
        positive,
        seed,
        add_frames,
        frames_per_chunk,
        policy,
        threshold_preset,
        threshold,
        min_steps,
        max_steps,
        schedule,
        cache_window,
        sink_frames,
        recache,
        head=None,
        ladder=None,
        state=None,
        latent=None,
        vae=None,
        mean_steps=2.5,
    ) -> io.NodeOutput:
        if add_frames % 4:
            raise DSAInputError(f"add_frames must be a multiple of 4 (one latent frame = 4 frames): got {add_frames}")
        problem = sampling.check_policy_widgets(min_steps, max_steps, cache_window, sink_frames, frames_per_chunk)
        if problem:
            raise DSAInputError(problem)
        toy_vae.check_vae_matches_model(vae, model, wan_config_of(model).dim)
        if state is None and latent is None:
            raise DSAInputError("connect either a DSA state (from DSA Confidence Sampler / Extender) or a video latent")
        streaming.check_images_wanted(vae, cls.hidden.prompt, cls.hidden.unique_id, sampling.outputs())
        chunk = state.state.chunk_frames if state is not None else frames_per_chunk
        new_latent_frames = add_frames // 4
        if new_latent_frames % chunk:
            raise DSAInputError(
                f"add_frames {add_frames} is {new_latent_frames} latent frames, not a whole number of "
                f"{chunk}-frame chunks: use {max(1, new_latent_frames // chunk) * chunk * 4}"
            )
        settings = sampling.SamplingSettings(
            seed=seed,
            policy=policy,
            threshold_preset=threshold_preset,
            threshold=threshold,
            min_steps=min_steps,
            max_steps=max_steps,
            schedule=schedule,
            cache_window=cache_window,
            sink_frames=sink_frames,
            ladder_sigmas=ladder,
            recache=recache,
            mean_steps=mean_steps,
        )
        if state is not None:
            start = state
        else:
            samples = latent["samples"]
            problem = latent_problem(samples, wan_config_of(model))
            if problem:
                raise DSAInputError(problem)
            start = sampling.NewVideo(
                latent_h=samples.shape[3],
                latent_w=samples.shape[4],
                chunk_frames=frames_per_chunk,
                context_latents=model.model.latent_format.process_in(samples.float()),
            )
        _, bundle, report = sampling.run(
            node_id=cls.hidden.unique_id,
            model=model,
            positive=positive,
            head=head,
            settings=settings,
            num_frames=new_latent_frames,
            start=start,
            vae=vae,
        )
        whole = sampling.to_host_latent(model, bundle.state.latents)
        images = streaming.images_output(bundle.decoded)
        return io.NodeOutput(whole, bundle, report, images)
