"""GPU benchmark: Wan 2.1 1.3B-shaped causal generator + Wan 2.1 VAE decode, as Self-Forcing and DSA
report speed (first-chunk latency and FPS on one GPU), next to their published figures.

    python benchmarks/bench_gpu.py                        # CUDA: 1.3B shape, 480x832, bf16, 7 chunks
    python benchmarks/bench_gpu.py --compile              # + torch.compile rows
    python benchmarks/bench_gpu.py --compile --cuda-graphs
    python benchmarks/bench_gpu.py --smoke                # CPU, reduced size: proves the script works

Setup (full run): WAN21_T2V_1_3B (dim 1536, 30 layers) with random weights (speed does not depend on
the values), latent 60x104 (480x832 video), chunks of 3 latent frames, 7 chunks = 21 latent frames =
81 video frames, bf16 weights/activations/KV cache, text context 512 tokens, batch 1, no CFG.
Modes (bench_common.MODES): fixed-4 = Self-Forcing's sampler (4 steps + 1 commit pass per chunk);
adaptive-3 / adaptive-2 = ConfidencePolicy driven by a scripted head (real head cost, scripted
verdicts) whose per-chunk steps average 3 and 2.
VAE: the host's comfy.ldm.wan.vae.WanVAE (ComfyUI must be importable; dim 96 as Wan 2.1, random
weights) decoding each chunk as soon as it is committed, with its causal feature cache kept across
chunks (streaming): 3 latent frames -> 9 video frames for the first chunk, 12 after. Skipped, with a
note, when the host cannot be imported.
Figures: latency = start of the run to the first chunk decoded (DiT + VAE); FPS = 81 video frames /
wall time of the whole run (DiT + VAE), Self-Forcing's counting (21 latent -> 81 video frames);
DiT-only FPS leaves the decode out. Min/median over --repeats runs after a warm-up run.
Attention backends: torch SDPA (auto kernel choice: flash for bf16 on recent GPUs), SDPA forced to the
flash kernel (CUDA only), xformers (if importable), the host's optimized_attention (if importable).
--compile: torch.compile of the transformer block (CausalWan._block; one graph shared by all 30 blocks,
the cache read/write + attention stay eager); --cuda-graphs: the same with mode='reduce-overhead'
(CUDA graphs; CUDA only). Overhead ratio: one extra run with a timer around CausalWan.forward_chunk
(CUDA-synchronised): sampler wall time / time inside the generator.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import traceback
from pathlib import Path

if "--smoke" in sys.argv[1:]:   # CPU: passive OpenMP waits on a shared machine (see bench_cpu.py)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from benchmarks.bench_common import (  # noqa: E402
    DSA_PAPER,
    MODES,
    SELF_FORCING,
    ForwardTimer,
    fmt_mm,
    mode_policy,
    peak_rss_mb,
    print_table,
    sync,
    video_frames,
)
from dsa_core.ar_sampler import sample_video  # noqa: E402
from dsa_core.attention import sdpa_attention, xformers_attention, xformers_available  # noqa: E402
from dsa_core.causal_wan import CausalWan  # noqa: E402
from dsa_core.config import WAN21_T2V_1_3B, WanConfig  # noqa: E402
from dsa_core.streaming_decode import CausalWanDecoder  # noqa: E402
from dsa_core.wan_model import WanDiT, init_random_weights  # noqa: E402

SMOKE_CFG = WanConfig(dim=256, ffn_dim=512, num_heads=2, num_layers=2)
CHUNK = 3


# ---- host (ComfyUI) pieces, optional ------------------------------------------------------------
def import_host(device) -> tuple[object | None, str]:
    """Import the host's comfy package in-process; (comfy module, note). On CPU it is configured for CPU."""
    try:
        sys.path.insert(0, str(REPO / "tests"))
        import host_env
        if torch.device(device).type == "cpu":
            comfy = host_env.import_comfy_cpu()
        else:
            d = str(host_env.comfy_dir())
            if d not in sys.path:
                sys.path.insert(0, d)
            import comfy
        import comfy.ldm.modules.attention  # noqa: F401
        import comfy.ldm.wan.vae  # noqa: F401
        return comfy, "host ComfyUI imported"
    except Exception as e:  # no host on this machine, or it fails to import
        return None, f"host ComfyUI not importable ({type(e).__name__}: {str(e).splitlines()[0][:120]})"
    finally:
        if sys.path and sys.path[0] == str(REPO / "tests"):
            sys.path.pop(0)


