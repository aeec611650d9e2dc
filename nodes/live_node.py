"""DSA Live: generates chunk after chunk, playing on the node as it goes, until Stop (or its frame limit), while the
user changes the prompt and the threshold. Stop returns the video as LATENT, IMAGE, DSA_STATE and DSA_REPORT, so
the graph saves it or an extender continues it; Cancel interrupts as for any node.

The loop is dsa_core.live.run_live (the AR sampler's own chunk functions); this node wires it to the host: the
model, the VAE stream (nodes.streaming), the text encoder for typed prompts, the GUI's requests
(nodes.live_session, through the pack's routes) and the events the front end draws (sent to every browser tab:
a live run is watched, not owned, by the tab that queued it).
"""

from __future__ import annotations

import re
import time

import comfy.model_management
import folder_paths
from comfy_api.latest import io

from ..dsa_core import prompt_files
from ..dsa_core.ar_sampler import SamplingInterrupted, prepare_state
from ..dsa_core.heap import release_free_heap
from ..dsa_core.live import run_live
from . import live_session, resource_limits, sampling, streaming
from .combo_input import Combo
from .host_model import DSAInputError, load_causal_wan, text_context, wan_config_of
from .model_folders import PROMPTS
from .sampler_nodes import check_video_shape

LIVE_EVENT = "dsa.live"  # {node, change, state}: a prompt or threshold change took effect; {node, done, state}
DEFAULT_WINDOW = 21  # latent frames of attention context (Self-Forcing's 81-frame video) in the rolling cache
BUFFER_CHUNKS = 64  # the frame buffer's first size, in chunks, when the run has no frame limit (it then doubles)


def live_policy_inputs() -> list:
    """The sampler's step-allocation widgets but the budget policy; the cache window defaults to a rolling one (a
    live run needs it)."""
    inputs = sampling.policy_inputs()
    p = next(k for k, x in enumerate(inputs) if x.id == "policy")
    inputs[p] = Combo(  # a step budget needs the run's length, which a live run does not know
        "policy",
        options=[o for o in sampling.POLICIES if o != "budget"],
        default="confidence",
        tooltip=inputs[p].tooltip.split(" budget:")[0],
    )
    i = next(k for k, x in enumerate(inputs) if x.id == "cache_window")
    inputs[i] = io.Int.Input(
        "cache_window",
        default=DEFAULT_WINDOW,
        min=1,
        max=1024,
        tooltip="Latent frames of attention context kept in the KV cache (a rolling window: a live run's memory "
        "stays flat however long it plays).",
    )
    return inputs


def _norm(text: str) -> str:
    t = re.sub(r"\.safetensors$", "", text.strip().lower())
    t = re.sub(r"[_\-\s]+", " ", t).strip()
    t = re.sub(r"^toy ", "", t)
    return re.sub(r"^(a|an|the) ", "", t)


def stored_prompt_resolver():
    """Without a text encoder a typed prompt names a stored prompt (models/dsa_prompts): by file name or by the
    text it was encoded from, ignoring case, underscores and a leading article ('red square drifting right on
    black' finds toy_red_square_drifting_right_on_black)."""
    names = folder_paths.get_filename_list(PROMPTS)

    def resolve(text: str):
        want = _norm(text)
        loaded = []
        for name in names:
            pf = prompt_files.load_prompt_embedding(folder_paths.get_full_path_or_raise(PROMPTS, name))
            if want in (_norm(name), _norm(pf.prompt or "")):
                return pf.context
            loaded.append(pf.prompt or name)
        raise live_session.LiveRefused(
            f"no text encoder is connected to this DSA Live node, so a typed prompt must be one of the stored "
            f"prompts (models/dsa_prompts): {'; '.join(loaded)}. Or connect a CLIP (Load CLIP, type wan) to its "
            "clip input to type any prompt"
        )

    return resolve


class _Broadcast:
    """The server as the stream sees it: every event to all tabs, and the frames kept in the session."""

    client_id = None

    def __init__(self, server, session):
        self.server, self.session = server, session

    def send_sync(self, event, data, sid=None):
        if event == streaming.FRAMES_EVENT:
            self.session.frames_sent(data)
        if self.server is not None:
            self.server.send_sync(event, data, None)


