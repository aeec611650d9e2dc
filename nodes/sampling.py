"""What the DSA Sampler and the AR Frame Extender share: their common widgets, the checks on them, and one
run of dsa_core's sampler wired to the host (model management, progress bar, previews, interruption, events).

Inputs are never mutated: the host caches node outputs, so a state or head that came in is branched/copied.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import comfy.model_management
import comfy.utils
import latent_preview
import torch
from comfy_api.latest import io

from ..dsa_core import policies, schedules
from ..dsa_core.ar_sampler import SamplingInterrupted, sample_video
from ..dsa_core.ar_state import ARState
from .dsa_types import DSAHead, DSAReport, DSAState
from . import native_ar
from .host_model import DSAInputError, load_causal_wan, model_schedule_sigmas, text_context, wan_config_of

POLICIES = ["confidence", "fixed", "heuristic"]
PRESETS = list(policies.THRESHOLD_PRESETS) + ["custom"]
SCHEDULES = ["self_forcing", "causvid", "model"]  # "model": the MODEL's own sampling (native_ar.py)
RECACHE = ["none", "recent", "all"]
STEP_EVENT = "dsa.steps"
THRESHOLD_HELP = ("One scale, 0..1, everywhere in DSA: a chunk stops refining once the confidence of its least "
                  "confident frame reaches the threshold. Higher = more steps and quality, lower = faster. "
                  f"Presets: {', '.join(f'{k} {v}' for k, v in policies.THRESHOLD_PRESETS.items())}.")


def policy_inputs() -> list:
    """The step-allocation widgets, in the order saved workflows rely on."""
    return [
        io.Combo.Input("policy", options=POLICIES, default="confidence",
                       tooltip="confidence: DSA, the head decides each chunk's steps. fixed: every chunk takes "
                               "max_steps (4 = Self-Forcing). heuristic: no head needed, stops when the denoised "
                               "estimate stops changing (a training-free heuristic, not DSA's learned confidence)."),
        io.Combo.Input("threshold_preset", options=PRESETS, default="balanced",
                       tooltip=THRESHOLD_HELP + " custom: use the threshold value below."),
        io.Float.Input("threshold", default=policies.THRESHOLD_PRESETS["balanced"], min=0.0, max=1.0, step=0.01,
                       tooltip=THRESHOLD_HELP + " Used when threshold_preset is custom."),
        io.Int.Input("min_steps", default=1, min=1, max=12,
                     tooltip="Every chunk takes at least this many denoising steps."),
        io.Int.Input("max_steps", default=6, min=1, max=12,
                     tooltip="No chunk takes more. Above the schedule's base steps (4 for Self-Forcing), the extra "
                             "lower noise levels are the additional refinement hard chunks can get."),
        io.Combo.Input("schedule", options=SCHEDULES, default="self_forcing",
                       tooltip="Noise levels: self_forcing 1000/750/500/250 at shift 5; causvid 1000/757/522; "
                               "model: the MODEL's own sampling, 4 levels as BasicScheduler 'simple' gives them (what "
                               "the host's Sampler AR Video template walks; for Causal Forcing at shift 5 these are "
                               "Self-Forcing's). max_steps above the base steps adds lower levels to every "
                               "schedule. A DSA Noise Ladder connected to 'ladder' overrides this."),
        io.Int.Input("cache_window", default=0, min=0, max=1024,
                     tooltip="Latent frames of attention context kept in the KV cache (0 = the whole video). A "
                             "rolling window keeps memory and per-chunk time flat for long videos."),
        io.Int.Input("sink_frames", default=0, min=0, max=64,
                     tooltip="With a rolling window: the first latent frames kept in the cache for good "
                             "(attention sinks), so long videos stay anchored to their start."),
    ]


def optional_inputs() -> list:
    return [
        DSAHead.Input("head", optional=True,
                      tooltip="Confidence head from DSA Model Loader or DSA Head Loader; needed by policy confidence."),
        io.Sigmas.Input("ladder", optional=True,
                        tooltip="Custom noise levels from DSA Noise Ladder (1.0 first, decreasing; a trailing 0 is "
                                "ignored). Overrides schedule and caps max_steps at its length."),
    ]


def outputs() -> list:
    return [io.Latent.Output(display_name="latent"), DSAState.Output(display_name="state"),
            DSAReport.Output(display_name="report")]


def check_policy_widgets(policy, threshold_preset, threshold, min_steps, max_steps, cache_window, sink_frames,
                         frames_per_chunk) -> str | None:
    if policy not in POLICIES:
        return f"policy must be one of {POLICIES}"
    if threshold_preset not in PRESETS:
        return f"threshold_preset must be one of {PRESETS}"
    if not 0.0 <= float(threshold) <= 1.0:
        return f"threshold {threshold} is outside 0..1: {THRESHOLD_HELP}"
    if min_steps > max_steps:
        return f"min_steps ({min_steps}) is above max_steps ({max_steps}): lower min_steps or raise max_steps"
    if cache_window and cache_window < frames_per_chunk:
        return (f"cache_window {cache_window} is smaller than a chunk ({frames_per_chunk} latent frames): use 0 "
                f"(whole video) or at least {frames_per_chunk}")
    if sink_frames and not cache_window:
        return "sink_frames only apply with a rolling cache_window; set cache_window or set sink_frames to 0"
    return None


@dataclass
class StateBundle:
    """A DSA_STATE: the sampler's ARState plus what it needs to continue correctly."""
    state: ARState
    context: torch.Tensor      # the prompt embedding the state's text context came from
    config: object             # WanConfig of the model it was made with
    latent_format: object      # the host's latent format (process_out for the whole-video LATENT)