def host_attention(comfy):
    from comfy.ldm.modules.attention import optimized_attention

    def attention(q, k, v):
        return optimized_attention(q, k, v, heads=q.shape[1], skip_reshape=True)
    return attention


def flash_only_attention():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def attention(q, k, v):
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            return sdpa_attention(q, k, v)
    return attention


class StreamingVAEDecoder:
    """The nodes' own streaming decoder (dsa_core.streaming_decode: chunk after chunk, the host WanVAE's causal
    feature cache carried between chunks), restartable for repeated runs."""

    def __init__(self, vae):
        self.decoder = CausalWanDecoder(vae)
        self.reset()

    def reset(self):
        self.state = self.decoder.start()

    def decode(self, z):
        frames, self.state = self.decoder.decode(self.state, z)   # [B, T, H, W, 3]
        return frames


def build_vae(comfy, dim, device, dtype):
    """Wan 2.1 VAE architecture (z_dim 16, dim_mult 1,2,4,4, 2 res blocks, temporal down False,True,True)
    with random weights (the host's layers skip weight init)."""
    from comfy.ldm.wan.vae import WanVAE
    vae = WanVAE(dim=dim, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                 temperal_downsample=[False, True, True], dropout=0.0)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in vae.named_parameters():
            if p.ndim > 1:
                p.copy_(torch.randn(p.shape, generator=g) * (p[0].numel() ** -0.5))
            elif name.endswith("gamma"):
                p.fill_(1.0)
            else:
                p.zero_()
    return vae.to(device=device, dtype=dtype).eval()


# ---- torch.compile ------------------------------------------------------------------------------
class CompiledCausalWan(CausalWan):
    """CausalWan with the transformer block compiled (one graph for every block: the parameters are graph
    inputs), the KV-cache read/write + self-attention left eager (torch.compiler.disable)."""

    def __init__(self, dit, config, attention=None, mode=None):
        super().__init__(dit, config, attention)
        import torch._dynamo
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
        self._block = torch.compile(self._block_eager, mode=mode, dynamic=False)

    def _block_eager(self, *a):
        return CausalWan._block(self, *a)

    def run(self, x, t, text, frame_start, self_attend):
        return super().run(x, t, text, frame_start, torch.compiler.disable(self_attend))


# ---- one variant (backend x compile) over all modes ---------------------------------------------
def bench_variant(dit, cfg, text_ctx, *, attention, compile_mode, lh, lw, chunks, repeats, modes, decoder,
                  device, dtype):
    if compile_mode is None:
        cw = CausalWan(dit, cfg, attention=attention)
    else:
        cw = CompiledCausalWan(dit, cfg, attention=attention, mode=compile_mode)
    with torch.no_grad():
        text = cw.encode_text(text_ctx)
    rows = []
    for mode in modes:
        policy, head = mode_policy(mode, cfg.dim, device=device)
        runs = []

        def one_run(timer=None):
            if head is not None:
                head.reset()
            if decoder is not None:
                decoder.reset()
            dec_s, first = [0.0], [None]

            def on_chunk(info):
                if decoder is not None:
                    sync(device)
                    t = time.perf_counter()
                    frames = decoder.decode(info.latent)
                    sync(device)
                    dec_s[0] += time.perf_counter() - t
                    expect = video_frames(info.latent.shape[2], info.chunk_number == 0)
                    assert frames.shape[1] == expect, (frames.shape, expect)
                if first[0] is None:
                    first[0] = time.perf_counter() - t0

            if timer is not None:
                timer.reset()
            sync(device)
            t0 = time.perf_counter()
            _, _, rec = sample_video(cw, text, num_frames=chunks * CHUNK, latent_h=lh, latent_w=lw,
                                     chunk_frames=CHUNK, policy=policy, head=head, seed=0, device=device,
                                     dtype=dtype, chunk_callback=on_chunk)
            sync(device)
            wall = time.perf_counter() - t0
            return {"wall": wall, "latency": first[0], "decode": dec_s[0], "rec": rec}

        one_run()                                   # warm-up (and compilation)
        for _ in range(repeats):
            runs.append(one_run())
        timer = ForwardTimer(cw, device)
        timed = one_run(timer)
        timer.remove()
        rec = runs[-1]["rec"]
        vframes = video_frames(chunks * CHUNK, True)
        rows.append({
            "mode": mode, "steps": rec.mean_steps_per_chunk, "nfe": rec.total_nfe,
            "latency_s": [r["latency"] for r in runs],
            "fps": [vframes / r["wall"] for r in runs],
            "dit_fps": [vframes / (r["wall"] - r["decode"]) for r in runs],
            "dit_ms_chunk": [1e3 * (r["wall"] - r["decode"]) / chunks for r in runs],
            "vae_ms_chunk": [1e3 * r["decode"] / chunks for r in runs],
            "overhead": (timed["wall"] - timed["decode"]) / timer.seconds,
        })
    return rows


