"""How long a stop request takes to land inside one chunk's forward, at sizes where one transformer block is long.

The sampler node checks the host's interrupt between transformer blocks and before each query slice of a long
attention call (dsa_core.attention_slices). This runs the last chunk of a video (the whole cache visible: the
longest attention) of a thin model with the same hooks, sets the stop flag a while after the forward starts
and measures the time until the forward raises. Also: one slice's time, and the work of one whole attention
call (what an unsliced call would cost before the stop could land). CPU, fp32.

    python benchmarks/bench_interrupt.py [--sizes 1024x1024x81,2048x2048x81] [--attention host|sdpa]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


class Stopped(Exception):
    pass


def host_attention():
    """The test host's own attention on CPU (what the sampler node uses there)."""
    sys.path.insert(0, str(ROOT / "tests"))
    import host_env

    host_env.import_comfy_cpu()
    from comfy.ldm.modules.attention import optimized_attention

    def attention(q, k, v):
        return optimized_attention(q, k, v, heads=q.shape[1], skip_reshape=True)

    return attention, optimized_attention.__name__


def measure(width: int, height: int, length: int, delays: list[float], attention: str, layers: int = 4) -> dict:
    import torch

    from dsa_core.attention_slices import SLICE_FLOPS, attention_flops, sliced_attention
    from dsa_core.causal_wan import CausalWan
    from dsa_core.config import WanConfig
    from dsa_core.wan_model import WanDiT, init_random_weights

    config = WanConfig(dim=128, ffn_dim=256, num_heads=1, num_layers=layers)
    attn, attn_name = host_attention() if attention == "host" else (None, "torch SDPA")
    model = CausalWan(init_random_weights(WanDiT(config), seed=0).eval(), config, attention=attn)
    lh, lw, frames, chunk = height // 8, width // 8, (length - 1) // 4 + 1, 3
    start = frames - chunk  # the last chunk: every earlier frame is visible
    with torch.no_grad():
        text = model.encode_text(torch.randn(1, 512, config.text_dim))
    cache = model.new_cache(1, lh, lw, chunk, total_frames=frames)
    cache.frames_written = start  # as if the earlier chunks had been made (their K/V values do not matter here)
    x = torch.randn(1, 16, chunk, lh, lw)
    t = torch.full((1,), 750.0)
    flag = threading.Event()
    checks: list[float] = []

    def check():
        checks.append(time.perf_counter())
        if flag.is_set():
            raise Stopped

    model.between_blocks = check
    model.attention = sliced_attention(model.attention, check)
    tokens = chunk * (lh // 2) * (lw // 2)
    q = torch.empty(1, 1, tokens, config.head_dim, device="meta")
    k = torch.empty(1, 1, frames * (lh // 2) * (lw // 2), config.head_dim, device="meta")
    whole_call_flops = attention_flops(q, k)
    latencies = []
    for delay in delays:
        flag.clear()
        checks.clear()
        cache.frames_written, cache.last_chunk_start = start, None
        timer = threading.Timer(delay, flag.set)
        t0 = time.perf_counter()
        timer.start()
        try:
            with torch.no_grad():
                model.forward_chunk(x, t, text, cache, start)
            latencies.append(None)  # finished before the stop
        except Stopped:
            latencies.append(time.perf_counter() - t0 - delay)
        timer.cancel()
    gaps = [b - a for a, b in zip(checks, checks[1:])]
    return {
        "attention": attn_name,
        "size": f"{width}x{height}x{length}",
        "queries": tokens,
        "keys": k.shape[2],
        "whole_call_gflop": whole_call_flops / 1e9,
        "slices_per_call": max(1, round(whole_call_flops / SLICE_FLOPS["cpu"])),
        "latencies": latencies,
        "median_gap": sorted(gaps)[len(gaps) // 2] if gaps else None,
        "max_gap": max(gaps) if gaps else None,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1024x1024x81,2048x2048x81")
    ap.add_argument("--attention", choices=("host", "sdpa"), default="host", help="host: the test host's own (CPU)")
    ap.add_argument("--delays", default="1.5,4.0,9.0", help="seconds after the forward starts to ask for the stop")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    print(f"torch {torch.__version__}, CPU, fp32, 2 threads, load average {os.getloadavg()[0]:.1f}")
    print(
        "| video | queries x keys (last chunk) | one attention call | slices | stop landed after (s) | "
        "gap between checks: median / max (s) |"
    )
    print("|---|---|---|---|---|---|")
    delays = [float(d) for d in args.delays.split(",")]
    for size in args.sizes.split(","):
        w, h, n = (int(v) for v in size.split("x"))
        r = measure(w, h, n, delays, args.attention)
        lat = ", ".join("finished" if v is None else f"{v:.2f}" for v in r["latencies"])
        print(
            f"| {r['size']}, {r['attention']} | {r['queries']} x {r['keys']} | {r['whole_call_gflop']:.0f} GFLOP "
            f"| {r['slices_per_call']} | {lat} | {r['median_gap']:.2f} / {r['max_gap']:.2f} |",
            flush=True,
        )
        print(f"load average {os.getloadavg()[0]:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
