"""DSA's autoregressive sampler: chunk by chunk, each chunk denoised for as many steps as its policy
allows, then committed to the KV cache with one t = 0 pass.

Per chunk (Self-Forcing facts): x = noise at s_0 = 1; step k: v = model(x, 1000 s_k), x0_hat = x - s_k v;
if the policy stops (or the step budget is spent) x0_hat is the chunk's output, else
x = (1 - s_{k+1}) x0_hat + s_{k+1} * fresh noise (flow_step.denoise / renoise, shared with training).
Then model(x0_hat, t = 0) writes the clean K/V.
With FixedSteps (or a confidence threshold no confidence reaches, and max_steps = 4) this is exactly
Self-Forcing's sampler. The confidence is read after every step from the same forward's hidden states
(no extra generator call); all frames of a chunk, and all samples of a batch, move together
(reconstruction: the chunk's confidence is the min over its frames and the batch).

The pieces, usable on their own (training rollouts, benchmarks, streaming callers):
``prepare_state`` (the working branch of a state, or a new one), ``denoise_chunk`` (one chunk under the
policy: its x0_hat and ChunkRecord), ``commit_chunk`` (the t = 0 pass and the bookkeeping). ``sample_video``
is the loop over them.

Randomness comes only from ``noise`` keyed by (the chunk's first absolute latent frame, step index)
(see noise.py), so results do not depend on earlier chunks' step counts, on splitting a video into
several calls, or on whether earlier frames were generated or given as context latents.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Mapping

import torch
from torch import Tensor

from .ar_state import (
    ARState,
    append_committed,
    check_latents_match,
    commit_clean,
    ensure_capacity,
    new_state,
    switch_prompt,
)
from .finite import check_step
from .flow_step import denoise, renoise
from .noise import SeededNoise
from .policies import CONFIDENCE_HEAD, CONFIDENCE_HEURISTIC, FixedSteps, StepPolicy, heuristic_confidence
from .records import ChunkRecord, RunRecord
from .schedules import Ladder, self_forcing_ladder


class ChunkInterrupted(Exception):
    """``should_stop()`` returned True inside ``denoise_chunk``; carries the chunk's partial ``record``."""

    def __init__(self, record: ChunkRecord):
        super().__init__(f"chunk {record.chunk_index} interrupted after {record.steps} steps")
        self.record = record


class SamplingInterrupted(Exception):
    """``should_stop()`` returned True between two steps. Carries the chunks finished before it
    (``latent`` [B, C, T_done, H, W]) and their ``record``; the state passed in is untouched and no
    half-written state is returned (the interrupted chunk already overwrote cache slots)."""

    def __init__(self, latent: Tensor, record: RunRecord):
        super().__init__(f"sampling interrupted after {len(record.chunks)} chunks")
        self.latent, self.record = latent, record


@dataclass
class StepInfo:
    """Passed to ``callback`` after every denoising step (progress bars, previews, streaming)."""

    chunk_index: int  # absolute chunk index
    chunk_number: int  # 0-based position of the chunk in this call
    num_chunks: int  # chunks in this call
    step: int  # steps done in this chunk (1-based)
    max_steps: int  # the policy's cap for this chunk
    sigma: float
    x0: Tensor  # x0_hat of this step [B, C, Tc, H, W]
    confidence: Tensor | None  # per frame [B, Tc] (None when not computed)
    will_stop: bool  # this step is the chunk's last
    steps_done_total: int  # denoising steps done in this call so far
    steps_max_total: int  # num_chunks * max_steps: an upper bound for progress bars


@dataclass
class ChunkInfo:
    """Passed to ``chunk_callback`` after a chunk is committed."""

    chunk_index: int
    chunk_number: int
    num_chunks: int
    frame_start: int
    latent: Tensor  # the chunk's frames [B, C, Tc, H, W]
    record: ChunkRecord


def _sync(device) -> None:
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def check_policy_head(policy: StepPolicy, head) -> None:
    if policy.confidence_source == CONFIDENCE_HEAD and head is None:
        raise ValueError(
            f"the {policy.name} policy needs a trained confidence head (head=...); without one "
            "use FixedSteps or the HeuristicPolicy (a training-free heuristic)"
        )