def print_results(results, args, setup_line, notes):
    label = ("CPU SMOKE RUN at reduced size -- NOT GPU FIGURES (only proves the script runs; the reference "
             "rows are H100 figures and are not comparable)") if args.smoke else "GPU run"
    print(f"\n== {label}\n{setup_line}")
    hdr = ["variant", "mode", "steps/chunk", "NFE", "first frame s", "decoded FPS", "FPS (DiT only)",
           "DiT ms/chunk", "VAE ms/chunk", "overhead"]
    out = []
    for variant, rows in results.items():
        if isinstance(rows, str):
            out.append([variant, rows[:60], "", "", "", "", "", "", "", ""])
            continue
        for r in rows:
            fps = sorted(r["fps"], reverse=True)
            dfps = sorted(r["dit_fps"], reverse=True)
            out.append([variant, r["mode"], f"{r['steps']:.2f}", r["nfe"], fmt_mm(r["latency_s"], 1, 3),
                        f"{fps[0]:.2f}/{statistics.median(fps):.2f}", f"{dfps[0]:.2f}/{statistics.median(dfps):.2f}",
                        fmt_mm(r["dit_ms_chunk"], 1, 1), fmt_mm(r["vae_ms_chunk"], 1, 1), f"{r['overhead']:.3f}"])
    out.append(["Self-Forcing (paper, 1xH100)", "chunk-wise, 4 steps", "4.00", 35, f"{SELF_FORCING['latency_s']:.2f}",
                f"{SELF_FORCING['fps']:.2f}", "", "", "", ""])
    out.append(["DSA (paper, 1xH100)", "adaptive", "?", "?", "< 1 (sub-second)", f"{DSA_PAPER['fps']:.2f}",
                "", "", "", ""])
    print_table(hdr, out, "x/y = min/median for times, best/median for FPS; first frame = run start -> first chunk "
                          "decoded (latency); decoded FPS = 81 video frames (21 latent) / wall time (DiT + VAE)"
                if args.chunks == 7 else
                f"x/y = min/median for times, best/median for FPS; FPS = {video_frames(args.chunks * CHUNK, True)} "
                "video frames / wall time")
    for n in notes:
        print(f"note: {n}")


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="CPU, reduced size (small config, small latent)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--dtype", default=None, choices=["bfloat16", "float16", "float32"])
    ap.add_argument("--chunks", type=int, default=None, help="default 7 (21 latent = 81 video frames); smoke 3")
    ap.add_argument("--repeats", type=int, default=None, help="default 3; smoke 2")
    ap.add_argument("--latent", default=None, help="HxW latent size; default 60x104 (480x832); smoke 4x6")
    ap.add_argument("--vae-dim", type=int, default=None, help="default 96 (Wan 2.1); smoke 8")
    ap.add_argument("--no-vae", action="store_true")
    ap.add_argument("--attention", default="all", help="comma list of sdpa,sdpa-flash,xformers,host or 'all'")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--compile", action="store_true", help="add torch.compile rows (sdpa backend)")
    ap.add_argument("--cuda-graphs", action="store_true", help="add torch.compile mode='reduce-overhead' rows (CUDA)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (smoke)")
    args = ap.parse_args(argv)
    cuda = torch.cuda.is_available()
    args.device = torch.device(args.device or ("cuda" if cuda and not args.smoke else "cpu"))
    if args.device.type == "cuda" and not cuda:
        ap.error("CUDA requested but not available")
    return args