def build_ladder(schedule: str, max_steps: int, ladder_sigmas, model=None) -> schedules.Ladder:
    if ladder_sigmas is not None:
        sig = [float(s) for s in ladder_sigmas.flatten().tolist()]
        if sig and sig[-1] == 0.0:
            sig = sig[:-1]
        base = schedules.custom_ladder(sig, unit="sigma", base_steps=min(4, len(sig)))
        return base.truncated(min(max_steps, len(base)))
    if schedule == native_ar.MODEL_SCHEDULE:
        levels, shift = model_schedule_sigmas(model, native_ar.MODEL_SCHEDULE_STEPS)
        try:
            base = schedules.Ladder(tuple(levels), len(levels), "model")
        except schedules.LadderError as e:
            raise DSAInputError(f"schedule 'model' needs a flow-matching model whose sampling starts at noise level "
                                f"1 (Wan 2.1): {e}") from None
        return schedules.extended_ladder(base, max_steps, shift=shift)
    base = schedules.ladder_preset(schedule)
    return schedules.extended_ladder(base, max_steps)


def build_policy(policy, threshold_preset, threshold, min_steps, max_steps, ladder, head):
    thr = threshold if threshold_preset == "custom" else policies.THRESHOLD_PRESETS[threshold_preset]
    max_steps = min(max_steps, len(ladder))
    if policy == "confidence" and head is None:
        raise DSAInputError("policy 'confidence' needs a confidence head: connect DSA Model Loader's or DSA Head "
                            "Loader's head output, or choose policy 'fixed' or 'heuristic'")
    if policy == "fixed":
        return policies.FixedSteps(max_steps)
    return policies.make_policy(policy, threshold=thr, min_steps=min(min_steps, max_steps), max_steps=max_steps)


def prepare_head(head, config, device):
    """A private copy of the head on the sampling device (the cached input stays where it was)."""
    if head is None:
        return None
    head.check_generator(config)
    return copy.deepcopy(head).to(device=device, dtype=torch.float32)