def prepare_state(
    model,
    text=None,
    *,
    num_frames: int,
    latent_h: int | None = None,
    latent_w: int | None = None,
    chunk_frames: int = 3,
    seed: int | None = None,
    noise=None,
    state: ARState | None = None,
    context_latents: Tensor | None = None,
    batch: int | None = None,
    window_frames: int | None = None,
    sink_frames: int = 0,
    recache="none",
    device=None,
    dtype=None,
) -> tuple[ARState, int]:
    """The working state for ``num_frames`` more frames: a branch of ``state`` (its prompt switched to ``text``
    when that differs, ``context_latents`` committed) or a new state; its cache has room for them and its
    noise source is set. Returns (state, t = 0 passes spent on priming / recache). ``state`` is not modified."""
    if num_frames < 0 or (state is None and num_frames % chunk_frames):
        raise ValueError(f"num_frames ({num_frames}) must be a multiple of chunk_frames ({chunk_frames})")
    extra_nfe = 0
    if state is not None:
        chunk_frames = state.chunk_frames
        if num_frames % chunk_frames:
            raise ValueError(
                f"num_frames ({num_frames}) must be a multiple of the state's chunk_frames ({chunk_frames})"
            )
        if noise is None:
            noise = SeededNoise(seed) if seed is not None else (state.noise or SeededNoise(0))
        work = state.snapshot()
        if text is not None and text is not state.text:
            work, n = switch_prompt(model, work, text, recache)
            extra_nfe += n
        if context_latents is not None:
            check_latents_match(work, context_latents)
            extra_nfe += append_committed(model, work, context_latents, chunk_frames)
    else:
        if text is None:
            raise ValueError("text (a TextContext) is required when not continuing a state")
        if context_latents is not None:
            b, _, _, latent_h, latent_w = context_latents.shape
            device = device or context_latents.device
            dtype = dtype or context_latents.dtype
        if latent_h is None or latent_w is None:
            raise ValueError("latent_h and latent_w are required when not continuing a state")
        b = batch or (context_latents.shape[0] if context_latents is not None else text.batch)
        dtype = dtype or text.kv[0][0].dtype
        device = device or text.kv[0][0].device
        ctx = 0 if context_latents is None else context_latents.shape[2]
        noise = noise or SeededNoise(0 if seed is None else seed)
        work = new_state(
            model,
            text,
            batch=b,
            latent_h=latent_h,
            latent_w=latent_w,
            chunk_frames=chunk_frames,
            window_frames=window_frames,
            sink_frames=sink_frames,
            total_frames=ctx + num_frames,
            device=device,
            dtype=dtype,
            noise=noise,
        )
        if context_latents is not None:
            extra_nfe += append_committed(model, work, context_latents, chunk_frames)
    work.noise = noise
    ensure_capacity(work, work.frames + num_frames)
    return work, extra_nfe


