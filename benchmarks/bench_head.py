"""How much the confidence head costs next to one generator step, at Wan 2.1 1.3B's shape.

Method: random weights (the shapes are what matter), float32 on whatever device is given (CPU by
default, where the spatial size is reduced to keep it short). One generator step = one
CausalWan.forward_chunk of a `--frames`-frame chunk appended to a KV cache already holding
`--context` frames (what a mid-video step does). The head is timed on that step's own outputs
(pooled hidden + time embedding, [B, Tc, 1536]); the per-frame mean pooling already happens inside the
generator's forward and is part of the step. Medians over `--repeats` runs after warm-up. Also printed:
parameter ratio and the analytic FLOP ratio at the full 480x832 size (1560 tokens per frame), where the
head's cost stays the same and the generator's grows with the token count. Medians and minimums are both
printed: on a shared CPU the minimum is the less contended figure.

Run: python benchmarks/bench_head.py [--latent-h 8 --latent-w 8 --frames 3 --context 3 --device cpu]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from dsa_core.causal_wan import CausalWan  # noqa: E402
from dsa_core.confidence_head import ConfidenceHead  # noqa: E402
from dsa_core.config import WAN21_T2V_1_3B  # noqa: E402
from dsa_core.wan_model import WanDiT  # noqa: E402


def timed(fn, repeats, device):
    out = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        out.append(time.perf_counter() - t)
    return statistics.median(out), min(out)


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--latent-h", type=int, default=8)
    ap.add_argument("--latent-w", type=int, default=8)
    ap.add_argument("--frames", type=int, default=3)
    ap.add_argument("--context", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--head-repeats", type=int, default=200)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    a = ap.parse_args()
    device, dtype = torch.device(a.device), getattr(torch, a.dtype)
    cfg = WAN21_T2V_1_3B
    torch.manual_seed(0)
    dit = WanDiT(cfg, device=device, dtype=dtype).eval()
    head = ConfidenceHead(cfg.dim, device=device, dtype=torch.float32).eval()
    n_gen = sum(p.numel() for p in dit.parameters())
    n_head = sum(p.numel() for p in head.parameters())
    cw = CausalWan(dit, cfg)
    text = cw.encode_text(torch.randn(1, 512, cfg.text_dim, device=device, dtype=dtype))
    h, w, f = a.latent_h, a.latent_w, a.frames
    cache = cw.new_cache(1, h, w, f, total_frames=a.context + f, device=device, dtype=dtype)
    t0 = torch.zeros(1, device=device, dtype=dtype)
    for s in range(0, a.context, f):  # fill the context
        cw.forward_chunk(
            torch.randn(1, 16, min(f, a.context - s), h, w, device=device, dtype=dtype),
            t0,
            text,
            cache,
            cache.frames_written,
        )
    x = torch.randn(1, 16, f, h, w, device=device, dtype=dtype)
    t = torch.full((1,), 937.5, device=device, dtype=dtype)
    out = cw.forward_chunk(x, t, text, cache, a.context)  # warm-up, and the inputs the head sees
    step_s, step_min = timed(lambda: cw.forward_chunk(x, t, text, cache, a.context), a.repeats, device)
    for _ in range(10):
        head(out.hidden, out.time_emb)
    head_s, head_min = timed(lambda: head(out.hidden, out.time_emb).min().item(), a.head_repeats, device)

    tokens = f * ((h + 1) // 2) * ((w + 1) // 2)
    head_flops = (
        2
        * f
        * (
            head.fc1.in_features * head.fc1.out_features
            + head.fc2.in_features * head.fc2.out_features
            + head.out.in_features
        )
    )
    full_tokens = 3 * 1560
    gen_flops_full = 2 * n_gen * full_tokens  # lower bound: matmuls only, no attention
    print(f"device {device} ({torch.get_num_threads()} threads), dtype {a.dtype}, torch {torch.__version__}")
    print(f"generator: Wan2.1 1.3B shape (dim {cfg.dim}, {cfg.num_layers} layers), {n_gen / 1e9:.3f} B params")
    print(f"head: {n_head / 1e6:.3f} M params = {100 * n_head / n_gen:.3f} % of the generator")
    print(
        f"one generator step: chunk of {f} latent frames at {h}x{w} ({tokens} tokens) over {a.context} cached "
        f"frames: {step_s * 1e3:.1f} ms median, {step_min * 1e3:.1f} ms min of {a.repeats}"
    )
    print(
        f"head on that step's outputs: {head_s * 1e3:.3f} ms median, {head_min * 1e3:.3f} ms min of "
        f"{a.head_repeats} (incl. the .item() the sampler does)"
    )
    print(
        f"head / step time at this reduced size: {100 * head_s / step_s:.3f} % (medians), "
        f"{100 * head_min / step_min:.3f} % (mins)  (goal < 1 %)"
    )
    print(
        f"analytic FLOPs at full 480x832 (3 x 1560 tokens): head {head_flops / 1e6:.2f} MFLOP vs generator "
        f">= {gen_flops_full / 1e12:.2f} TFLOP: {100 * head_flops / gen_flops_full:.6f} %"
    )


if __name__ == "__main__":
    main()
