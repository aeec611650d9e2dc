"""What the DSA Sampler and the AR Frame Extender share: their common widgets, the checks on them, and one
run of dsa_core's sampler wired to the host (model management, progress bar, previews, interruption, events).

Inputs are never mutated: the host caches node outputs, so a state or head that came in is branched/copied.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import comfy.model_management
import comfy.utils
import latent_preview
import torch
from comfy_api.latest import io

from ..dsa_core import calibration, expected_cost, policies, schedules
from ..dsa_core.ar_sampler import SamplingInterrupted, sample_video
from ..dsa_core.ar_state import ARState
from ..dsa_core.heap import release_free_heap
from . import host_patches, input_checks, native_ar, resource_limits, streaming
from .combo_input import Combo
from .dsa_types import DSAHead, DSAReport, DSAState
from .host_model import DSAInputError, load_causal_wan, model_schedule_sigmas, text_context, wan_config_of

POLICIES = ["confidence", "fixed", "heuristic", "budget"]
HEURISTIC_TABLE = "dsa_calibration_heuristic"  # MODEL attachment: the generator file's heuristic table (loader)
PRESETS = list(policies.THRESHOLD_PRESETS) + [policies.CUSTOM_PRESET]
SCHEDULES = ["self_forcing", "causvid", "model"]  # "model": the MODEL's own sampling (native_ar.py)
RECACHE = ["none", "recent", "all"]
STEP_EVENT = "dsa.steps"
THRESHOLD_HELP = (
    "One scale, 0..1, everywhere in DSA: a chunk stops refining once the confidence of its least "
    "confident frame reaches the threshold. Higher = more steps and quality, lower = faster. "
    f"Presets: {', '.join(f'{k} {v}' for k, v in policies.THRESHOLD_PRESETS.items())}."
)


def policy_inputs() -> list:
    """The step-allocation widgets, in the order saved workflows rely on."""
    return [
        Combo(
            "policy",
            options=POLICIES,
            default="confidence",
            tooltip="confidence: DSA, the head decides each chunk's steps. fixed: every chunk takes "
            "max_steps (4 = Self-Forcing). heuristic: no head needed, stops when the denoised "
            "estimate stops changing (a training-free heuristic, not DSA's learned confidence). "
            "budget: a mean of mean_steps steps per chunk; the head (else the heuristic) decides which "
            "chunks stop early and which spend what earlier chunks saved.",
        ),
        Combo(
            "threshold_preset",
            options=PRESETS,
            default="balanced",
            tooltip=THRESHOLD_HELP + " custom: use the threshold value below.",
        ),
        io.Float.Input(
            "threshold",
            default=policies.THRESHOLD_PRESETS["balanced"],
            min=0.0,
            max=1.0,
            step=0.01,
            tooltip=THRESHOLD_HELP + " Used when threshold_preset is custom.",
        ),
        io.Int.Input(
            "min_steps", default=1, min=1, max=12, tooltip="Every chunk takes at least this many denoising steps."
        ),
        io.Int.Input(
            "max_steps",
            default=6,
            min=1,
            max=12,
            tooltip="No chunk takes more. Above the schedule's base steps (4 for Self-Forcing), the extra "
            "lower noise levels are the additional refinement hard chunks can get.",
        ),
        Combo(
            "schedule",
            options=SCHEDULES,
            default="self_forcing",
            tooltip="Noise levels: self_forcing 1000/750/500/250 at shift 5; causvid 1000/757/522; "
            "model: the MODEL's own sampling, 4 levels as BasicScheduler 'simple' gives them (what "
            "the host's Sampler AR Video template walks; for Causal Forcing at shift 5 these are "
            "Self-Forcing's). max_steps above the base steps adds lower levels to every "
            "schedule. A DSA Noise Ladder connected to 'ladder' overrides this. A shift node on the MODEL "
            "(ModelSamplingSD3) only applies with schedule model (the run says so when it is ignored).",
        ),
        io.Int.Input(
            "cache_window",
            default=0,
            min=0,
            max=1024,
            tooltip="Latent frames of attention context kept in the KV cache (0 = the whole video). A "
            "rolling window keeps memory and per-chunk time flat for long videos.",
        ),
        io.Int.Input(
            "sink_frames",
            default=0,
            min=0,
            max=64,
            tooltip="With a rolling window: the first latent frames kept in the cache for good "
            "(attention sinks), so long videos stay anchored to their start.",
        ),
    ]


@input_checks.validates("threshold")
def _threshold_at_queue_time(cls, threshold) -> bool | str:
    """The threshold's range and finiteness (the decorator): NaN passes the host's own range check, and a
    node's one queue-time validator takes the input users type into."""
    return True


