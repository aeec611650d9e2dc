"""Decoder memory and latency: the streaming decode (dsa_core.streaming_decode, chunk by chunk, causal cache kept)
against the host's VAE Decode of the same whole latent, with the host's own Wan 2.1 VAE (random weights).

    python benchmarks/bench_vae_stream.py            # CPU: measured sizes + prediction for 81 frames at 480x832
    python benchmarks/bench_vae_stream.py --quick    # fewer, smaller points
    python benchmarks/bench_vae_stream.py --device cuda   # CUDA: torch.cuda peak allocated

Each measurement runs in a fresh child process (so a peak is that decode's alone). CPU: peak memory = peak RSS
(ru_maxrss) minus the RSS just before the decode, with glibc's mmap threshold fixed at 64 KiB
(MALLOC_MMAP_THRESHOLD_) so freed activations go back to the OS and RSS follows the live tensors. CUDA: peak
allocated minus allocated before. "working" = peak minus the decoded video itself (float32 [T, H, W, 3], which
both produce; on a GPU the streaming decode moves each chunk's frames off the device at once).
Streaming = what the DSA nodes do with a VAE connected: each chunk of 3 latent frames decoded as it would be
committed, frames written into one preallocated output (dsa_core.streaming_decode.FrameBuffer).
Host = comfy.sd.VAE.decode, what VAE Decode runs (one call over the whole latent).
Measured at VAE width 16 (dim 96 is 36x the compute: too slow for this CPU); the host's VAE Decode is itself
frame by frame, or pair by pair on newer hosts (its feature cache), so both hold the same decoder activations and
differ by what the host accumulates: the whole decoded video on the VAE device (a torch.cat per latent frame) and its
copies.
Prediction for Wan 2.1's VAE at 480x832 (printed, not measured): the decoder cache scales exactly with pixels and
width (its tensors are feature maps); the host's extra is its whole-video output, twice while concatenating
(read from the host's comfy/ldm/wan/vae.py), against one chunk's frames for streaming.
Time to first frame: streaming = the first chunk's decode; host = the whole decode (its frames exist only when the
call returns). Decoded FPS = video frames / decode wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHUNK = 3
TARGET_HW = (480, 832)


def build_host_vae(dim: int, device: str):
    """The host's comfy.sd.VAE around a random Wan 2.1 VAE state dict (the host's own detection and module)."""
    import comfy.sd
    import torch
    from testdata import random_wan_vae

    sd = random_wan_vae(dim, seed=0).state_dict()
    return comfy.sd.VAE(sd=sd, device=torch.device(device))


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(spec: dict) -> dict:
    """One decode in this (fresh) process; returns its figures."""
    import torch

    sys.path.insert(0, str(REPO / "tests"))
    import host_env

    sys.path.append(str(REPO))  # after the host: the repo's nodes/ package must not shadow the host's
    from dsa_core.streaming_decode import wan_video_frames

    device = spec["device"]
    if device == "cpu":
        host_env.import_comfy_cpu()
        torch.set_num_threads(spec["threads"])
        torch.set_flush_denormal(True)
    else:
        sys.path.insert(0, str(host_env.comfy_dir()))
    import comfy.model_management as mm

    vae = build_host_vae(spec["dim"], device)
    h, w, t = spec["h"], spec["w"], spec["t"]
    z = torch.randn(1, 16, t, h // 8, w // 8, generator=torch.Generator().manual_seed(1))
    frames_out = wan_video_frames(t, True)
    out_mib = frames_out * h * w * 3 * 4 / 2**20
    mm.load_models_gpu([vae.patcher])
    cuda = device != "cpu"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20
    else:
        base = _rss_mib()
    t0 = time.perf_counter()
    first = None
    cache_mib = None
    with torch.inference_mode():  # the host's executor runs every node under inference_mode
        images, first, cache_mib = _decode(spec, vae, z, frames_out, mm, cuda, t0)
    if cuda:
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**20 - base
        on_device_out = 0.0 if spec["method"] == "stream" else out_mib
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0 - base
        on_device_out = out_mib
    assert tuple(images.shape) == (frames_out, h, w, 3), images.shape
    return {
        **spec,
        "peak_mib": peak,
        "working_mib": peak - on_device_out,
        "out_mib": out_mib,
        "wall_s": wall,
        "first_frame_s": first,
        "fps": frames_out / wall,
        "frames": frames_out,
        "cache_mib": cache_mib,
        "dtype": str(vae.vae_dtype).replace("torch.", ""),
    }


def _decode(spec, vae, z, frames_out, mm, cuda, t0):
    import torch

    from dsa_core.streaming_decode import CausalWanDecoder, FrameBuffer

    first = cache_mib = None
    t, h, w = z.shape[2], z.shape[3] * 8, z.shape[4] * 8
    if spec["method"] == "host":
        images = vae.decode(z)  # what VAE Decode runs, then its reshape to [B * T, H, W, 3]
        images = images.reshape(-1, *images.shape[-3:])
        first = time.perf_counter() - t0
    else:
        import comfy.ldm.wan.vae as wan_vae

        dec = CausalWanDecoder.for_host(wan_vae, vae.first_stage_model, device=vae.device, dtype=vae.vae_dtype)
        buf = FrameBuffer(frames_out, device=mm.intermediate_device())
        state = dec.start()
        for s in range(0, t, CHUNK):
            frames, state = dec.decode(state, z[:, :, s : s + CHUNK])
            buf.append(frames.to(buf.device or frames.device))
            del frames
            if first is None:
                if cuda:
                    torch.cuda.synchronize()
                first = time.perf_counter() - t0
        tail, _ = dec.flush(state)  # a frame a pair-decoding host held back, at the video's end
        if tail is not None:
            buf.append(tail.to(buf.device or tail.device))
        images = buf.frames.reshape(-1, h, w, 3)
        cache_mib = state.nbytes / 2**20
    return images, first, cache_mib


def run_child(spec: dict) -> dict:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
    p = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True, env=env, timeout=3600
    )
    lines = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
    if p.returncode or not lines:
        raise RuntimeError(f"child failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def load_average() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--dim", type=int, default=16, help="VAE width measured (Wan 2.1's is 96; see --target-dim)")
    ap.add_argument("--target-dim", type=int, default=96, help="VAE width of the prediction (96 = Wan 2.1)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--sizes",
        default=None,
        help="video sizes HxW, comma list (default 32x32,48x48,64x64); on a GPU "
        "e.g. 480x832 with --dim 96 measures the prediction directly",
    )
    ap.add_argument("--lengths", default=None, help="latent frames, comma list (default 21,201; --quick 21,61)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print("RESULT " + json.dumps(child(json.loads(a.child))), flush=True)
        return 0
    sizes = [tuple(map(int, x.lower().split("x"))) for x in (a.sizes or "32x32,48x48,64x64").split(",")]
    lengths = [int(x) for x in (a.lengths or ("21,61" if a.quick else "21,201")).split(",")]  # 81 frames, longer
    t0 = lengths[0]
    print(
        f"decoder memory: host VAE Decode vs streaming, Wan 2.1 VAE dim {a.dim} (random weights), device "
        f"{a.device}, {a.threads} threads; load average at start {load_average()}",
        flush=True,
    )
    rows = []
    plan = [(m, h, w, t0) for (h, w) in sizes for m in ("host", "stream")]
    plan += [(m, sizes[0][0], sizes[0][1], t) for t in lengths[1:] for m in ("host", "stream")]
    for method, h, w, t in plan:
        spec = {"method": method, "h": h, "w": w, "t": t, "dim": a.dim, "device": a.device, "threads": a.threads}
        r = run_child(spec)
        rows.append(r)
        print(
            f"  {method:6s} {h}x{w}  {r['frames']:4d} frames  peak {r['peak_mib']:7.1f} MiB  working "
            f"{r['working_mib']:7.1f} MiB  (output {r['out_mib']:5.1f})  first frame {r['first_frame_s']:6.2f} s  "
            f"{r['fps']:5.2f} frames/s" + (f"  cache {r['cache_mib']:.2f} MiB" if r["cache_mib"] else ""),
            flush=True,
        )
    print(f"load average at end {load_average()}; dtype {rows[0]['dtype']}")
    for t in lengths[1:]:
        h, w = sizes[0]
        pick = {(r["method"], r["t"]): r for r in rows if (r["h"], r["w"]) == (h, w)}
        for m in ("host", "stream"):
            print(
                f"  {m:6s} peak {h}x{w}: {pick[(m, t0)]['frames']} frames {pick[(m, t0)]['peak_mib']:.1f} MiB -> "
                f"{pick[(m, t)]['frames']} frames {pick[(m, t)]['peak_mib']:.1f} MiB"
            )
    # Prediction (not a measurement): the decoder cache has channels proportional to the VAE width and tensors
    # proportional to the pixel count, so it scales exactly; the host decode's extra over streaming on the VAE
    # device is its growing whole-video output (torch.cat per latent frame: the old and the new tensor at once).
    hw_t = TARGET_HW[0] * TARGET_HW[1]
    ref = next(r for r in rows if r["method"] == "stream" and (r["h"], r["w"]) == sizes[-1] and r["t"] == t0)
    cache_fp32 = ref["cache_mib"] * hw_t / (ref["h"] * ref["w"]) * a.target_dim / a.dim / 1024
    print(f"\nprediction for Wan 2.1's VAE (dim {a.target_dim}) at {TARGET_HW[0]}x{TARGET_HW[1]}:")
    print(
        f"  decoder cache (streaming; carried in the DSA_STATE): {cache_fp32:.2f} GiB float32, "
        f"{cache_fp32 / 2:.2f} GiB bf16 (measured {ref['cache_mib']:.2f} MiB at {ref['h']}x{ref['w']}, dim {a.dim}, "
        f"scaled by pixels and width)"
    )
    for frames in (81, 481):
        video = frames * hw_t * 3 / 2**30
        chunk = 12 * hw_t * 3 / 2**30
        print(
            f"  {frames} frames: host VAE Decode holds its whole output on the VAE device, up to 2 x {video * 2:.2f}"
            f" GiB (bf16) while concatenating; streaming holds one chunk's frames ({chunk * 2:.3f} GiB bf16) before "
            f"moving them off: host peak - streaming peak ~ {2 * video * 2 - chunk * 2:.2f} GiB bf16 "
            f"({2 * video * 4 - chunk * 4:.2f} GiB float32); the per-frame decoder activations are the same"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
