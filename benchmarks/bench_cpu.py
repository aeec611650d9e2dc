"""CPU benchmark of DSA's autoregressive sampler (speed and memory), one command, prints tables.

    python benchmarks/bench_cpu.py            # full run, ~3-5 min on a 2-core VM
    python benchmarks/bench_cpu.py --quick    # ~1 min

What it measures (random weights: speed does not depend on what the weights are):
1. Sampler speed, per config (tiny: TINY at latent 8x8; mid: dim 512 / 8 layers at latent 16x16, the
   'mid' of bench_generator.py), per mode (fixed-4 = Self-Forcing's sampler; adaptive-3 / adaptive-2 =
   ConfidencePolicy driven by a scripted head whose steps average 3 and 2, see bench_common.py):
   first-chunk latency, later-chunk time, throughput (latent frames/s and the video-frame equivalent,
   1 + 4 (T-1) frames for T latent frames), NFE, and the overhead ratio = sampler wall time / time
   inside CausalWan.forward_chunk (everything the sampler adds: noise, x0 update, head, bookkeeping;
   goal <= 1.05).
2. Confidence head cost per step: the head alone on a step's pooled hidden states, against the
   generator step it follows (and at the 1.3B width, where only the head's own cost is shown; see
   bench_head.py for the step at that width).
3. KV cache memory and per-chunk time against video length, rolling window (+ sink frames) vs keeping
   every frame; plus the predicted cache size of Wan 2.1 1.3B at 480x832 in bf16.
4. Peak RSS (resource.getrusage) after each section.

Every timing is repeated after a warm-up run; tables print min/median over the repeats (the machine is
shared: the minimum is the least disturbed figure, the median the typical one).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

# Shared 2-core machines: with the default (spinning) OpenMP wait policy, 2 torch threads next to another busy
# process slowed a forward by up to 35x in our runs (each parallel region waits for a descheduled thread);
# passive waiting keeps them at about the 1-thread speed. Set OMP_WAIT_POLICY yourself to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.bench_common import (  # noqa: E402
    MODES,
    ForwardTimer,
    fmt_mm,
    min_med,
    mode_policy,
    peak_rss_mb,
    print_table,
    video_frames,
)
from dsa_core.ar_sampler import sample_video  # noqa: E402
from dsa_core.causal_wan import CausalWan  # noqa: E402
from dsa_core.confidence_head import ConfidenceHead  # noqa: E402
from dsa_core.config import TINY, WAN21_T2V_1_3B, WanConfig  # noqa: E402
from dsa_core.kv_cache import KVCache  # noqa: E402
from dsa_core.policies import FixedSteps  # noqa: E402
from dsa_core.wan_model import WanDiT, init_random_weights  # noqa: E402

MID = WanConfig(dim=512, ffn_dim=2048, num_heads=4, num_layers=8)  # same as bench_generator.MID
MICRO = WanConfig(dim=128, ffn_dim=128, num_heads=1, num_layers=1)  # smoke tests only
CONFIGS = {"tiny": (TINY, 8, 8), "mid": (MID, 16, 16), "micro": (MICRO, 4, 4)}  # config, latent h, w
CHUNK = 3


def build(cfg: WanConfig, text_len: int = 512):
    dit = init_random_weights(WanDiT(cfg), seed=0).eval()
    cw = CausalWan(dit, cfg)
    with torch.no_grad():
        text = cw.encode_text(torch.randn(1, text_len, cfg.text_dim, generator=torch.Generator().manual_seed(1)))
    return cw, text


# ---- 1. sampler speed ---------------------------------------------------------------------------
class Budget:
    """A time budget shared out over the remaining items: each item may stop repeating (after at least
    one measured repeat) once its share is spent, so a busy machine shortens the run instead of
    stretching it past the limit."""

    def __init__(self, seconds: float | None):
        self.end = None if seconds is None else time.perf_counter() + seconds

    def item_deadline(self, items_left: int):
        if self.end is None:
            return None
        now = time.perf_counter()
        return now + max(0.0, self.end - now) / max(1, items_left)


def _over(deadline) -> bool:
    return deadline is not None and time.perf_counter() > deadline


def bench_sampler(
    name, cfg, lh, lw, *, chunks=7, repeats=3, modes=tuple(MODES), text_len=512, budget=None, items_after=0
):
    """One row per mode: latency, throughput, NFE and overhead ratio, min/median over ``repeats``
    (fewer when ``budget`` runs out; each row says how many)."""
    cw, text = build(cfg, text_len)
    timer = ForwardTimer(cw)
    rows = []
    for i, mode in enumerate(modes):
        deadline = budget.item_deadline(len(modes) - i + items_after) if budget else None
        policy, head = mode_policy(mode, cfg.dim)
        walls, firsts, laters, ratios, head_ms = [], [], [], [], []
        for r in range(repeats + 1):  # run 0 is the warm-up
            if r >= 2 and _over(deadline):
                break
            if head is not None:
                head.reset()
            timer.reset()
            t0 = time.perf_counter()
            _, _, rec = sample_video(
                cw,
                text,
                num_frames=chunks * CHUNK,
                latent_h=lh,
                latent_w=lw,
                chunk_frames=CHUNK,
                policy=policy,
                head=head,
                seed=0,
            )
            wall = time.perf_counter() - t0
            if r == 0:
                continue
            walls.append(wall)
            firsts.append(rec.chunks[0].wall_time_s)
            laters.append(statistics.mean(c.wall_time_s for c in rec.chunks[1:]) if chunks > 1 else float("nan"))
            ratios.append(wall / timer.seconds)
            steps = rec.total_steps
            head_ms.append(1e3 * sum(c.head_time_s for c in rec.chunks) / steps)
        latent = chunks * CHUNK
        vframes = video_frames(latent, True)
        rows.append(
            {
                "config": name,
                "mode": mode,
                "steps": rec.mean_steps_per_chunk,
                "nfe": rec.total_nfe,
                "fixed_nfe": rec.fixed_nfe,
                "first_s": firsts,
                "later_s": laters,
                "wall_s": walls,
                "latent_fps": [latent / w for w in walls],
                "video_fps": [vframes / w for w in walls],
                "overhead": ratios,
                "head_ms_per_step": head_ms,
                "step_ms": 1e3 * timer.seconds / timer.calls,
                "repeats": len(walls),
            }
        )
    timer.remove()
    return rows


def print_sampler(rows, chunks):
    hdr = [
        "config",
        "mode",
        "n",
        "steps/chunk",
        "NFE",
        "1st chunk ms",
        "later chunk ms",
        "latent fr/s",
        "video fr/s",
        "overhead",
        "head ms/step",
    ]
    out = []
    for r in rows:
        # throughput: min column uses the fastest run (max fps), median the median run
        lf = sorted(r["latent_fps"], reverse=True)
        vf = sorted(r["video_fps"], reverse=True)
        out.append(
            [
                r["config"],
                r["mode"],
                r["repeats"],
                f"{r['steps']:.2f}",
                f"{r['nfe']}",
                fmt_mm(r["first_s"], 1e3),
                fmt_mm(r["later_s"], 1e3),
                f"{lf[0]:.2f}/{statistics.median(lf):.2f}",
                f"{vf[0]:.2f}/{statistics.median(vf):.2f}",
                fmt_mm(r["overhead"], 1, 3),
                fmt_mm(r["head_ms_per_step"], 1, 3) if r["mode"] != "fixed-4" else "- (no head)",
            ]
        )
    print_table(
        hdr,
        out,
        f"1. Sampler: {chunks} chunks x {CHUNK} latent frames "
        f"(= {video_frames(chunks * CHUNK, True)} video frames); x/y = min/median "
        "(throughput: best/median) over n repeats; overhead = sampler wall / time in forward_chunk "
        "(goal <= 1.05)",
    )


# ---- 2. head cost -------------------------------------------------------------------------------
def bench_head_cost(step_ms_by_config: dict, *, calls=300, dims=None):
    """The confidence head alone on [1, 3, dim] pooled hidden states (+ time embedding), min/median of
    ``calls`` calls after 20 warm-up calls; against the generator step time measured in section 1."""
    rows = []
    dims = dims or {n: CONFIGS[n][0].dim for n in step_ms_by_config}
    for name, dim in dims.items():
        head = ConfidenceHead(dim).eval()
        h, e = torch.randn(1, CHUNK, dim), torch.randn(1, CHUNK, dim)
        times = []
        with torch.no_grad():
            for i in range(calls + 20):
                t = time.perf_counter()
                float(head(h, e).min())  # what the sampler does: head + .min() + host sync
                if i >= 20:
                    times.append(time.perf_counter() - t)
        n_head = sum(p.numel() for p in head.parameters())
        rows.append(
            {
                "config": name,
                "dim": dim,
                "head_params": n_head,
                "head_ms": [1e3 * t for t in times],
                "step_ms": step_ms_by_config.get(name),
            }
        )
    return rows


def print_head(rows):
    out = []
    for r in rows:
        lo, med = min_med(r["head_ms"])
        step = r["step_ms"]
        rel = f"{100 * med / step:.2f} %" if step else "n/a (see bench_head.py)"
        out.append(
            [
                r["config"],
                r["dim"],
                f"{r['head_params'] / 1e6:.3f} M",
                f"{lo:.3f}/{med:.3f}",
                f"{step:.1f}" if step else "-",
                rel,
            ]
        )
    print_table(
        ["config", "dim", "head params", "head ms (min/med)", "gen step ms (mean)", "head/step (med)"],
        out,
        "2. Confidence head cost per step (one call per denoising step)",
    )


# ---- 3. KV cache vs length ----------------------------------------------------------------------
def bench_kv(name, cfg, lh, lw, *, chunks=20, window=12, sink=3, repeats=2, budget=None):
    """Per-chunk time of a long fixed-4 video, keeping every frame vs a rolling window + sink."""
    cw, text = build(cfg)
    runs = {}
    for i, (label, win, snk) in enumerate((("keep-all", None, 0), (f"rolling w{window}+s{sink}", window, sink))):
        deadline = budget.item_deadline(2 - i) if budget else None
        per_chunk, nbytes = [], None
        for r in range(repeats + 1):  # run 0: a 2-chunk warm-up
            if r >= 2 and _over(deadline):
                break
            n = chunks if r else min(chunks, 2)
            _, state, rec = sample_video(
                cw,
                text,
                num_frames=n * CHUNK,
                latent_h=lh,
                latent_w=lw,
                chunk_frames=CHUNK,
                policy=FixedSteps(4),
                seed=0,
                window_frames=win,
                sink_frames=snk,
            )
            if r:
                per_chunk.append([c.wall_time_s for c in rec.chunks])
                nbytes = state.cache.nbytes
        runs[label] = {"per_chunk": list(zip(*per_chunk)), "bytes": nbytes, "window": win, "sink": snk}
    return {"config": name, "cfg": cfg, "lh": lh, "lw": lw, "chunks": chunks, "runs": runs}


def print_kv(res, every=None):
    chunks = res["chunks"]
    (la, a), (lb, b) = res["runs"].items()
    every = every or max(1, chunks // 10)
    out = []
    for c in range(chunks):
        if c % every and c != chunks - 1:
            continue
        end = (c + 1) * CHUNK
        vis_b = min(end, b["window"] + b["sink"])
        out.append([c, end, end, fmt_mm(a["per_chunk"][c], 1e3), vis_b, fmt_mm(b["per_chunk"][c], 1e3)])
    cfg = res["cfg"]
    print_table(
        ["chunk", "latent frames", f"{la}: keys (frames)", "ms/chunk", f"{lb}: keys", "ms/chunk"],
        out,
        f"3. KV cache vs video length, {res['config']} (dim {cfg.dim}, {cfg.num_layers} layers, latent "
        f"{res['lh']}x{res['lw']}), fixed 4 steps; ms = min/median over "
        f"{len(a['per_chunk'][0])}/{len(b['per_chunk'][0])} repeats",
    )
    print(
        f"cache bytes allocated for {chunks * CHUNK} latent frames: {la} {a['bytes'] / 2**20:.1f} MiB, "
        f"{lb} {b['bytes'] / 2**20:.1f} MiB (constant in length)"
    )


def print_kv_full_size(window=12, sink=3):
    """Predicted cache size at Wan 2.1 1.3B, 480x832 (latent 60x104), bf16, batch 1."""
    out = []
    for lat in (21, 42, 81, 162, 321):
        keep = KVCache.bytes_required(WAN21_T2V_1_3B, 60, 104, None, CHUNK, dtype=torch.bfloat16, total_frames=lat)
        roll = KVCache.bytes_required(WAN21_T2V_1_3B, 60, 104, window, CHUNK, sink_frames=sink, dtype=torch.bfloat16)
        out.append([lat, video_frames(lat, True), f"{keep / 2**30:.2f}", f"{roll / 2**30:.2f}"])
    print_table(
        ["latent frames", "video frames", "keep-all GiB", f"rolling w{window}+s{sink} GiB"],
        out,
        "3b. Predicted KV cache, Wan 2.1 1.3B at 480x832, bf16, batch 1 (KVCache.bytes_required)",
    )


# ---- driver -------------------------------------------------------------------------------------
def run_all(args, out=print):
    t_start = time.perf_counter()
    rss = {}
    sampler_rows = []
    names = args.configs.split(",")
    # the sampler section may use ~55 % of the budget, the KV section the rest
    sampler_budget = Budget(None if args.budget_s is None else 0.55 * args.budget_s)
    for j, name in enumerate(names):
        cfg, lh, lw = CONFIGS[name]
        later_items = sum(len(MODES) for _ in names[j + 1 :])
        sampler_rows += bench_sampler(
            name, cfg, lh, lw, chunks=args.chunks, repeats=args.repeats, budget=sampler_budget, items_after=later_items
        )
    rss["after sampler"] = peak_rss_mb()
    print_sampler(sampler_rows, args.chunks)

    step_ms = {r["config"]: r["step_ms"] for r in sampler_rows if r["mode"] == "fixed-4"}
    dims = {n: CONFIGS[n][0].dim for n in step_ms}
    dims["wan1.3B width"] = WAN21_T2V_1_3B.dim
    head_rows = bench_head_cost(step_ms, calls=args.head_calls, dims=dims)
    print_head(head_rows)
    rss["after head"] = peak_rss_mb()

    kv = None
    if args.kv_chunks:
        cfg, lh, lw = CONFIGS[args.kv_config]
        left = None if args.budget_s is None else args.budget_s - (time.perf_counter() - t_start) - 10
        kv = bench_kv(
            args.kv_config,
            cfg,
            lh,
            lw,
            chunks=args.kv_chunks,
            window=args.window,
            sink=args.sink,
            repeats=args.kv_repeats,
            budget=Budget(None if left is None else max(left, 0)),
        )
        print_kv(kv)
    print_kv_full_size(args.window, args.sink)
    rss["after kv"] = peak_rss_mb()

    print("\n4. Peak RSS (MiB, monotonic): " + ", ".join(f"{k} {v:.0f}" for k, v in rss.items()))
    print(f"total benchmark time {time.perf_counter() - t_start:.0f} s")
    return {"sampler": sampler_rows, "head": head_rows, "kv": kv, "rss": rss}


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="~1 minute version (4-chunk videos, 2 repeats, KV on tiny)")
    ap.add_argument("--configs", default="tiny,mid")
    ap.add_argument("--chunks", type=int, default=7, help="chunks per video in section 1 (7 = 21 latent frames)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--head-calls", type=int, default=300)
    ap.add_argument("--kv-config", default="mid")
    ap.add_argument("--kv-chunks", type=int, default=16)
    ap.add_argument("--kv-repeats", type=int, default=2)
    ap.add_argument("--window", type=int, default=12)
    ap.add_argument("--sink", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="time budget: repeats stop early (>= 1 kept) once spent; default 420 s, --quick 50 s; 0 = no budget",
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.repeats, args.chunks, args.kv_config, args.kv_chunks, args.kv_repeats = 2, 4, "tiny", 16, 2
        args.head_calls = 100
    if args.budget_s is None:
        args.budget_s = 50.0 if args.quick else 420.0
    elif args.budget_s <= 0:
        args.budget_s = None
    return args


def main(argv=None):
    args = parse(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # random weights can produce subnormals, which are slow on CPU
    print(
        f"DSA CPU benchmark: torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, {args.threads} threads (OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}), "
        f"fp32, chunk = {CHUNK} latent frames, random weights" + (" [--quick]" if args.quick else "")
    )
    print("load average at start (1/5/15 min): " + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    with torch.no_grad():
        run_all(args)
    print(
        "load average at end (1/5/15 min): "
        + " ".join(f"{v:.2f}" for v in os.getloadavg())
        + "  (above ~1 means other jobs shared the 2 cores: trust the min columns)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