# the queue-time validator of every node with policy_inputs() (sampler, extender, DSA Live)
VALIDATE_THRESHOLD = classmethod(_threshold_at_queue_time)


def budget_inputs() -> list:
    """Appended after every other input, optional (saved workflows and API prompts without it keep working)."""
    return [
        io.Float.Input(
            "mean_steps",
            default=2.5,
            min=1.0,
            max=12.0,
            step=0.1,
            optional=True,
            tooltip="policy budget: the mean denoising steps per chunk the video may spend (4 = the fixed "
            "Self-Forcing cost; 2.5 = 70 % of its NFE). Confident chunks stop early, hard chunks spend what "
            "earlier chunks saved; the mean never ends above it, and an extender continuing the state keeps it.",
        )
    ]


def optional_inputs() -> list:
    return [
        DSAHead.Input(
            "head",
            optional=True,
            tooltip="Confidence head from DSA Model Loader or DSA Head Loader; needed by policy confidence.",
        ),
        io.Sigmas.Input(
            "ladder",
            optional=True,
            tooltip="Custom noise levels from DSA Noise Ladder (1.0 first, decreasing; a trailing 0 is "
            "ignored). Overrides schedule and caps max_steps at its length.",
        ),
    ]


def outputs() -> list:
    return [
        io.Latent.Output(display_name="latent"),
        DSAState.Output(display_name="state"),
        DSAReport.Output(display_name="report"),
        *streaming_outputs(),
    ]


def streaming_inputs() -> list:
    """Appended after every other input (saved workflows keep their widgets and links)."""
    return [
        io.Vae.Input(
            "vae",
            optional=True,
            tooltip="Optional: the Wan 2.1 VAE (Load VAE; DSA Toy VAE for the toy model). Each chunk is "
            "decoded as soon as it is generated: the frames play live on this node and come "
            "out as images, no separate VAE Decode needed. On the sampler it also encodes "
            "start_image. A Wan 2.1 tiny VAE (taew2_1, lighttaew2_1) decodes many times faster "
            "for a live view; decode the latent with the Wan 2.1 VAE for the final video.",
        )
    ]


def streaming_outputs() -> list:
    return [
        io.Image.Output(
            display_name="images",
            tooltip="The decoded video (the whole video, as the latent output), when a vae is connected.",
        )
    ]


def check_policy_widgets(min_steps, max_steps, cache_window, sink_frames, frames_per_chunk) -> str | None:
    """The rules between step and cache widgets, checked when the node runs (nodes/input_checks.py says why)."""
    if min_steps > max_steps:
        return f"min_steps ({min_steps}) is above max_steps ({max_steps}): lower min_steps or raise max_steps"
    if cache_window and cache_window < frames_per_chunk:
        return (
            f"cache_window {cache_window} is smaller than a chunk ({frames_per_chunk} latent frames): use 0 "
            f"(whole video) or at least {frames_per_chunk}"
        )
    if sink_frames and not cache_window:
        return "sink_frames only apply with a rolling cache_window; set cache_window or set sink_frames to 0"
    return None


@dataclass
class StateBundle:
    """A DSA_STATE: the sampler's ARState plus what it needs to continue correctly."""

    state: ARState
    context: torch.Tensor  # the prompt embedding the state's text context came from
    config: object  # WanConfig of the model it was made with
    latent_format: object  # the host's latent format (process_out for the whole-video LATENT)
    decoded: object = None  # streaming.DecodedVideo: the decoder's cache and frames, when a VAE decoded them


