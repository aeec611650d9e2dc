"""What a graph gets from torch.compile: the DSA sampler through the node path, on a MODEL with and without the host's
TorchCompileModel, in one real ComfyUI (in-process: the host's executor, loaders, model management and the pack).

    UNETLoader -> [TorchCompileModel] -> DSA Confidence Sampler (policy fixed, 4 steps, self_forcing) -> SaveLatent

Beside benchmarks/bench_gpu.py's own compile (which compiles CausalWan's block halves directly), this times what an
artist's graph runs: DSA reads the compile options TorchCompileModel records on the MODEL and compiles its block
pieces with them (nodes/host_forward.py). Both variants run the same video; the timed unit is one prompt in which only
the sampler (and its SaveLatent) runs: the loader and TorchCompileModel stay cached, the seed changes every repeat.
Exit status 2: no CUDA (without --smoke); 3: the host cannot start here (a package it imports is missing).
FPS = video frames / that prompt's wall time (DiT only: no VAE in the graph); first chunk = prompt start to the
sampler's first chunk event; ms/chunk-step = wall time / NFE (sampler overhead included). The first run of each
variant is the warm-up (model load; for the compiled one the compilation, whose graph count the run reports).

    python benchmarks/bench_node_compile.py --json out.json           # CUDA: Wan 2.1 1.3B shape, 480x832, 81 frames
    python benchmarks/bench_node_compile.py --smoke --backend cudagraphs   # CPU, tiny: proves the path works

Output JSON: bench_gpu.py's layout ({"meta", "variants": {key: {"name", "rows", "peak_mem_gib"}}, "notes"}), so
scripts/gpu_check.py folds the rows into its table (part node_compile).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

VARIANTS = {"node": "node path: DSA Sampler", "node-compile": "node path: TorchCompileModel -> DSA Sampler"}


def graph(unet: str, prompt: str, width: int, height: int, length: int, seed: int, compiled: bool, backend: str):
    g = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": unet, "weight_dtype": "default"}},
        "2": {"class_type": "DSAPromptEmbedding", "inputs": {"embedding": prompt}},
        "4": {
            "class_type": "DSASampler",
            "inputs": {
                "model": ["3", 0] if compiled else ["1", 0],
                "positive": ["2", 0],
                "seed": seed,
                "width": width,
                "height": height,
                "length": length,
                "frames_per_chunk": 3,
                "policy": "fixed",
                "threshold_preset": "balanced",
                "threshold": 0.75,
                "min_steps": 1,
                "max_steps": 4,
                "schedule": "self_forcing",
                "cache_window": 0,
                "sink_frames": 0,
            },
        },
        "5": {"class_type": "SaveLatent", "inputs": {"samples": ["4", 0], "filename_prefix": "bench_node"}},
    }
    if compiled:
        g["3"] = {"class_type": "TorchCompileModel", "inputs": {"model": ["1", 0], "backend": backend}}
    return g


def _row(walls, firsts, nfe, frames, warmup_s):
    fps = [frames / w for w in walls]
    return {
        "mode": "fixed-4",
        "vae": False,
        "vae_options": [],
        "vae_overlap": False,
        "steps": 4.0,
        "nfe": nfe,
        "repeats": len(walls),
        "fps": fps,
        "dit_fps": fps,
        "latency_s": firsts,
        "dit_ms_chunk": [],
        "vae_ms_chunk": [],
        "ms_per_step": 1000 * sorted(walls)[len(walls) // 2] / nfe,
        "tflops": None,
        "tflop_per_run": None,
        "overhead": None,
        "warmup_s": warmup_s,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny model and video (what the test suite runs)")
    ap.add_argument("--backend", default="inductor", choices=["inductor", "cudagraphs"], help="TorchCompileModel's")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--budget-s", type=float, default=None, help="stop repeating once this much time is spent")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    from dsa_core.config import TINY, WAN21_T2V_1_3B

    cuda = torch.cuda.is_available() and not args.smoke
    if not cuda and not args.smoke:
        print("no CUDA device: pass --smoke for the CPU rehearsal")
        if args.json:
            Path(args.json).write_text(json.dumps({"meta": {"device": "cpu"}, "variants": {}, "notes": ["no CUDA"]}))
        return 2
    cfg = TINY if args.smoke else WAN21_T2V_1_3B
    width, height, length = (32, 32, 21) if args.smoke else (832, 480, 81)
    text_len = 8 if args.smoke else 512
    repeats = args.repeats or (1 if args.smoke else 2)
    frames = length
    results, notes, peaks = {}, [], {}
    meta = {"device": "cuda" if cuda else "cpu", "torch": torch.__version__, "backend": args.backend}

    def dump():
        if args.json:
            variants = {
                k: (v if isinstance(v, str) else {"name": VARIANTS[k], "rows": [v], "peak_mem_gib": peaks.get(k)})
                for k, v in results.items()
            }
            Path(args.json).write_text(json.dumps({"meta": meta, "variants": variants, "notes": notes}, indent=1))

    from inprocess_host import InProcessHost
    from safetensors.torch import save_file
    from testdata import tiny_wan_state_dict, write_prompt

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        packs = tmp / "packs"
        packs.mkdir()
        (packs / "ComfyUI-DSA").symlink_to(REPO, target_is_directory=True)
        models = tmp / "models"
        try:  # the whole host (server, nodes, comfy_api): an image without its packages cannot run a graph
            host = InProcessHost(tmp / "base", packs, models).start("ComfyUI-DSA", cpu=not cuda)
        except Exception as e:
            notes.append(f"the host cannot run a graph here: {type(e).__name__}: {str(e)[:300]}")
            print(notes[-1])
            dump()
            return 3
        t = time.perf_counter()
        sd = tiny_wan_state_dict(cfg)
        unet_path = models / "diffusion_models" / "bench_node.safetensors"
        save_file({k: v.to(torch.bfloat16) if cuda else v for k, v in sd.items()}, str(unet_path))
        unet = unet_path.name
        del sd
        prompt = write_prompt(models / "dsa_prompts" / "bench_node.safetensors", tokens=text_len).name
        import comfyui_version

        gpu = torch.cuda.get_device_name(0) if cuda else None
        meta["setup"] = setup = (
            f"node path in ComfyUI {comfyui_version.__version__}: device {'cuda' if cuda else 'cpu'}"
            f"{f' ({gpu})' if gpu else ''}, torch {torch.__version__}, config dim {cfg.dim} x {cfg.num_layers} layers, "
            f"{width}x{height}, {length} frames, chunks of 3 latent frames, text {text_len} tokens, random weights "
            f"written {'bf16' if cuda else 'fp32'}, loaded by UNETLoader 'default' (compute dtype: the host's "
            f"choice), TorchCompileModel backend {args.backend}, repeats {repeats} after 1 warm-up"
        )
        meta["gpu"] = gpu
        print(setup + f" (weights written in {time.perf_counter() - t:.1f} s)", flush=True)
        first_chunk = {}

        def send_sync(event, data, sid=None, _orig=host.server.send_sync):
            if event == "dsa.steps" and data.get("chunk") == 0 and "t" not in first_chunk:
                first_chunk["t"] = time.perf_counter()
            return _orig(event, data, sid)

        host.server.send_sync = send_sync
        latents = {}
        for key in VARIANTS:
            compiled = key == "node-compile"
            ex = host.executor("classic")
            walls, firsts, warm, graphs = [], [], 0.0, []
            try:
                for r in range(repeats + 1):
                    if r and args.budget_s and time.perf_counter() - t_start > args.budget_s:
                        notes.append(f"{key}: budget spent after {r - 1} measured runs")
                        break
                    first_chunk.clear()
                    if cuda:
                        torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    res = host.run(graph(unet, prompt, width, height, length, 100 + r, compiled, args.backend), ex)
                    if cuda:
                        torch.cuda.synchronize()
                    dt = time.perf_counter() - t0
                    if not res.success:
                        raise RuntimeError(str(res.error())[:500])
                    report = res.outputs["4"][2][0]
                    graphs.append(report["host_patches"]["compiled_graphs"])
                    if r == 0:
                        warm = dt
                        latents[key] = res.outputs["4"][0][0]["samples"]
                    else:
                        walls.append(dt)
                        firsts.append(first_chunk.get("t", t0 + dt) - t0)
                    nfe = report["total_nfe"]
            except Exception as e:  # one variant failing must not lose the other
                results[key] = f"failed: {type(e).__name__}: {str(e)[:300]}"
                dump()
                continue
            if not walls:
                results[key] = "skipped: budget spent in the warm-up"
                dump()
                continue
            results[key] = _row(walls, firsts, nfe, frames, warm)
            if cuda:
                peaks[key] = torch.cuda.max_memory_allocated() / 2**30
            notes.append(f"{key}: graphs compiled per run {json.dumps(graphs)} (warm-up first; null = not compiled)")
            w = sorted(walls)[len(walls) // 2]
            print(f"{VARIANTS[key]}: warm-up {warm:.1f} s, median {w:.3f} s = {frames / w:.2f} FPS, graphs {graphs}")
            dump()
        if len(latents) == 2:
            a, b = latents["node-compile"], latents["node"]
            diff = float((a - b).abs().max() / b.abs().max())
            notes.append(f"same seed, compiled vs uncompiled latent: max |diff| / max |uncompiled| = {diff:.2e}")
            print(notes[-1])
        dump()
    return 0


if __name__ == "__main__":
    sys.exit(main())
