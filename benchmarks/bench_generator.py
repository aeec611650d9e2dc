"""CPU benchmark of the causal generator: per-chunk forward time and KV-cache memory.

Each chunk runs like Self-Forcing inference: 4 denoising passes that overwrite the chunk's cache slot,
then the t=0 commit pass (5 forwards). With a rolling window (+ sink) the attended keys stop growing once
the window is full, so the per-chunk time stays flat; keeping every frame (window=None) grows linearly.

    python benchmarks/bench_generator.py [--chunks 10] [--configs tiny,mid] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from dsa_core.causal_wan import CausalWan  # noqa: E402
from dsa_core.config import TINY, WanConfig  # noqa: E402
from dsa_core.flow_step import euler_step  # noqa: E402
from dsa_core.kv_cache import KVCache  # noqa: E402
from dsa_core.wan_model import WanDiT, init_random_weights  # noqa: E402

MID = WanConfig(dim=512, ffn_dim=2048, num_heads=4, num_layers=8)
CONFIGS = {"tiny": (TINY, 8, 8), "mid": (MID, 16, 16)}  # config, latent h, latent w
STEPS = [1000.0, 937.5, 833.3, 625.0]


def run(name, cfg, lh, lw, chunks, chunk_frames, window, sink):
    dit = init_random_weights(WanDiT(cfg), seed=0).eval()
    cw = CausalWan(dit, cfg)
    total = chunks * chunk_frames
    cache = cw.new_cache(
        1,
        lh,
        lw,
        chunk_frames,
        window_frames=window,
        sink_frames=sink,
        total_frames=total if window is None else None,
        dtype=torch.float32,
    )
    predicted = KVCache.bytes_required(
        cfg,
        lh,
        lw,
        window,
        chunk_frames,
        sink_frames=sink,
        dtype=torch.float32,
        total_frames=total if window is None else None,
    )
    text = cw.encode_text(torch.randn(1, 32, cfg.text_dim))
    rows = []
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        warm_up = torch.randn(1, cfg.in_dim, chunk_frames, lh, lw)
        cw.forward_chunk(warm_up, torch.tensor([500.0]), text, None, 0)
        for c in range(chunks):
            s = c * chunk_frames
            x = torch.randn(1, cfg.in_dim, chunk_frames, lh, lw, generator=g)
            times = []
            for t in STEPS + [0.0]:
                t0 = time.perf_counter()
                out = cw.forward_chunk(x, torch.tensor([t]), text, cache, s)
                times.append(time.perf_counter() - t0)
                x = euler_step(x, out.flow, 0.1, 0.0)  # any cheap update: only the forward is timed
            keys = min(s + chunk_frames, cache.capacity_frames)
            rows.append((c, s, keys, min(times) * 1e3, sum(times) * 1e3))  # best of 5: robust to a busy machine
    return rows, predicted, cache.nbytes


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=10)
    ap.add_argument("--chunk-frames", type=int, default=3)
    ap.add_argument("--window", type=int, default=6)
    ap.add_argument("--sink", type=int, default=3)
    ap.add_argument("--configs", default="tiny,mid")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # random weights can drive softmax into subnormals, which are slow on CPU
    print(
        f"torch {torch.__version__}, CPU, {args.threads} threads, fp32; chunk={args.chunk_frames} frames, "
        f"5 forwards per chunk (4 steps + t=0 commit), ms/fwd = fastest of the 5"
    )
    for name in args.configs.split(","):
        cfg, lh, lw = CONFIGS[name]
        tpf = (lh // 2) * (lw // 2)
        print(
            f"\n== {name}: dim {cfg.dim}, {cfg.num_heads} heads, {cfg.num_layers} layers, latent {lh}x{lw} "
            f"({tpf} tokens/frame)"
        )
        roll, pr, ar = run(name, cfg, lh, lw, args.chunks, args.chunk_frames, args.window, args.sink)
        full, pf, af = run(name, cfg, lh, lw, args.chunks, args.chunk_frames, None, 0)
        print(
            f"{'chunk':>5} {'frames':>7} | {'rolling w' + str(args.window) + '+s' + str(args.sink):>22} | "
            f"{'keep all frames':>22}"
        )
        print(f"{'':>5} {'':>7} | {'key frames':>10} {'ms/fwd':>11} | {'key frames':>10} {'ms/fwd':>11}")
        for (c, s, kr, mr, _), (_, _, kf, mf, _) in zip(roll, full):
            print(f"{c:>5} {s:>3}-{s + args.chunk_frames - 1:<3} | {kr:>10} {mr:>11.2f} | {kf:>10} {mf:>11.2f}")
        fill = (args.window + args.sink + args.chunk_frames - 1) // args.chunk_frames
        steady = [r[3] for r in roll[fill:]]
        if len(steady) >= 2:
            half = len(steady) // 2
            print(
                f"rolling, after the window fills: first half {statistics.mean(steady[:half]):.2f} ms, "
                f"second half {statistics.mean(steady[half:]):.2f} ms per forward "
                f"(keep-all grows {full[fill][3]:.2f} -> {full[-1][3]:.2f} ms)"
            )
        print(f"cache bytes rolling: predicted {pr:,} actual {ar:,} | keep-all: predicted {pf:,} actual {af:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