@dataclass(frozen=True, eq=False)
class SamplingSettings:
    """The widgets both sampling nodes share, read once in ``execute``; what the run derives from them."""

    seed: int
    policy: str
    threshold_preset: str
    threshold: float
    min_steps: int
    max_steps: int
    schedule: str
    cache_window: int
    sink_frames: int
    ladder_sigmas: torch.Tensor | None = None  # the optional 'ladder' input (host SIGMAS)
    recache: str = "none"
    noise: str | None = None  # native_ar.NOISE_SOURCES (None = DSA's per-chunk noise)
    mean_steps: float = 2.5  # policy 'budget'

    def ladder(self, model) -> schedules.Ladder:
        """The noise levels: a connected ladder, the MODEL's own sampling (schedule 'model'), or a preset."""
        if self.ladder_sigmas is None and self.schedule == native_ar.MODEL_SCHEDULE:
            levels, shift = model_schedule_sigmas(model, native_ar.MODEL_SCHEDULE_STEPS)
            try:
                base = schedules.Ladder(tuple(levels), len(levels), "model")
            except schedules.LadderError as e:
                raise DSAInputError(
                    f"schedule 'model' needs a flow-matching model whose sampling starts at noise "
                    f"level 1 (Wan 2.1): {e}"
                ) from None
            return schedules.extended_ladder(base, self.max_steps, shift=shift)
        sig = None if self.ladder_sigmas is None else self.ladder_sigmas.flatten().tolist()
        return schedules.build_ladder(self.schedule, max_steps=self.max_steps, sigmas=sig)

    def expected(self, ladder: schedules.Ladder, head, model) -> dict:
        """What this run should cost, from the calibration table of the confidence it reads
        (dsa_core.expected_cost; the same answer the front end shows before the run)."""
        return expected_cost.expected_cost(
            self.policy,
            self.threshold_preset,
            self.threshold,
            mean_steps=self.mean_steps,
            max_steps=min(self.max_steps, len(ladder)),
            base_steps=ladder.base_steps,
            head_table=getattr(head, "calibration", None),
            heuristic_table=heuristic_table(model),
            has_head=head is not None,
        )

    def step_policy(self, ladder: schedules.Ladder, head, model=None) -> policies.StepPolicy:
        max_steps = min(self.max_steps, len(ladder))
        if self.policy == "confidence" and head is None:
            raise DSAInputError(
                "policy 'confidence' needs a confidence head: connect DSA Model Loader's or DSA Head "
                "Loader's head output, or choose policy 'fixed' or 'heuristic'"
            )
        min_steps = min(self.min_steps, max_steps)
        if self.policy == "budget" and not min_steps <= self.mean_steps <= max_steps:
            raise DSAInputError(
                f"mean_steps {self.mean_steps} must lie between min_steps ({min_steps}) and max_steps "
                f"({max_steps}): change mean_steps or the step limits"
            )
        table, source = expected_cost.table_for(
            self.policy, getattr(head, "calibration", None), heuristic_table(model), head is not None
        )
        return policies.make_policy(
            self.policy,
            threshold=self.threshold_preset,
            custom_threshold=self.threshold,
            min_steps=min_steps,
            max_steps=max_steps,
            steps=max_steps,
            table=table,
            mean_steps=self.mean_steps,
            budget_confidence=source or policies.CONFIDENCE_HEURISTIC,
        )


def heuristic_table(model) -> calibration.CalibrationTable | None:
    """The heuristic policy's calibration table of this generator: attached to the MODEL by DSA Model Loader from
    the file's metadata (other loaders: none)."""
    get = getattr(model, "get_attachment", None)
    return get(HEURISTIC_TABLE) if get is not None else None


@dataclass(frozen=True, eq=False)
class NewVideo:
    """Where a run without a DSA state starts: the latent size, the chunking, optional context frames."""

    latent_h: int
    latent_w: int
    chunk_frames: int
    context_latents: torch.Tensor | None = None  # model-space frames committed first


def prepare_head(head, config, device):
    """A private copy of the head on the sampling device (the cached input stays where it was)."""
    if head is None:
        return None
    head.check_generator(config)
    return copy.deepcopy(head).to(device=device, dtype=torch.float32)


