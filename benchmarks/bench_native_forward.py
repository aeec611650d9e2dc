"""The generator forward at equal work: this pack's CausalWan.forward_chunk against the host's native causal
model (comfy.ldm.wan.ar_model.CausalWanModel.forward_block, ComfyUI >= 0.33), on the same weights, CPU.

Both run the same passes as their samplers do: per chunk of 3 latent frames, 4 denoising forwards that
overwrite the chunk's K/V and 1 commit forward at t = 0 (35 forwards for 7 chunks). The native model keeps every
frame (its cache is sized to the whole video); ours runs once keeping every frame (equal work) and once with
a rolling window of 12 frames + 3 sink frames (its per-chunk cost stops growing). Runs alternate native / ours
(the order flips every repeat) so both see the same machine load; wall and process CPU time are printed.

    DSA_COMFY_DIR=/path/to/ComfyUI-0.33 python benchmarks/bench_native_forward.py [--chunks 7 --repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
from dsa_core.causal_wan import CausalWan  # noqa: E402
from dsa_core.config import WanConfig  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--latent", type=int, default=16)
    ap.add_argument("--chunks", type=int, default=7)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--before",
        default=None,
        help="a folder holding an earlier dsa_core copied as package 'dsa_core_before': adds its forward",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    import host_env

    host_env.import_comfy_cpu()
    import comfy.ldm.wan.ar_model as ar
    import comfy.ops

    cfg = WanConfig(dim=args.dim, ffn_dim=4 * args.dim, num_heads=args.dim // 128, num_layers=args.layers)
    native = ar.CausalWanModel(
        dim=cfg.dim,
        ffn_dim=cfg.ffn_dim,
        num_heads=cfg.num_heads,
        num_layers=cfg.num_layers,
        operations=comfy.ops.disable_weight_init,
    ).eval()
    from dsa_core.wan_model import WanDiT, init_random_weights

    native.load_state_dict(init_random_weights(WanDiT(cfg), seed=0).state_dict(), strict=True)
    cw = CausalWan(native, cfg)  # ours, over the very same modules
    lh = lw = args.latent
    fsl = (lh // 2) * (lw // 2)
    frames, cf = args.chunks * 3, 3
    g = torch.Generator().manual_seed(0)
    ctx = torch.randn(1, 512, 4096, generator=g)
    xs = [torch.randn(1, 16, cf, lh, lw, generator=g) for _ in range(args.chunks)]
    sig = [1.0, 0.9375, 0.8333, 0.625, 0.0]

    @torch.no_grad()
    def run_native():
        kv = native.init_kv_caches(1, frames * fsl, "cpu", torch.float32)
        ca = native.init_crossattn_caches(1, "cpu", torch.float32)
        for n, x in enumerate(xs):
            for s in sig:
                native.forward_block(x, torch.full((1, cf), 1000 * s), ctx, n * cf, kv, ca)
                if s:  # the next pass overwrites this chunk (as sample_ar_video rolls 'end' back)
                    for c in kv:
                        c["end"] -= cf * fsl

    @torch.no_grad()
    def run_ours(window=None, sink=0):
        text = cw.encode_text(ctx)
        cache = cw.new_cache(1, lh, lw, cf, window_frames=window, sink_frames=sink, total_frames=frames)
        for n, x in enumerate(xs):
            for s in sig:
                cw.forward_chunk(x, torch.full((1,), 1000 * s), text, cache, n * cf)

    runs = {
        "native (keep all)": run_native,
        "ours (keep all)": run_ours,
        "ours (window 12 + 3 sink)": lambda: run_ours(12, 3),
    }
    if args.before:
        sys.path.insert(0, args.before)
        from dsa_core_before.causal_wan import CausalWan as Before

        cw_before = Before(native, cfg)

        @torch.no_grad()
        def run_before():
            text = cw_before.encode_text(ctx)
            cache = cw_before.new_cache(1, lh, lw, cf, total_frames=frames)
            for n, x in enumerate(xs):
                for s in sig:
                    cw_before.forward_chunk(x, torch.full((1,), 1000 * s), text, cache, n * cf)

        runs["ours before (keep all)"] = run_before
    times = {k: [] for k in runs}
    cpu = {k: [] for k in runs}
    for fn in runs.values():
        fn()  # warm-up
    print(
        f"dim {cfg.dim} x {cfg.num_layers} layers, latent {lh}x{lw}, {args.chunks} chunks x 3 frames, "
        f"{5 * args.chunks} forwards each, {args.threads} threads, load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    for r in range(args.repeats):
        order = list(runs) if r % 2 == 0 else list(runs)[::-1]
        for k in order:
            t, c = time.perf_counter(), time.process_time()
            runs[k]()
            times[k].append(time.perf_counter() - t)
            cpu[k].append(time.process_time() - c)
    base_w, base_c = min(times["native (keep all)"]), min(cpu["native (keep all)"])
    print(
        f"{'run':28s} {'wall s min/median':>18s} {'cpu s min/median':>18s} {'wall / native':>13s} {'cpu / native':>12s}"
    )
    for k in runs:
        w, c = times[k], cpu[k]
        print(
            f"{k:28s} {min(w):8.2f}/{statistics.median(w):<8.2f} {min(c):8.2f}/{statistics.median(c):<8.2f} "
            f"{min(w) / base_w:13.3f} {min(c) / base_c:12.3f}"
        )
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
