"""Live generation: chunk after chunk until stopped, steered while it runs.

A live run is the AR sampler's own loop (``denoise_chunk`` / ``commit_chunk`` from ar_sampler, ``switch_prompt``
from ar_state) without a fixed length: before every chunk it reads the changes a user asked for since the last
one (a new prompt, a new threshold, stop) from a ``LiveControls`` mailbox that another thread (the GUI's HTTP
requests) fills. Changes take effect at chunk boundaries only, so every chunk is denoised under one prompt and one
threshold, and each change is recorded at the chunk it took effect at. A prompt change is a ``switch_prompt`` with
the run's recache choice, exactly what an extender continuing the state under a new prompt does.

Memory: the KV cache must be a rolling window (sink frames + the last ``window`` frames), so the per-chunk
working memory (cache, activations) is the same at chunk 10 and chunk 10 000. What grows is the video itself
(its latent frames, kept for the outputs and for recache 'all'), by its own size per chunk.

Stop ends the run at the next chunk boundary with everything committed so far (a normal end: the state is
continued like any other); ``should_cancel`` (the host's Cancel) interrupts inside a chunk as the sampler does.
"""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch

from .ar_sampler import ChunkInfo, ChunkInterrupted, SamplingInterrupted, commit_chunk, denoise_chunk
from .ar_state import ARState, switch_prompt
from .policies import StepPolicy, validate_threshold
from .records import RunRecord
from .schedules import Ladder

STOP_USER = "stopped"  # the user pressed Stop
STOP_FRAMES = "frame_limit"  # the frame limit was reached


@dataclass
class LiveChange:
    """A change as it took effect: before chunk ``chunk`` (index within the run) at latent frame ``frame``."""

    chunk: int
    frame: int
    kind: str  # "prompt" or "threshold"
    value: object  # the prompt's text, or the threshold
    extra_nfe: int = 0  # t = 0 passes the change cost (recache)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Pending:
    prompt: object = None  # (text, payload) or None
    threshold: float | None = None
    stop: bool = False


class LiveControls:
    """The mailbox between whoever steers (any thread) and the loop (reads it at chunk boundaries). The latest
    request of each kind wins; ``take`` empties it atomically."""

    def __init__(self):
        self._lock = threading.Lock()
        self._pending = _Pending()

    def change_prompt(self, text: str, payload=None) -> None:
        """``payload``: what the loop's ``encode_prompt`` turns into a text context (e.g. a stored embedding)."""
        with self._lock:
            self._pending.prompt = (text, payload)

    def change_threshold(self, value: float) -> None:
        value = validate_threshold(value)
        with self._lock:
            self._pending.threshold = value

    def stop(self) -> None:
        with self._lock:
            self._pending.stop = True

    @property
    def stop_requested(self) -> bool:
        with self._lock:
            return self._pending.stop

    def take(self) -> _Pending:
        with self._lock:
            taken, stop = self._pending, self._pending.stop
            self._pending = _Pending(stop=stop)  # a stop stays requested
            return taken


def with_threshold(policy: StepPolicy, threshold: float) -> StepPolicy:
    """A copy of ``policy`` stopping at ``threshold``; ValueError for a policy without one (fixed steps)."""
    if not hasattr(policy, "threshold"):
        raise ValueError(f"the {policy.name} policy has no threshold: choose policy confidence or heuristic")
    new = copy.copy(policy)
    new.threshold = validate_threshold(threshold)
    return new


@dataclass
class LiveResult:
    latent: torch.Tensor  # the frames generated in this run [B, C, T, H, W]
    state: ARState
    record: RunRecord
    changes: list = field(default_factory=list)  # LiveChange, in order
    stop_reason: str = STOP_USER


@torch.no_grad()
def run_live(
    model,
    work: ARState,
    *,
    ladder: Ladder,
    policy: StepPolicy,
    controls: LiveControls,
    encode_prompt: Callable[[object], object],
    head=None,
    recache="none",
    max_chunks: int | None = None,
    callback=None,
    chunk_callback: Callable[[ChunkInfo], None] | None = None,
    change_callback: Callable[[LiveChange], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> LiveResult:
    """Generate chunks on ``work`` (a working branch: ar_sampler.prepare_state; written in place) until
    ``controls`` asks to stop or ``max_chunks`` chunks are done. ``encode_prompt(payload)`` -> the model's
    TextContext for a requested prompt (called in this thread, at the boundary). Returns a LiveResult."""
    if work.cache.window_frames is None:
        raise ValueError("a live run needs a rolling cache window (window_frames), or its memory grows without end")
    t_run = time.perf_counter()
    first = work.frames
    record = RunRecord(
        policy=policy.to_dict(),
        ladder=ladder.to_dict(),
        noise=getattr(work.noise, "to_dict", lambda: {"kind": repr(work.noise)})(),
        base_steps=ladder.base_steps,
    )
    changes: list[LiveChange] = []
    steps_done, n = 0, 0
    stop_reason = STOP_USER
    while True:
        pending = controls.take()
        if pending.threshold is not None:
            policy = with_threshold(policy, pending.threshold)
            changes.append(LiveChange(n, work.cache.frames_written, "threshold", pending.threshold))
            if change_callback is not None:
                change_callback(changes[-1])
        if pending.prompt is not None:
            text_label, payload = pending.prompt
            work, passes = switch_prompt(model, work, encode_prompt(payload), recache)
            record.extra_nfe += passes
            changes.append(LiveChange(n, work.cache.frames_written, "prompt", text_label, passes))
            if change_callback is not None:
                change_callback(changes[-1])
        if pending.stop:
            break
        if max_chunks is not None and n >= max_chunks:
            stop_reason = STOP_FRAMES
            break
        t_chunk = time.perf_counter()
        ci = work.next_chunk_index
        try:
            x0, rec = denoise_chunk(
                model,
                work,
                ladder,
                policy,
                head=head,
                callback=callback,
                should_stop=should_cancel,
                chunk_number=n,
                num_chunks=n + 1,
                steps_before=steps_done,
            )
        except ChunkInterrupted:
            record.interrupted = True
            record.wall_time_s = time.perf_counter() - t_run
            raise SamplingInterrupted(work.latents[:, :, first:], record) from None
        commit_chunk(model, work, x0, rec)
        steps_done += rec.steps
        if work.device.type == "cuda":
            torch.cuda.synchronize(work.device)
        rec.wall_time_s = time.perf_counter() - t_chunk
        record.chunks.append(rec)
        if chunk_callback is not None:
            chunk_callback(ChunkInfo(ci, n, n + 1, rec.frame_start, x0, rec))
        n += 1
    record.wall_time_s = time.perf_counter() - t_run
    return LiveResult(work.latents[:, :, first:], work, record, changes, stop_reason)