def denoise_chunk(
    model,
    work: ARState,
    ladder: Ladder,
    policy: StepPolicy,
    *,
    head=None,
    record_confidence: bool = True,
    callback: Callable[[StepInfo], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    chunk_number: int = 0,
    num_chunks: int = 1,
    steps_before: int = 0,
) -> tuple[Tensor, ChunkRecord]:
    """Denoise the next chunk of ``work`` under ``policy``; returns (its x0_hat [B, C, Tc, H, W], its record).

    Starts from the chunk's own noise (``work.noise`` keyed by its first frame), steps down ``ladder`` until the
    policy stops or its cap is reached, reading the confidence (head or heuristic) after every step. Hooks:
    ``should_stop()`` before every step (True raises ChunkInterrupted), ``callback(StepInfo)`` after every step.
    The chunk's cache slots hold its last step's K/V until ``commit_chunk``; nothing else of ``work`` changes.
    chunk_number, num_chunks, steps_before: the chunk's place in a longer run (progress in StepInfo only).
    """
    max_steps = policy.max_steps(ladder)
    want_head = head is not None and (policy.confidence_source == CONFIDENCE_HEAD or record_confidence)
    want_heur = policy.confidence_source == CONFIDENCE_HEURISTIC
    b, c = work.batch, work.latents.shape[1]
    device, dtype = work.device, work.latents.dtype
    ci, fs = work.next_chunk_index, work.cache.frames_written
    shape = (b, c, work.chunk_frames, work.latent_h, work.latent_w)
    rec = ChunkRecord(chunk_index=ci, frame_start=fs, num_frames=work.chunk_frames)
    rec.threshold = getattr(policy, "threshold", None)
    x = work.noise.sample(fs, 0, shape, device=device, dtype=dtype)
    x0_prev = None
    for k in range(max_steps):
        if should_stop is not None and should_stop():
            raise ChunkInterrupted(rec)
        s = ladder.sigmas[k]
        out = model.forward_chunk(
            x, torch.full((b,), 1000.0 * s, device=device, dtype=dtype), work.text, work.cache, fs
        )
        rec.nfe += 1
        x0 = denoise(x, out.flow, s)
        t_head = time.perf_counter()
        conf = heuristic_confidence(x0_prev, x0) if want_heur else head(out.hidden, out.time_emb) if want_head else None
        c_min, finite = _read_step(conf, x0, rec)
        rec.head_time_s += time.perf_counter() - t_head
        steps = k + 1
        rec.steps = steps
        rec.sigmas.append(s)
        rec.timesteps.append(1000.0 * s)
        rec.confidence.append(c_min)
        reason = policy.decide(steps, c_min if policy.confidence_source else None)
        if reason is None and steps == max_steps:
            reason = "fixed" if isinstance(policy, FixedSteps) else policy.cap_reason
        if finite is None and reason is not None:  # no confidence was read: check the chunk's output once
            finite = bool(torch.isfinite(x0).all().tolist())
        if finite is not None:
            check_step(x0, c_min, finite, model=model, text=work.text, chunk=ci, step=steps)
        if callback is not None:
            callback(
                StepInfo(
                    ci,
                    chunk_number,
                    num_chunks,
                    steps,
                    max_steps,
                    s,
                    x0,
                    conf,
                    reason is not None,
                    steps_before + steps,
                    num_chunks * max_steps,
                )
            )
        if reason is not None:
            rec.stop_reason = reason
            return x0, rec
        eps = work.noise.sample(fs, k + 1, shape, device=device, dtype=torch.float32)
        x = renoise(x0, eps, ladder.sigmas[k + 1])
        x0_prev = x0
    raise ValueError(f"the {policy.name} policy allows no denoising step (max_steps {max_steps}); use at least 1")


def _read_step(conf: Tensor | None, x0: Tensor, rec: ChunkRecord) -> tuple[float | None, bool | None]:
    """The chunk's confidence (min over its frames and the batch; the per-frame batch-mins are recorded) and
    whether x0_hat is finite, read in ONE device-to-host transfer. Without a confidence nothing is read
    (None, None): the caller checks the chunk's final x0_hat instead (NaN/Inf carry through every later step)."""
    if conf is None:
        return None, None
    frame_conf = conf.float().amin(dim=0)  # batch-min per frame
    finite = torch.isfinite(x0).all().reshape(1).to(frame_conf)
    values = torch.cat([frame_conf.reshape(-1), finite]).tolist()
    rec.frame_confidence.append(values[:-1])
    return min(values[:-1]), values[-1] == 1.0


def commit_chunk(model, work: ARState, x0: Tensor, rec: ChunkRecord) -> None:
    """Commit a denoised chunk to ``work``: the t = 0 pass writes its clean K/V (what later chunks read), its
    frames join the state's latents, and ``rec`` counts the pass."""
    commit_clean(model, x0, work.text, work.cache, rec.frame_start)
    rec.nfe += 1
    work.latents = torch.cat([work.latents, x0], dim=2)
    work.chunk_sizes = work.chunk_sizes + (x0.shape[2],)
    work.next_chunk_index += 1
    work.nfe += rec.nfe


@torch.no_grad()
def sample_video(
    model,
    text=None,
    *,
    num_frames: int,
    latent_h: int | None = None,
    latent_w: int | None = None,
    chunk_frames: int = 3,
    ladder: Ladder | None = None,
    policy: StepPolicy | None = None,
    seed: int | None = None,
    noise=None,
    head=None,
    state: ARState | None = None,
    context_latents: Tensor | None = None,
    batch: int | None = None,
    window_frames: int | None = None,
    sink_frames: int = 0,
    prompt_schedule: Mapping[int, object] | None = None,
    recache="none",
    device=None,
    dtype=None,
    record_confidence: bool = True,
    callback: Callable[[StepInfo], None] | None = None,
    chunk_callback: Callable[[ChunkInfo], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[Tensor, ARState, RunRecord]:
    """Generate ``num_frames`` new latent frames (a multiple of chunk_frames); returns
    (new frames [B, 16, num_frames, H, W], the state after them, the run's record).

    model: causal_wan.CausalWan. text: its TextContext (optional when continuing ``state``; a different
    one switches the prompt with ``recache``). ladder: default Self-Forcing's 4 levels. policy: default
    FixedSteps (Self-Forcing); a BudgetPolicy reads and updates the state's allowance (``ARState.allowance``),
    so a continuation keeps the lineage's mean. noise: a NoiseSource, default SeededNoise(seed), or the state's when
    continuing. head: the ConfidenceHead (needed by ConfidencePolicy; with other policies it only fills
    the record when ``record_confidence``). context_latents: clean frames committed first (t = 0) as
    context, see ar_state.prime_with_latents. prompt_schedule: {absolute chunk index: TextContext}, a
    prompt switch before that chunk. should_stop: checked before every step; True raises
    SamplingInterrupted (callers may also raise their own exception from it). The input ``state`` is
    never modified.
    """
    t_run = time.perf_counter()
    ladder = ladder or self_forcing_ladder()
    policy = policy or FixedSteps()
    policy.max_steps(ladder)  # a cap the ladder cannot serve fails here, before any forward
    check_policy_head(policy, head)
    work, extra_nfe = prepare_state(
        model,
        text,
        num_frames=num_frames,
        latent_h=latent_h,
        latent_w=latent_w,
        chunk_frames=chunk_frames,
        seed=seed,
        noise=noise,
        state=state,
        context_latents=context_latents,
        batch=batch,
        window_frames=window_frames,
        sink_frames=sink_frames,
        recache=recache,
        device=device,
        dtype=dtype,
    )
    num_chunks = num_frames // work.chunk_frames
    record = RunRecord(
        policy=policy.to_dict(),
        ladder=ladder.to_dict(),
        noise=getattr(work.noise, "to_dict", lambda: {"kind": repr(work.noise)})(),
        base_steps=ladder.base_steps,
        extra_nfe=extra_nfe,
    )
    new_frames: list[Tensor] = []
    steps_done = 0
    for n in range(num_chunks):
        ci = work.next_chunk_index
        if prompt_schedule and ci in prompt_schedule and prompt_schedule[ci] is not work.text:
            work, passes = switch_prompt(model, work, prompt_schedule[ci], recache)
            record.extra_nfe += passes
        t_chunk = time.perf_counter()
        chunk_policy = policy.for_chunk(ladder, work.allowance, num_chunks - n)
        try:
            x0, rec = denoise_chunk(
                model,
                work,
                ladder,
                chunk_policy,
                head=head,
                record_confidence=record_confidence,
                callback=callback,
                should_stop=should_stop,
                chunk_number=n,
                num_chunks=num_chunks,
                steps_before=steps_done,
            )
        except ChunkInterrupted:
            record.interrupted = True
            record.wall_time_s = time.perf_counter() - t_run
            done = torch.cat(new_frames, 2) if new_frames else work.latents[:, :, :0]
            raise SamplingInterrupted(done, record) from None
        commit_chunk(model, work, x0, rec)
        work.allowance = policy.after_chunk(work.allowance, rec.steps)
        steps_done += rec.steps
        new_frames.append(x0)
        _sync(work.device)
        rec.wall_time_s = time.perf_counter() - t_chunk
        record.chunks.append(rec)
        if chunk_callback is not None:
            chunk_callback(ChunkInfo(ci, n, num_chunks, rec.frame_start, x0, rec))
    record.wall_time_s = time.perf_counter() - t_run
    if work.allowance.chunks:
        record.allowance = work.allowance.to_dict()
    latent = torch.cat(new_frames, 2) if new_frames else work.latents[:, :, :0]
    return latent, work, record
