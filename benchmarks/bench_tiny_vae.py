"""Per-chunk streaming decode time: the host's tiny video decoder (TAEHV family: taew2_1 / lighttaew2_1's
architecture) against the Wan 2.1 VAE, at the video size Self-Forcing generates (480x832), in one run.

    python benchmarks/bench_tiny_vae.py                    # CPU, 480x832, 3 chunks of 3 latent frames
    python benchmarks/bench_tiny_vae.py --size 64x64 --chunks 2 --wan-dim 8   # seconds: proves it runs

Both VAEs are built by the host from a state dict as Load VAE builds them (comfy.sd.VAE: a random Wan 2.1 VAE at
dim 96, random_wan_vae in tests/testdata.py; a random TAEHV for 16 channels in float32, which the host takes as
lighttaew2_1), and decoded chunk by chunk through the pack's streaming decoders (dsa_core.streaming_decode:
CausalWanDecoder in the host's frame grouping, CausalMemBlockDecoder), as the sampler does with a vae connected.
Speed does not depend on the weights' values. The two decoders alternate chunk by chunk (Wan chunk 0, tiny chunk 0,
Wan chunk 1, ...) so a change in the machine's load hits both alike; the ratio is per chunk, within this one run.
The first chunk (3 latent frames -> 9 frames) and later chunks (-> 12 frames) are reported apart. On hosts that
decode the Wan VAE's latent frames in pairs (ComfyUI 0.33) a chunk's odd last frame is decoded with the next chunk
(the last chunk's time includes it, as the end of a video does): per-chunk Wan times then shift by one frame.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def load_average() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def build(wan_dim: int):
    """(Wan VAE, tiny VAE): the host's comfy.sd.VAE objects and their streaming decoders."""
    import comfy.ldm.wan.vae as wan_vae
    import comfy.sd
    from testdata import random_tiny_vae, random_wan_vae

    from dsa_core.streaming_decode import CausalMemBlockDecoder, CausalWanDecoder

    wan = comfy.sd.VAE(sd=random_wan_vae(wan_dim, seed=0).state_dict())
    tiny = comfy.sd.VAE(sd=random_tiny_vae(seed=0).state_dict())
    wan_dec = CausalWanDecoder.for_host(wan_vae, wan.first_stage_model, device=wan.device, dtype=wan.vae_dtype)
    fsm = tiny.first_stage_model
    tiny_dec = CausalMemBlockDecoder(fsm, device=tiny.device, dtype=tiny.vae_dtype, process_in=fsm.process_in)
    return (wan, wan_dec), (tiny, tiny_dec)


def measure(size: tuple[int, int], chunks: int, wan_dim: int, threads: int, chunk_frames: int = 3) -> dict:
    import torch

    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    (wan, wan_dec), (tiny, tiny_dec) = build(wan_dim)
    h, w = size
    z = torch.randn(1, 16, chunk_frames * chunks, h // 8, w // 8, generator=torch.Generator().manual_seed(1))
    times = {"wan": [], "tiny": []}
    frames = {"wan": 0, "tiny": 0}
    states = {"wan": wan_dec.start(), "tiny": tiny_dec.start()}
    decs = {"wan": wan_dec, "tiny": tiny_dec}
    with torch.inference_mode():  # as the host's executor runs nodes
        for c in range(chunks):
            piece = z[:, :, c * chunk_frames : (c + 1) * chunk_frames]
            for name in ("wan", "tiny"):
                t = time.perf_counter()
                out, states[name] = decs[name].decode(states[name], piece)
                if c == chunks - 1:  # the video's end: a frame a pairing host held back is decoded now
                    tail, _ = decs[name].flush(states[name])
                    frames[name] += 0 if tail is None else tail.shape[1]
                times[name].append(time.perf_counter() - t)
                frames[name] += out.shape[1]
                print(f"  [{name} chunk {c}: {times[name][-1]:.3f} s, {out.shape[1]} frames]", flush=True)
                del out
    return {
        "times": times,
        "frames": frames,
        "dtype": str(wan.vae_dtype).replace("torch.", ""),
        "chunk_frames": chunk_frames,
    }


def report(r: dict, size, chunks, wan_dim, threads, load_start: str) -> str:
    t = r["times"]
    later = lambda xs: xs[1:] or xs  # noqa: E731
    lines = [
        f"streaming decode per chunk ({r['chunk_frames']} latent frames), {size[0]}x{size[1]}, {chunks} chunks, CPU "
        f"{threads} thread(s), {r['dtype']}; Wan 2.1 VAE dim {wan_dim} vs tiny TAEHV (16 ch); load average "
        f"{load_start} at start, {load_average()} at end",
        f"  {'chunk':>5}  {'Wan VAE s':>10}  {'tiny s':>8}  {'Wan / tiny':>10}",
    ]
    for i, (a, b) in enumerate(zip(t["wan"], t["tiny"])):
        lines.append(f"  {i:>5}  {a:10.3f}  {b:8.3f}  {a / b:10.1f}")
    ratios = [a / b for a, b in zip(later(t["wan"]), later(t["tiny"]))]
    lines.append(
        f"  first chunk: Wan {t['wan'][0]:.3f} s, tiny {t['tiny'][0]:.3f} s (ratio {t['wan'][0] / t['tiny'][0]:.1f}); "
        f"later chunks (median): Wan {statistics.median(later(t['wan'])):.3f} s, tiny "
        f"{statistics.median(later(t['tiny'])):.3f} s, ratio median {statistics.median(ratios):.1f} "
        f"(range {min(ratios):.1f}-{max(ratios):.1f}); frames Wan {r['frames']['wan']}, tiny {r['frames']['tiny']}"
    )
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="480x832", help="video HxW")
    ap.add_argument("--chunks", type=int, default=3)
    ap.add_argument(
        "--chunk-frames",
        type=int,
        default=3,
        help="latent frames per chunk (1 on a slow CPU: both decoders are causal and linear in latent frames, so a "
        "3-frame chunk costs 3 later latent frames)",
    )
    ap.add_argument("--wan-dim", type=int, default=96, help="Wan VAE width (96 = Wan 2.1)")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS") or 2))
    a = ap.parse_args(argv)
    sys.path.insert(0, str(REPO / "tests"))
    import host_env

    host_env.import_comfy_cpu()
    sys.path.append(str(REPO))  # after the host: the repo's nodes/ package must not shadow the host's
    size = tuple(int(x) for x in a.size.lower().split("x"))
    start = load_average()
    r = measure(size, a.chunks, a.wan_dim, a.threads, a.chunk_frames)
    print(report(r, size, a.chunks, a.wan_dim, a.threads, start), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
