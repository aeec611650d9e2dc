"""Shared pieces of bench_cpu.py and bench_gpu.py: scripted step allocations, a timer around the
generator's forward, frame counting, statistics and table printing.

Adaptive allocations without a trained head. ``ScriptedHead`` runs a real (randomly initialised)
ConfidenceHead on every step, so its cost is paid exactly as with a trained head, then replaces its
output with 1.0 ("confident") at the step a fixed per-chunk pattern asks for and 0.0 before it. Driven
by ConfidencePolicy(threshold=0.5, min_steps=1, max_steps=4), chunk n then takes pattern[n % len]
steps. The patterns below average exactly 3 and 2 steps over Self-Forcing's 7 chunks (21 latent
frames = 81 video frames) and start with 3 resp. 2 steps, so the first chunk's latency is that of a
3- resp. 2-step chunk. NFE per chunk = steps + 1 (the t = 0 commit pass).

Frame counting (Self-Forcing's convention): T latent frames decode to 1 + 4 (T - 1) video frames
(21 -> 81). The first chunk of 3 latent frames gives 9 video frames, every later chunk 12. FPS =
video frames / wall time of the whole run (DiT, plus the VAE decode where the script runs it).
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from dsa_core.confidence_head import ConfidenceHead  # noqa: E402
from dsa_core.policies import ConfidencePolicy, FixedSteps  # noqa: E402
from dsa_core.streaming_decode import wan_video_frames  # noqa: E402

# mode name -> per-chunk step pattern (None = Self-Forcing's fixed 4 steps)
MODES = {
    "fixed-4": None,
    "adaptive-3": (3, 2, 4),  # 3,2,4,3,2,4,3 over 7 chunks: mean 3.00
    "adaptive-2": (2, 1, 3),  # 2,1,3,2,1,3,2 over 7 chunks: mean 2.00
}

SELF_FORCING = {"fps": 17.0, "latency_s": 0.69}  # Self-Forcing paper, chunk-wise, one H100
DSA_PAPER = {"fps": 22.63}  # DSA abstract, one H100 ("sub-second latency")


class ScriptedHead:
    """A confidence head whose verdicts follow a fixed per-chunk step pattern (see module doc).

    Tracks its position by counting calls: the sampler calls the head once per step, and a chunk ends
    when the head says 1.0 or after ``max_steps`` calls."""

    def __init__(self, pattern, dim: int, max_steps: int = 4, device=None):
        self.pattern, self.max_steps = tuple(pattern), max_steps
        self.real = ConfidenceHead(dim, device=device, dtype=torch.float32).eval()
        self.chunk = self.step = 0

    def reset(self):
        self.chunk = self.step = 0

    def __call__(self, hidden, time_emb):
        conf = self.real(hidden, time_emb)  # pay the real head's cost
        self.step += 1
        stop = self.step >= self.pattern[self.chunk % len(self.pattern)]
        if stop or self.step >= self.max_steps:
            self.chunk, self.step = self.chunk + 1, 0
        return torch.full_like(conf, 1.0 if stop else 0.0)


def mode_policy(mode: str, dim: int, device=None):
    """(policy, head) for a MODES entry."""
    pattern = MODES[mode]
    if pattern is None:
        return FixedSteps(4), None
    return ConfidencePolicy(threshold=0.5, min_steps=1, max_steps=4), ScriptedHead(pattern, dim, device=device)


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


class ForwardTimer:
    """Wraps ``model.forward_chunk`` (instance attribute) and sums the time spent inside it, with a CUDA
    sync before and after each call so that asynchronous kernels are charged to the forward."""

    def __init__(self, model, device="cpu"):
        self.model, self.device = model, device
        self.inner = model.forward_chunk
        self.seconds, self.calls = 0.0, 0
        model.forward_chunk = self._timed

    def _timed(self, *a, **k):
        sync(self.device)
        t = time.perf_counter()
        out = self.inner(*a, **k)
        sync(self.device)
        self.seconds += time.perf_counter() - t
        self.calls += 1
        return out

    def reset(self):
        self.seconds, self.calls = 0.0, 0

    def remove(self):
        self.model.forward_chunk = self.inner


def video_frames(latent_frames: int, first_chunk: bool) -> int:
    """Video frames a chunk of latent frames decodes to (Wan VAE: 1 + 4 (T-1) for the video's start): the
    streaming decoder's own rule."""
    return wan_video_frames(latent_frames, first_chunk)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def min_med(values):
    return min(values), statistics.median(values)


def fmt_mm(values, scale=1.0, prec=1) -> str:
    lo, med = min_med(values)
    return f"{lo * scale:.{prec}f}/{med * scale:.{prec}f}"


def print_table(headers, rows, title=None):
    """Plain fixed-width table; rows are lists of already-formatted strings."""
    cols = [list(map(str, headers))] + [list(map(str, r)) for r in rows]
    widths = [max(len(r[i]) for r in cols) for i in range(len(headers))]
    if title:
        print(f"\n{title}")
    line = "  ".join(h.rjust(w) for h, w in zip(cols[0], widths))
    print(line)
    print("-" * len(line))
    for r in cols[1:]:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)))


# ---- analytic FLOPs of one chunk-step (one generator forward over one chunk) ------------------------
FLOP_FORMULA = (
    "FLOPs per chunk-step (one generator forward over one chunk, batch 1, multiply-add = 2) = "
    "layers * [Lq * (12 d^2 + 4 d f) + 4 d Lq (Lk + Lt)] + 2 d Lq p (C_in + C_out); "
    "Lq = chunk tokens, Lk = visible self-attention tokens (cache + chunk), Lt = text tokens, "
    "d = dim, f = ffn_dim, p = patch volume; 12 d^2 = self-attn q,k,v,o + cross-attn q,o "
    "(the text K/V are computed once per prompt and not counted), 4 d f = FFN, 4 d Lq (Lk + Lt) = "
    "QK^T and PV of self- and cross-attention; norms, RoPE, modulation and softmax not counted"
)


def chunk_step_flops(cfg, tokens_per_frame: int, chunk_frames: int, visible_frames: int, text_len: int) -> float:
    """FLOP_FORMULA for one forward of a chunk that sees ``visible_frames`` latent frames (itself included)."""
    d, f = cfg.dim, cfg.ffn_dim
    lq, lk = chunk_frames * tokens_per_frame, visible_frames * tokens_per_frame
    p = cfg.patch_size[0] * cfg.patch_size[1] * cfg.patch_size[2]
    per_layer = lq * (12 * d * d + 4 * d * f) + 4 * d * lq * (lk + text_len)
    return float(cfg.num_layers * per_layer + 2 * d * lq * p * (cfg.in_dim + cfg.out_dim))


def run_flops(cfg, record, tokens_per_frame: int, text_len: int, capacity_frames: int | None = None) -> float:
    """Analytic FLOPs of every forward of a sampling run (steps + 1 commit pass per chunk), from its record."""
    total = 0.0
    for c in record.chunks:
        end = c.frame_start + c.num_frames
        visible = end if capacity_frames is None else min(end, capacity_frames)
        total += c.nfe * chunk_step_flops(cfg, tokens_per_frame, c.num_frames, visible, text_len)
    return total