def run(
    *,
    node_id,
    model,
    positive,
    head,
    settings: SamplingSettings,
    num_frames: int,
    start: NewVideo | StateBundle,
    vae=None,
):
    """One sampling call through the host: ``num_frames`` new latent frames from ``start`` (a new video or a
    DSA state to continue); returns (new frames in model space, StateBundle, report dict).
    With a ``vae`` every chunk is decoded as it is committed (nodes.streaming); the bundle carries the frames."""
    t_start = time.perf_counter()
    bundle = start if isinstance(start, StateBundle) else None
    config = wan_config_of(model)
    if bundle is not None and bundle.config != config:
        raise DSAInputError("this DSA state was made with a different model; connect the model that made it")
    ladder = settings.ladder(model)
    step_policy = settings.step_policy(ladder, head, model)
    expected = settings.expected(ladder, head, model)
    cw, device, dtype = load_causal_wan(model)
    patches = _host_patches(model, cw, settings)
    patches.log(node_id)
    size = _video_size(start, settings, positive, num_frames)
    resource_limits.check_memory(model, config, device=device, dtype=dtype, **size)
    resource_limits.stop_between_blocks(cw)
    ctx = text_context(positive, device, dtype)
    if ctx.shape[-1] != config.text_dim:
        raise DSAInputError(
            f"the conditioning has {ctx.shape[-1]} channels but this model expects {config.text_dim} "
            "(UMT5-XXL): encode the prompt with the Wan text encoder"
        )
    head_dev = prepare_head(head, config, device)
    cap = step_policy.max_steps(ladder) + 1
    chunk_frames = bundle.state.chunk_frames if bundle is not None else start.chunk_frames
    num_chunks = num_frames // chunk_frames
    pbar_total = max(1, num_chunks * cap)
    preview = latent_preview.prepare_callback(model, pbar_total)
    server = prompt_server()
    given = None if bundle is not None else start.context_latents
    stream = streaming.open_stream(
        vae,
        node_id=node_id,
        model=model,
        server=server,
        t_start=t_start,
        bundle=bundle,
        new_frames=num_frames,
        chunk_frames=chunk_frames,
        context_latents=None if given is None else given.to(dtype),
    )

    def on_step(info):
        comfy.model_management.throw_exception_if_processing_interrupted()
        preview(info.chunk_number * cap + info.step - 1, info.x0, None, pbar_total)

    def on_chunk(info):
        preview((info.chunk_number + 1) * cap - 1, info.latent, None, pbar_total)
        if server is not None:
            rec = info.record.to_dict()
            server.send_sync(
                STEP_EVENT,
                {
                    "node": node_id,
                    "chunk": info.chunk_number,
                    "num_chunks": num_chunks,
                    "threshold": rec.get("threshold", getattr(step_policy, "threshold", None)),
                    "policy": step_policy.name,
                    "base_steps": ladder.base_steps,
                    "budget": getattr(step_policy, "mean_steps", None),
                    "expected": expected,
                    "record": rec,
                },
                server.client_id,
            )
        if stream is not None:
            stream.add_chunk(info.latent, info.chunk_number)
        release_free_heap(device)  # on the CPU, freed attention blocks back to the OS

    text = cw.encode_text(ctx)
    kwargs = dict(
        num_frames=num_frames,
        ladder=ladder,
        policy=step_policy,
        seed=settings.seed,
        head=head_dev,
        callback=on_step,
        chunk_callback=on_chunk,
        should_stop=comfy.model_management.processing_interrupted,
    )
    if bundle is not None:
        same_prompt = bundle.context.shape == ctx.shape and torch.equal(bundle.context.to(ctx), ctx)
        kwargs.update(
            state=bundle.state.to(device),
            text=None if same_prompt else text,
            recache=_recache_value(settings.recache, bundle),
        )
    else:
        n_given = 0 if given is None else given.shape[2]
        kwargs["noise"] = native_ar.make_noise(
            settings.noise,
            settings.seed,
            total_frames=n_given + num_frames,
            chunk_frames=start.chunk_frames,
            start_frames=n_given,
        )
        kwargs.update(
            text=text,
            latent_h=start.latent_h,
            latent_w=start.latent_w,
            chunk_frames=start.chunk_frames,
            window_frames=settings.cache_window or None,
            sink_frames=settings.sink_frames,
            device=device,
            dtype=dtype,
            context_latents=None if given is None else given.to(device, dtype),
        )
    graphs_before = host_patches.compiled_graph_count()
    model.pre_run()  # the patcher's pre-run callbacks, as the host's sampler runs them
    try:
        frames, state, record = sample_video(cw, **kwargs)
    except SamplingInterrupted:
        comfy.model_management.throw_exception_if_processing_interrupted()
        raise
    finally:
        model.cleanup()
    if cw.compiled:
        patches.compiled_graphs = host_patches.compiled_graph_count() - graphs_before
    report = record.to_dict()
    report["summary"] = record.summary()
    report["host_patches"] = patches.to_dict()
    report["expected"] = expected
    if expected["note"]:
        report["summary"] += "\n" + expected["note"]
    # The state rests where ComfyUI keeps node outputs (CPU unless --gpu-only): a cached state must not pin
    # gigabytes of KV cache in VRAM that the host's model management cannot free.
    resting = comfy.model_management.intermediate_device()
    context = ctx if bundle is None or not same_prompt else bundle.context
    new_bundle = StateBundle(state.to(resting), context.to(resting), config, model.model.latent_format)
    if stream is not None:
        new_bundle.decoded = stream.finish(report)
    if server is not None:
        server.send_sync(STEP_EVENT, {"node": node_id, "done": True, "report": report}, server.client_id)
    return frames, new_bundle, report