def run(*, node_id, model, positive, head, seed, num_frames, latent_h=None, latent_w=None, chunk_frames=3,
        policy, threshold_preset, threshold, min_steps, max_steps, schedule, cache_window, sink_frames,
        ladder_sigmas=None, bundle: StateBundle | None = None, context_latents=None, recache="none",
        noise_source=None):
    """One sampling call through the host; returns (new frames in model space, StateBundle, report dict)."""
    config = wan_config_of(model)
    if bundle is not None and bundle.config != config:
        raise DSAInputError("this DSA state was made with a different model; connect the model that made it")
    ladder = build_ladder(schedule, max_steps, ladder_sigmas, model)
    step_policy = build_policy(policy, threshold_preset, threshold, min_steps, max_steps, ladder, head)
    cw, device, dtype = load_causal_wan(model)
    ctx = text_context(positive, device, dtype)
    if ctx.shape[-1] != config.text_dim:
        raise DSAInputError(f"the conditioning has {ctx.shape[-1]} channels but this model expects {config.text_dim} "
                            "(UMT5-XXL): encode the prompt with the Wan text encoder")
    head_dev = prepare_head(head, config, device)
    cap = step_policy.max_steps(ladder) + 1
    num_chunks = num_frames // chunk_frames
    pbar_total = max(1, num_chunks * cap)
    preview = latent_preview.prepare_callback(model, pbar_total)
    server = _server()

    def on_step(info):
        comfy.model_management.throw_exception_if_processing_interrupted()
        preview(info.chunk_number * cap + info.step - 1, info.x0, None, pbar_total)

    def on_chunk(info):
        preview((info.chunk_number + 1) * cap - 1, info.latent, None, pbar_total)
        if server is not None:
            rec = info.record.to_dict()
            server.send_sync(STEP_EVENT, {"node": node_id, "chunk": info.chunk_number, "num_chunks": num_chunks,
                                          "threshold": getattr(step_policy, "threshold", None),
                                          "policy": step_policy.name, "base_steps": ladder.base_steps,
                                          "record": rec}, server.client_id)

    text = cw.encode_text(ctx)
    kwargs = dict(num_frames=num_frames, ladder=ladder, policy=step_policy, seed=seed, head=head_dev,
                  callback=on_step, chunk_callback=on_chunk, should_stop=comfy.model_management.processing_interrupted)
    if bundle is not None:
        same_prompt = bundle.context.shape == ctx.shape and torch.equal(bundle.context.to(ctx), ctx)
        kwargs.update(state=bundle.state.to(device), text=None if same_prompt else text,
                      recache=_recache_value(recache, bundle))
    else:
        start = 0 if context_latents is None else context_latents.shape[2]
        kwargs["noise"] = native_ar.make_noise(noise_source, seed, total_frames=start + num_frames,
                                               chunk_frames=chunk_frames, start_frames=start)
        kwargs.update(text=text, latent_h=latent_h, latent_w=latent_w, chunk_frames=chunk_frames,
                      window_frames=cache_window or None, sink_frames=sink_frames, device=device, dtype=dtype,
                      context_latents=None if context_latents is None else context_latents.to(device, dtype))
    try:
        frames, state, record = sample_video(cw, **kwargs)
    except SamplingInterrupted:
        comfy.model_management.throw_exception_if_processing_interrupted()
        raise
    report = record.to_dict()
    report["summary"] = record.summary()
    # The state rests where ComfyUI keeps node outputs (CPU unless --gpu-only): a cached state must not pin
    # gigabytes of KV cache in VRAM that the host's model management cannot free.
    resting = comfy.model_management.intermediate_device()
    new_bundle = StateBundle(state.to(resting), (ctx if bundle is None or not same_prompt else bundle.context).to(resting),
                             config, model.model.latent_format)
    if server is not None:
        server.send_sync(STEP_EVENT, {"node": node_id, "done": True, "report": report}, server.client_id)
    return frames, new_bundle, report


def _recache_value(recache: str, bundle: StateBundle):
    if recache == "recent":
        if bundle.state.cache.window_frames is not None:
            raise DSAInputError("recache 'recent' needs a cache that keeps every frame (cache_window 0 when the "
                                "video was started); with a rolling window use recache 'all'")
        return 2 * bundle.state.chunk_frames
    return recache


def to_host_latent(model_or_format, frames: torch.Tensor) -> dict:
    """Model-space frames -> the host's LATENT (raw Wan VAE space), on the intermediate device."""
    fmt = getattr(getattr(model_or_format, "model", None), "latent_format", model_or_format)
    out = fmt.process_out(frames.float()).to(comfy.model_management.intermediate_device())
    return {"samples": out}


def _server():
    try:
        from server import PromptServer

        return PromptServer.instance
    except Exception:
        return None