class DSALive(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DSALive",
            display_name="DSA Live",
            category="DSA",
            description="Generates a video chunk after chunk and plays it on the node while it is made, until "
            "you press Stop (or max_frames is reached). While it runs, type a new prompt or move the threshold: "
            "each takes effect at the next chunk and is marked on the chart. Stop returns the video (latent, "
            "images, a state an extender continues, a report).",
            inputs=[
                io.Model.Input("model", tooltip="An autoregressive Wan 2.1 T2V model, as for the sampler."),
                io.Conditioning.Input("positive", tooltip="The prompt the video starts with."),
                io.Int.Input(
                    "seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True, tooltip="Noise seed."
                ),
                io.Int.Input("width", default=832, min=16, max=8192, step=16, tooltip="Video width (multiple of 16)."),
                io.Int.Input(
                    "height", default=480, min=16, max=8192, step=16, tooltip="Video height (multiple of 16)."
                ),
                io.Int.Input("frames_per_chunk", default=3, min=1, max=21, tooltip="Latent frames generated together."),
                io.Int.Input(
                    "max_frames",
                    default=961,
                    min=0,
                    max=10_000_000,
                    tooltip="Stop by itself after this many frames, 4 per latent frame (961 = 60 s at Wan's 16 "
                    "fps); 0 = play until Stop.",
                ),
                *live_policy_inputs(),
                Combo(
                    "recache",
                    options=["none", "all"],
                    default="none",
                    tooltip="On a prompt change: none keeps the cached context as computed (free); all recomputes "
                    "the cache under the new prompt (as the extender does: one pass per chunk so far).",
                ),
                *sampling.optional_inputs(),
                io.Vae.Input(
                    "vae",
                    optional=True,
                    tooltip="The VAE the live player shows (a Wan 2.1 tiny VAE such as lighttaew2_1 keeps up "
                    "best; DSA Toy VAE for the toy model). Without one nothing plays.",
                ),
                io.Clip.Input(
                    "clip",
                    optional=True,
                    tooltip="The Wan text encoder (Load CLIP, type wan): encodes prompts typed while it runs. "
                    "Without it a typed prompt must name a stored prompt (models/dsa_prompts).",
                ),
                io.String.Input(
                    "live_prompt",
                    default="",
                    multiline=True,
                    tooltip="While it runs: type a new prompt here and press Enter (or leave the box) to switch "
                    "to it at the next chunk.",
                ),
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
        frames_per_chunk,
        max_frames,
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
        vae=None,
        clip=None,
        live_prompt="",
    ) -> io.NodeOutput:
        problem = check_video_shape(width, height, 4 * frames_per_chunk - 3, frames_per_chunk)
        problem = problem or sampling.check_policy_widgets(
            min_steps, max_steps, cache_window, sink_frames, frames_per_chunk
        )
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
            recache=recache,
        )
        frames, bundle, report = run_node(
            node_id=cls.hidden.unique_id,
            model=model,
            positive=positive,
            head=head,
            settings=settings,
            latent_h=height // 8,
            latent_w=width // 8,
            chunk_frames=frames_per_chunk,
            max_chunks=None if not max_frames else -(-((max_frames - 1) // 4 + 1) // frames_per_chunk),
            vae=vae,
            clip=clip,
        )
        images = streaming.images_output(bundle.decoded)
        return io.NodeOutput(sampling.to_host_latent(model, frames), bundle, report, images)


def run_node(*, node_id, model, positive, head, settings, latent_h, latent_w, chunk_frames, max_chunks, vae, clip):
    """The live run through the host; returns (frames in model space, StateBundle, report)."""
    t_start = time.perf_counter()
    config = wan_config_of(model)
    ladder = settings.ladder(model)
    step_policy = settings.step_policy(ladder, head, model)
    cw, device, dtype = load_causal_wan(model)
    resource_limits.check_memory(
        model,
        config,
        device=device,
        dtype=dtype,
        latent_h=latent_h,
        latent_w=latent_w,
        chunk_frames=chunk_frames,
        total_frames=settings.cache_window + settings.sink_frames,
        window_frames=settings.cache_window,
        sink_frames=settings.sink_frames,
        batch=positive[0][0].shape[0] if positive else 1,
    )
    resource_limits.stop_between_blocks(cw)
    current = {"ctx": _checked_context(text_context(positive, device, dtype), config)}
    head_dev = sampling.prepare_head(head, config, device)
    work, _ = prepare_state(
        cw,
        cw.encode_text(current["ctx"]),
        num_frames=0,
        latent_h=latent_h,
        latent_w=latent_w,
        chunk_frames=chunk_frames,
        seed=settings.seed,
        window_frames=settings.cache_window,
        sink_frames=settings.sink_frames,
        device=device,
        dtype=dtype,
    )
    server = sampling.prompt_server()
    session = live_session.open_session(
        node_id,
        prompt="(the positive input)",
        threshold=getattr(step_policy, "threshold", None),
        has_threshold=hasattr(step_policy, "threshold"),
        resolve_prompt=(lambda text: text) if clip is not None else stored_prompt_resolver(),
        frame_rate=getattr(vae, "frame_rate", streaming.WAN_FRAME_RATE),
    )
    events = _Broadcast(server, session)
    stream = None
    if vae is not None:
        capacity = (max_chunks or BUFFER_CHUNKS) * chunk_frames
        stream = streaming.ChunkStream(
            node_id=node_id,
            vae=vae,
            latent_format=model.model.latent_format,
            server=events,
            t_start=t_start,
            total_latent_frames=None,
            capacity_latent_frames=min(capacity, BUFFER_CHUNKS * chunk_frames),
        )
    live = {"threshold": getattr(step_policy, "threshold", None), "changes": []}

    def encode_prompt(payload):
        if isinstance(payload, str):  # typed, with a text encoder: encoded now, at the chunk boundary
            cond = clip.encode_from_tokens_scheduled(clip.tokenize(payload))
            ctx = text_context(cond, device, dtype)
        else:  # a stored prompt's embedding
            ctx = payload.to(device=device, dtype=dtype)
        current["ctx"] = _checked_context(ctx, config)
        return cw.encode_text(current["ctx"])

    def on_step(info):
        comfy.model_management.throw_exception_if_processing_interrupted()

    def on_change(change):
        d = change.to_dict()
        live["changes"].append(d)
        if change.kind == "threshold":
            live["threshold"] = change.value
        session.changed(d)
        events.send_sync(LIVE_EVENT, {"node": node_id, "change": d})

    def on_chunk(info):
        release_free_heap(device)  # on the CPU, freed attention blocks back to the OS
        rec = info.record.to_dict()
        marks = [c for c in live["changes"] if c["chunk"] == info.chunk_number]
        events.send_sync(
            sampling.STEP_EVENT,
            {
                "node": node_id,
                "chunk": info.chunk_number,
                "num_chunks": max_chunks or info.chunk_number + 1,
                "threshold": live["threshold"],
                "policy": step_policy.name,
                "base_steps": ladder.base_steps,
                "record": rec,
                "live": True,
                "changes": marks,
            },
        )
        session.chunk_done(info.chunk_number, {**rec, "changes": marks}, info.frame_start + info.latent.shape[2])
        if stream is not None:
            stream.add_chunk(info.latent, info.chunk_number)

    stop_reason = "cancelled"
    try:
        result = run_live(
            cw,
            work,
            ladder=ladder,
            policy=step_policy,
            controls=session.controls,
            encode_prompt=encode_prompt,
            head=head_dev,
            recache=settings.recache,
            max_chunks=max_chunks,
            callback=on_step,
            chunk_callback=on_chunk,
            change_callback=on_change,
            should_cancel=comfy.model_management.processing_interrupted,
        )
        stop_reason = result.stop_reason
    except SamplingInterrupted:
        comfy.model_management.throw_exception_if_processing_interrupted()
        raise
    finally:
        session.finished(stop_reason)
    if stream is not None:
        stream.end(len(result.record.chunks) - 1 if result.record.chunks else None)
    record = result.record
    report = record.to_dict()
    report["summary"] = record.summary() + f"; live: {len(record.chunks)} chunks, {len(result.changes)} changes"
    report["live"] = {
        "stop_reason": result.stop_reason,
        "changes": [c.to_dict() for c in result.changes],
        "chunks": len(record.chunks),
    }
    resting = comfy.model_management.intermediate_device()
    bundle = sampling.StateBundle(
        result.state.to(resting), current["ctx"].to(resting), config, model.model.latent_format
    )
    if stream is not None:
        bundle.decoded = stream.finish(report)
    done = {"node": node_id, "done": True, "report": report, "live": True}
    events.send_sync(sampling.STEP_EVENT, done)
    events.send_sync(LIVE_EVENT, {"node": node_id, "done": True, "stop_reason": result.stop_reason})
    return result.latent, bundle, report


def _checked_context(ctx, config):
    if ctx.shape[-1] != config.text_dim:
        raise DSAInputError(
            f"the conditioning has {ctx.shape[-1]} channels but this model expects {config.text_dim} "
            "(UMT5-XXL): encode the prompt with the Wan text encoder"
        )
    return ctx