def _host_patches(model, cw, settings: SamplingSettings) -> host_patches.HostPatches:
    """What of the MODEL's patches this run applies; a shift patch counts as walked when the ladder's base levels
    are the ones the patched sampling gives (schedule 'model', or a preset that happens to match it)."""
    walks = settings.ladder_sigmas is None and settings.schedule == native_ar.MODEL_SCHEDULE
    if not walks and host_patches.SAMPLING_PATCH in model.object_patches:
        if settings.ladder_sigmas is None:
            full = schedules.ladder_preset(settings.schedule)  # untruncated: max_steps does not hide a difference
        else:
            full = schedules.build_ladder(sigmas=settings.ladder_sigmas.flatten().tolist())
        levels, _ = model_schedule_sigmas(model, full.base_steps)
        base = full.sigmas[: full.base_steps]
        walks = len(levels) == len(base) and all(abs(a - b) < 1e-4 for a, b in zip(levels, base))
    what = "connected ladder" if settings.ladder_sigmas is not None else f"schedule '{settings.schedule}'"
    return host_patches.survey(model, cw.transformer_options, walks, what)


def _video_size(start: NewVideo | StateBundle, settings: SamplingSettings, positive, num_frames: int) -> dict:
    """The sizes the memory estimate needs, for a new video, a continued state or a continued latent."""
    if isinstance(start, StateBundle):
        st = start.state
        return dict(
            latent_h=st.latent_h,
            latent_w=st.latent_w,
            chunk_frames=st.chunk_frames,
            total_frames=st.frames + num_frames,
            window_frames=st.cache.window_frames,
            sink_frames=st.cache.sink_frames,
            batch=st.batch,
        )
    if start.context_latents is None:
        ctx, batch = 0, (positive[0][0].shape[0] if positive else 1)
    else:
        ctx, batch = start.context_latents.shape[2], start.context_latents.shape[0]
    return dict(
        latent_h=start.latent_h,
        latent_w=start.latent_w,
        chunk_frames=start.chunk_frames,
        total_frames=ctx + num_frames,
        window_frames=settings.cache_window or None,
        sink_frames=settings.sink_frames if settings.cache_window else 0,
        batch=batch,
    )


def _recache_value(recache: str, bundle: StateBundle):
    if recache == "recent":
        if bundle.state.cache.window_frames is not None:
            raise DSAInputError(
                "recache 'recent' needs a cache that keeps every frame (cache_window 0 when the "
                "video was started); with a rolling window use recache 'all'"
            )
        return 2 * bundle.state.chunk_frames
    return recache


def to_host_latent(model_or_format, frames: torch.Tensor) -> dict:
    """Model-space frames -> the host's LATENT (raw Wan VAE space), on the intermediate device."""
    fmt = getattr(getattr(model_or_format, "model", None), "latent_format", model_or_format)
    out = fmt.process_out(frames.float()).to(comfy.model_management.intermediate_device())
    return {"samples": out}


def prompt_server():
    """The host's PromptServer (None when running without one, e.g. in-process tests)."""
    try:
        from server import PromptServer

        return PromptServer.instance
    except Exception:
        return None
