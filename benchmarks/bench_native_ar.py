"""The host's own autoregressive sampler against DSA's, at equal work, in one real ComfyUI (CPU).

Needs a host with native causal AR (ComfyUI with comfy.model_base.WAN21_CausalAR, e.g. 0.33.0); run with that
host's python and DSA_HOST_ROOT pointing at it. Both graphs load the same random-weight causal-AR-flagged Wan
file through UNETLoader and make the same video:

  native: EmptyARVideoLatent -> SamplerCustomAdvanced(RandomNoise, CFGGuider cfg 1, Sampler AR Video,
          BasicScheduler simple 4 steps)
  DSA:    DSA Confidence Sampler, policy fixed, max_steps 4, schedule model, noise sampler_ar_video

Equal work: 4 denoising forwards + 1 commit forward per block in both (the outputs are checked equal). The
timed unit is one prompt in which only the sampler (and a SaveLatent) runs: the loaders stay cached, the seed
changes every repeat. Runs alternate native / DSA (the order flips every repeat) so both see the same machine
load. Both wall time and the process's CPU time are printed: on a shared machine the CPU time (the work the
process did) is the steadier figure, the wall time what a user waits.

  python benchmarks/bench_native_ar.py [--dim 512 --layers 8 --latent 16 --length 33 --repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


def graphs(unet: str, prompt: str, px: int, length: int, fpc: int, seed: int) -> tuple[dict, dict]:
    common = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": unet, "weight_dtype": "default"}},
        "2": {"class_type": "DSAPromptEmbedding", "inputs": {"embedding": prompt}},
    }
    native = {
        **common,
        "3": {
            "class_type": "EmptyARVideoLatent",
            "inputs": {"width": px, "height": px, "length": length, "batch_size": 1},
        },
        "4": {"class_type": "SamplerARVideo", "inputs": {"num_frame_per_block": fpc}},
        "5": {
            "class_type": "BasicScheduler",
            "inputs": {"model": ["1", 0], "scheduler": "simple", "steps": 4, "denoise": 1.0},
        },
        "6": {"class_type": "RandomNoise", "inputs": {"noise_seed": seed}},
        "7": {
            "class_type": "CFGGuider",
            "inputs": {"model": ["1", 0], "positive": ["2", 0], "negative": ["2", 0], "cfg": 1.0},
        },
        "8": {
            "class_type": "SamplerCustomAdvanced",
            "inputs": {
                "noise": ["6", 0],
                "guider": ["7", 0],
                "sampler": ["4", 0],
                "sigmas": ["5", 0],
                "latent_image": ["3", 0],
            },
        },
        "9": {"class_type": "SaveLatent", "inputs": {"samples": ["8", 0], "filename_prefix": "bench_native"}},
    }
    dsa = {
        **common,
        "8": {
            "class_type": "DSASampler",
            "inputs": {
                "model": ["1", 0],
                "positive": ["2", 0],
                "seed": seed,
                "width": px,
                "height": px,
                "length": length,
                "frames_per_chunk": fpc,
                "policy": "fixed",
                "threshold_preset": "balanced",
                "threshold": 0.75,
                "min_steps": 1,
                "max_steps": 4,
                "schedule": "model",
                "cache_window": 0,
                "sink_frames": 0,
                "noise": "sampler_ar_video",
            },
        },
        "9": {"class_type": "SaveLatent", "inputs": {"samples": ["8", 0], "filename_prefix": "bench_dsa"}},
    }
    return native, dsa


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--latent", type=int, default=16, help="latent height = width")
    ap.add_argument("--length", type=int, default=33, help="video frames, 4k+1 (33 = 9 latent frames)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(args.threads)
    from inprocess_host import InProcessHost
    from testdata import write_causal_ar_wan, write_prompt

    from dsa_core.config import WanConfig

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        packs = tmp / "packs"
        packs.mkdir()
        (packs / "ComfyUI-DSA").symlink_to(REPO, target_is_directory=True)
        models = tmp / "models"
        host = InProcessHost(tmp / "base", packs, models).start("ComfyUI-DSA")
        import comfy.model_base

        if not hasattr(comfy.model_base, "WAN21_CausalAR"):
            print("this host has no native causal AR (comfy.model_base.WAN21_CausalAR): nothing to compare")
            return 2
        cfg = WanConfig(dim=args.dim, ffn_dim=args.dim * 2, num_heads=args.dim // 128, num_layers=args.layers)
        unet = write_causal_ar_wan(models / "diffusion_models" / "bench_causal_ar.safetensors", cfg).name
        prompt = write_prompt(models / "dsa_prompts" / "bench_prompt.safetensors").name
        px = args.latent * 8
        t = (args.length - 1) // 4 + 1
        import comfyui_version

        print(
            f"ComfyUI {comfyui_version.__version__}, torch {torch.__version__}, {args.threads} threads; "
            f"dim {args.dim}, {args.layers} layers, latent {args.latent}x{args.latent}, {t} latent frames"
        )
        print(
            f"{'blocks':<14}{'clock':<6}{'native s min/median':>22}{'DSA s min/median':>20}"
            f"{'native/DSA median':>19}{'max rel diff':>14}"
        )
        for fpc in (1, 3):
            if t % fpc:
                continue
            ex = host.executor("classic")
            times = {("native", "wall"): [], ("dsa", "wall"): [], ("native", "cpu"): [], ("dsa", "cpu"): []}
            diff = None
            for r in range(args.repeats + 1):
                native, dsa = graphs(unet, prompt, px, args.length, fpc, seed=100 + r)
                outs = {}
                order = (("native", native), ("dsa", dsa))
                for name, g in order if r % 2 else order[::-1]:
                    t0, c0 = time.perf_counter(), time.process_time()
                    res = host.run(g, executor=ex)
                    dt, dc = time.perf_counter() - t0, time.process_time() - c0
                    assert res.success, res.error()
                    outs[name] = res.outputs["8"][0][0]["samples"]
                    if r:  # the first round is the warm-up (and loads the model)
                        times[(name, "wall")].append(dt)
                        times[(name, "cpu")].append(dc)
                d = float((outs["native"] - outs["dsa"]).abs().max() / outs["native"].abs().max())
                diff = d if diff is None else max(diff, d)
            label = "frame-wise" if fpc == 1 else f"chunk-wise {fpc}"
            for clock in ("wall", "cpu"):
                n, s = times[("native", clock)], times[("dsa", clock)]
                print(
                    f"{label:<14}{clock:<6}{min(n):>12.3f}/{statistics.median(n):<9.3f}"
                    f"{min(s):>10.3f}/{statistics.median(s):<9.3f}"
                    f"{statistics.median(n) / statistics.median(s):>19.3f}{diff:>14.1e}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
