"""The sampler's memory estimate (dsa_core.memory_estimate) against the real peak RSS on CPU.

Each size runs in a fresh subprocess: random weights and the prompt's K/V are made first, the kernel's
peak-RSS counter is reset (/proc/self/clear_refs 5), then one sample_video call (fixed 2 steps) runs and the
growth of the peak (VmHWM) over the RSS before the call is compared with the estimate. Linux only.

    python benchmarks/bench_memory_estimate.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# (name, config dims, latent h, latent w, latent frames, chunk frames, window, sink[, attention])
# attention "fused": torch SDPA (the GPU path); "host": ComfyUI's own attention on CPU (sub-quadratic, chunked)
SIZES = [
    ("dim128 32x32 t9", dict(dim=128, ffn_dim=256, num_heads=1, num_layers=2), 32, 32, 9, 3, 0, 0),
    ("dim128 64x64 t6", dict(dim=128, ffn_dim=256, num_heads=1, num_layers=2), 64, 64, 6, 3, 0, 0),
    ("dim128 96x96 t6", dict(dim=128, ffn_dim=256, num_heads=1, num_layers=2), 96, 96, 6, 3, 0, 0),
    ("dim256 64x64 t12 w6+3", dict(dim=256, ffn_dim=1024, num_heads=2, num_layers=4), 64, 64, 12, 3, 6, 3),
    ("dim512 48x80 t9", dict(dim=512, ffn_dim=2048, num_heads=4, num_layers=4), 48, 80, 9, 3, 0, 0),
    ("dim512 96x96 t3 fpc1", dict(dim=512, ffn_dim=2048, num_heads=4, num_layers=2), 96, 96, 3, 1, 0, 0),
    ("host attn: dim128 64x64 t6", dict(dim=128, ffn_dim=256, num_heads=1, num_layers=2), 64, 64, 6, 3, 0, 0, "host"),
    (
        "host attn: dim256 64x64 t12 w6+3",
        dict(dim=256, ffn_dim=1024, num_heads=2, num_layers=4),
        64,
        64,
        12,
        3,
        6,
        3,
        "host",
    ),
    ("host attn: dim512 48x80 t9", dict(dim=512, ffn_dim=2048, num_heads=4, num_layers=4), 48, 80, 9, 3, 0, 0, "host"),
    # a long small video: 64x64 pixels, 4089 frames (1023 latent frames, 341 chunks)
    ("dim128 8x8 t1023", dict(dim=128, ffn_dim=256, num_heads=1, num_layers=2), 8, 8, 1023, 3, 0, 0),
    ("host attn: dim128 8x8 t1023", dict(dim=128, ffn_dim=256, num_heads=1, num_layers=2), 8, 8, 1023, 3, 0, 0, "host"),
]
QUICK = SIZES[:2]


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def host_attention():
    """ComfyUI's optimized attention on CPU (the test host's), its kind for the estimate, and the free memory."""
    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    import host_env

    host_env.import_comfy_cpu()
    import comfy.model_management as mm
    from comfy.ldm.modules.attention import optimized_attention

    kind = "chunked" if optimized_attention.__name__ in ("attention_sub_quad", "attention_split") else "fused"

    def attention(q, k, v):
        return optimized_attention(q, k, v, heads=q.shape[1], skip_reshape=True)

    return attention, kind, mm.get_free_memory(torch.device("cpu"))


def measure_one(spec: list) -> dict:
    """Runs inside the subprocess: one sampling call, its peak RSS growth and the estimate."""
    import torch

    from dsa_core.ar_sampler import sample_video
    from dsa_core.causal_wan import CausalWan
    from dsa_core.config import WanConfig
    from dsa_core.heap import release_free_heap
    from dsa_core.memory_estimate import estimate_sampling_memory
    from dsa_core.policies import FixedSteps
    from dsa_core.wan_model import WanDiT, init_random_weights

    name, dims, lh, lw, frames, chunk, window, sink, *which = spec
    torch.set_num_threads(2)
    config = WanConfig(**dims)
    attention, kind, free = None, "fused", None
    if which == ["host"]:
        attention, kind, free = host_attention()
    model = CausalWan(init_random_weights(WanDiT(config), seed=0).eval(), config, attention=attention)
    with torch.no_grad():
        text = model.encode_text(torch.randn(1, 512, config.text_dim))
    est = estimate_sampling_memory(
        config,
        latent_h=lh,
        latent_w=lw,
        chunk_frames=chunk,
        total_frames=frames,
        window_frames=window or None,
        sink_frames=sink,
        dtype=torch.float32,
        attention=kind,
        free_bytes=free,
    )
    Path("/proc/self/clear_refs").write_text("5")
    before = status_kib("VmRSS")
    sample_video(
        model,
        text,
        num_frames=frames,
        latent_h=lh,
        latent_w=lw,
        chunk_frames=chunk,
        policy=FixedSteps(2),
        seed=0,
        window_frames=window or None,
        sink_frames=sink,
        # what the sampler nodes do after every chunk on the CPU (--no-trim: the process without it)
        chunk_callback=None if os.environ.get("DSA_BENCH_NO_TRIM") else lambda info: release_free_heap(),
    )
    peak = status_kib("VmHWM")
    return {
        "name": name,
        "estimate": est.total,
        "kv": est.kv_cache,
        "attention": est.attention,
        "peak_growth": (peak - before) * 1024,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the two smallest sizes only")
    ap.add_argument(
        "--no-trim", action="store_true", help="do not release freed heap pages after each chunk (the nodes do)"
    )
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(measure_one(json.loads(args.one))))
        return 0
    import torch

    trim = "no heap trim" if args.no_trim else "freed heap returned after each chunk"
    print(f"torch {torch.__version__}, CPU, fp32, 2 threads, {trim}, load average {os.getloadavg()[0]:.1f}")
    print(
        "| size | estimate MiB | of it KV cache MiB | of it attention scores MiB | measured peak growth MiB "
        "| estimate / measured |"
    )
    print("|---|---|---|---|---|---|")
    worst = 0.0
    for spec in QUICK if args.quick else SIZES:
        out = subprocess.run(
            [sys.executable, __file__, "--one", json.dumps(spec)],
            capture_output=True,
            text=True,
            env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE", **({"DSA_BENCH_NO_TRIM": "1"} if args.no_trim else {})},
        )
        if out.returncode:
            print(out.stderr, file=sys.stderr)
            return out.returncode
        r = json.loads(out.stdout.strip().splitlines()[-1])
        ratio = r["estimate"] / max(1, r["peak_growth"])
        worst = max(worst, abs(ratio - 1))
        mib = 1024**2
        print(
            f"| {r['name']} | {r['estimate'] / mib:.1f} | {r['kv'] / mib:.1f} | {r['attention'] / mib:.1f} "
            f"| {r['peak_growth'] / mib:.1f} | {ratio:.2f} |"
        )
    print(f"largest deviation: {worst * 100:.0f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