def run(args):
    """All variants x modes; returns (results {variant: rows or 'failed: ...'}, setup line, notes)."""
    device = args.device
    smoke = args.smoke
    cfg = SMOKE_CFG if smoke else WAN21_T2V_1_3B
    dtype = getattr(torch, args.dtype or ("float32" if device.type == "cpu" else "bfloat16"))
    lh, lw = map(int, (args.latent or ("4x6" if smoke else "60x104")).lower().split("x"))
    args.chunks = args.chunks or (3 if smoke else 7)
    repeats = args.repeats or (2 if smoke else 3)
    vae_dim = args.vae_dim or (8 if smoke else 96)
    text_len = 64 if smoke else cfg.text_len
    modes = [m for m in args.modes.split(",") if m]
    notes = []

    wanted = {"sdpa", "sdpa-flash", "xformers", "host"} if args.attention == "all" else set(args.attention.split(","))
    comfy = None
    if not args.no_vae or "host" in wanted:
        comfy, host_note = import_host(device)
        notes.append(host_note)
    decoder = None
    if args.no_vae:
        notes.append("VAE decode skipped (--no-vae): FPS columns are DiT only")
    elif comfy is None:
        notes.append("VAE decode skipped: the host's WanVAE is not importable; FPS columns are DiT only")
    else:
        decoder = StreamingVAEDecoder(build_vae(comfy, vae_dim, device, dtype))

    torch.manual_seed(0)
    with torch.no_grad():
        if smoke:
            dit = init_random_weights(WanDiT(cfg), seed=0).to(device=device, dtype=dtype).eval()
        else:   # default torch init on the device: fast, and speed does not depend on the values
            dit = WanDiT(cfg, device=device, dtype=dtype).eval()
        text_ctx = torch.randn(1, text_len, cfg.text_dim, device=device, dtype=dtype)

    variants = {"sdpa": (sdpa_attention, None)}
    if "sdpa-flash" in wanted:
        if device.type == "cuda":
            variants["sdpa-flash"] = (flash_only_attention(), None)
        else:
            notes.append("sdpa-flash: n/a on CPU (flash kernel is CUDA only)")
    if "xformers" in wanted:
        if xformers_available():
            variants["xformers"] = (xformers_attention, None)
        else:
            notes.append("xformers: not installed, skipped")
    if "host" in wanted:
        if comfy is not None:
            variants["host optimized_attention"] = (host_attention(comfy), None)
        else:
            notes.append("host attention: host not importable, skipped")
    if "sdpa" not in wanted:
        variants.pop("sdpa")
    if args.compile:
        variants["sdpa + torch.compile"] = (sdpa_attention, "default")
    if device.type != "cuda":
        notes.append("CUDA graphs: n/a on CPU")
    elif args.cuda_graphs:
        variants["sdpa + compile + CUDA graphs"] = (sdpa_attention, "reduce-overhead")
    else:
        notes.append("CUDA graphs: not run (pass --cuda-graphs)")
    if not args.compile:
        notes.append("torch.compile: not run (pass --compile)"
                     + ("; n/a for GPU figures on this CPU run" if smoke else ""))

    setup = (f"device {device}{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''}, "
             f"torch {torch.__version__}, dtype {str(dtype).replace('torch.', '')}, config dim {cfg.dim} x "
             f"{cfg.num_layers} layers, latent {lh}x{lw} (video {8 * lh}x{8 * lw}), {args.chunks} chunks x {CHUNK} "
             f"latent frames, text {text_len} tokens, VAE dim {vae_dim if decoder else '-'}, repeats {repeats} "
             f"after 1 warm-up")
    print(setup, flush=True)
    results = {}
    for name, (attn, cmode) in variants.items():
        t = time.perf_counter()
        try:
            results[name] = bench_variant(dit, cfg, text_ctx, attention=attn, compile_mode=cmode, lh=lh, lw=lw,
                                          chunks=args.chunks, repeats=repeats, modes=modes, decoder=decoder,
                                          device=device, dtype=dtype)
        except Exception as e:
            traceback.print_exc()
            results[name] = f"failed: {type(e).__name__}: {e}"
        print(f"  {name}: {time.perf_counter() - t:.1f} s", flush=True)
    if device.type == "cuda":
        notes.append(f"peak GPU memory allocated {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")
    notes.append(f"peak RSS {peak_rss_mb():.0f} MiB")
    return results, setup, notes


def main(argv=None):
    args = parse(argv)
    if args.device.type != "cuda" and not args.smoke:
        print("no CUDA device: run with --smoke for a reduced-size CPU run (not GPU figures)")
        return 2
    if args.device.type == "cpu":
        torch.set_num_threads(args.threads or min(2, torch.get_num_threads()))
        torch.set_flush_denormal(True)  # random weights can produce subnormals, which are slow on CPU
    results, setup, notes = run(args)
    print_results(results, args, setup, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
