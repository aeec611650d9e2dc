"""GPU benchmark: Wan 2.1 1.3B-shaped causal generator + Wan 2.1 VAE decode, as Self-Forcing and DSA
report speed (first-chunk latency and FPS on one GPU), next to their published figures.

    python benchmarks/bench_gpu.py                        # CUDA: 1.3B shape, 480x832, bf16, 7 chunks
    python benchmarks/bench_gpu.py --compile              # + torch.compile rows
    python benchmarks/bench_gpu.py --compile --cuda-graphs
    python benchmarks/bench_gpu.py --variants compile --json out.json --budget-s 100
    python benchmarks/bench_gpu.py --variants compile,compile+overlap,compile+overlap+cudnn+cl
    python benchmarks/bench_gpu.py --smoke                # CPU, reduced size: proves the script works

Setup (full run): WAN21_T2V_1_3B (dim 1536, 30 layers) with random weights (speed does not depend on
the values), latent 60x104 (480x832 video), chunks of 3 latent frames, 7 chunks = 21 latent frames =
81 video frames, every frame kept in the KV cache (as Self-Forcing), bf16 weights/activations/KV cache,
text context 512 tokens, batch 1, no CFG.
Modes (bench_common.MODES): fixed-4 = Self-Forcing's sampler (4 steps + 1 commit pass per chunk);
adaptive-3 / adaptive-2 = ConfidencePolicy driven by a scripted head (real head cost, scripted
verdicts) whose per-chunk steps average 3 and 2.
VAE: the host's comfy.ldm.wan.vae.WanVAE (ComfyUI must be importable; dim 96 as Wan 2.1, random
weights) decoding each chunk as soon as it is committed, with its causal feature cache kept across
chunks (streaming): 3 latent frames -> 9 video frames for the first chunk, 12 after. Variants not in
--vae-variants (default: sdpa, compile, cuda-graphs) time the DiT only (the decode is the same for all).
Figures: latency = start of the run to the first chunk decoded (DiT + VAE); FPS = 81 video frames /
wall time of the whole run (DiT + VAE), Self-Forcing's counting (21 latent -> 81 video frames);
DiT-only FPS leaves the decode out. ms/step = mean time of one chunk-step (one generator forward over one
chunk), TFLOP/s = analytic FLOPs of the run's forwards (bench_common.FLOP_FORMULA) / time inside them, both
from one extra run with a CUDA-synchronised timer around CausalWan.forward_chunk (its overhead ratio =
sampler wall time / time inside the generator). Peak memory = torch.cuda.max_memory_allocated over the
variant (weights, VAE, cache, activations). Min/median over --repeats runs after a warm-up run.
Attention backends: torch SDPA (auto kernel choice: flash for bf16 on recent GPUs), SDPA forced to the
flash kernel (CUDA only), xformers (if importable), the host's optimized_attention (if importable).
compile: torch.compile of the two attention-free halves of every block (CausalWan._attn_in/_attn_out, one
graph each shared by all 30 blocks; the cache write/read + self-attention stay eager); cuda-graphs: the same
with mode='reduce-overhead' (CUDA graphs; CUDA only).
VAE options, as suffixes of a variant (any combination; such a variant always decodes; variants that differ only
in them share one generator, so one compilation): +overlap = the decode of chunk n on a second CUDA stream while
chunk n+1 is denoised on the current one (StreamingVAEDecoder.submit; without CUDA the serial path), FPS and the
first chunk's latency still count until every stream is done; +cudnn = torch.backends.cudnn.benchmark while the
decode launches; +cl = the VAE's 3-D conv weights and input in channels_last_3d. An overlapped row's latency and VAE
ms/chunk come from CUDA events (GPU clock) and it has no DiT-only FPS. +tiny = the host's tiny video decoder
(comfy/taesd/taehv.py, taew2_1 / lighttaew2_1's architecture, random weights) through the pack's streaming decoder
(dsa_core.streaming_decode.CausalMemBlockDecoder) instead of the Wan VAE (combinable: +tiny+overlap; +cl then puts
its 2-D conv weights channels-last).
--budget-s bounds the whole process: each variant gets a share of what is left (twice as much for one that
decodes), counted from the end of its warm-up; repeats stop early when it is spent (at least one measured run per
mode, then the timed run).
--json writes the results after every mode, so a run killed from outside keeps what it measured.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
import traceback
from pathlib import Path

if "--smoke" in sys.argv[1:]:  # CPU: passive OpenMP waits on a shared machine (see bench_cpu.py)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from benchmarks.bench_common import (  # noqa: E402
    DSA_PAPER,
    FLOP_FORMULA,
    MODES,
    SELF_FORCING,
    ForwardTimer,
    fmt_mm,
    mode_policy,
    peak_rss_mb,
    print_table,
    run_flops,
    sync,
    video_frames,
)
from dsa_core.ar_sampler import sample_video  # noqa: E402
from dsa_core.attention import sdpa_attention, xformers_attention, xformers_available  # noqa: E402
from dsa_core.causal_wan import CausalWan  # noqa: E402
from dsa_core.config import WAN21_T2V_1_3B, WanConfig  # noqa: E402
from dsa_core.kv_cache import tokens_per_frame  # noqa: E402
from dsa_core.streaming_decode import CausalMemBlockDecoder, CausalWanDecoder  # noqa: E402
from dsa_core.wan_model import WanDiT, init_random_weights  # noqa: E402

SMOKE_CFG = WanConfig(dim=256, ffn_dim=512, num_heads=2, num_layers=2)
MICRO_CFG = WanConfig(dim=128, ffn_dim=128, num_heads=1, num_layers=1)  # the dry run's size
CHUNK = 3
BACKENDS = ("sdpa", "sdpa-flash", "xformers", "host")
VARIANT_NAMES = {
    "sdpa": "sdpa",
    "sdpa-flash": "sdpa-flash",
    "xformers": "xformers",
    "host": "host optimized_attention",
    "compile": "sdpa + torch.compile",
    "cuda-graphs": "sdpa + compile + CUDA graphs",
}


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

        return comfy, f"host ComfyUI imported from {Path(list(comfy.__path__)[0]).parent}"
    except Exception as e:  # no host on this machine, or it fails to import
        traceback.print_exc()
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


VAE_OPTIONS = {  # variant suffix -> label; each switches one thing about the streaming decode (see the docstring)
    "overlap": "overlap",
    "cudnn": "cudnn-benchmark",
    "cl": "channels-last",
    "tiny": "tiny-TAEHV",
}


class StreamingVAEDecoder:
    """Decodes chunk after chunk with the host WanVAE's causal conv feature cache kept between chunks, as a
    streaming player would (the host's WanVAE.decode resets that cache on every call): the pack's own
    dsa_core.streaming_decode.CausalWanDecoder, grouping the latent frames as the host's decode does (one per call
    on 0.3.x; the first alone, then aligned pairs on hosts with ``count_cache_layers``), so the frames equal its
    whole-video decode. ``decode`` returns the decoder's raw output [B, 3, T, H, W]; a chunk's odd last frame may
    wait for the next chunk (``flush`` decodes it at the end of a video).

    Options (each one switchable; the bench's variant suffixes ``+overlap``, ``+cudnn``, ``+cl``):

    - ``overlap``: ``submit`` enqueues a chunk's decode on a second CUDA stream and returns at once, so the decode
      of chunk n runs while the generator denoises chunk n+1 on the current stream. The side stream first waits
      for the current stream (the latent is complete), the latent is marked as used by the side stream
      (``record_stream``: the allocator does not hand its memory to a current-stream allocation before the decode
      is done); everything the decode allocates (activations, its causal cache, the frames) belongs to the side
      stream. ``wait`` makes the current stream wait for every decode submitted so far (and marks the frames it is
      given as used there). A CUDA event pair around each decode gives its GPU time and when the first chunk's
      frames were ready. Without CUDA there are no streams: ``submit`` decodes inline, the serial path.
    - ``cudnn_benchmark``: ``torch.backends.cudnn.benchmark`` on while the decode's kernels are launched (cuDNN
      times its convolution algorithms once per shape: in the warm-up run), back to the process's setting after;
      the generator is not affected.
    - ``channels_last``: the VAE's 3-D convolution weights and the latent going in stored channels-last
      (``torch.channels_last_3d``, NDHWC), so cuDNN can pick its NDHWC kernels; ``close`` puts the weights back.
    """

    def __init__(
        self, vae, *, overlap=False, cudnn_benchmark=False, channels_last=False, keep_frames=False, tiny=False
    ):
        self.vae = vae
        if tiny:  # ``vae`` is the host's TAEHV (build_tiny_vae): the pack's tiny-VAE streaming decoder
            self.decoder = CausalMemBlockDecoder(vae, process_in=vae.process_in)
        else:
            import comfy.ldm.wan.vae as wv

            self.decoder = CausalWanDecoder.for_host(wv, vae)
        self.pairs = self.decoder.pairs
        self.device = self.decoder.device
        self.cudnn_benchmark, self.channels_last, self.keep_frames = cudnn_benchmark, channels_last, keep_frames
        self.options = tuple(
            k
            for k, on in (("overlap", overlap), ("cudnn", cudnn_benchmark), ("cl", channels_last), ("tiny", tiny))
            if on
        )
        self.conv_ndim = 4 if tiny else 5  # the decoder's convolutions: 2-D per frame (TAEHV) or causal 3-D (Wan)
        # a second stream only where streams exist: on the CPU the overlapped path is the serial one
        self.stream = torch.cuda.Stream(self.device) if overlap and self.device.type == "cuda" else None
        if channels_last:
            self._conv_weights_format(self._channels_last)
        self.reset()

    @property
    def _channels_last(self):
        return torch.channels_last if self.conv_ndim == 4 else torch.channels_last_3d

    @property
    def overlapped(self) -> bool:
        return self.stream is not None

    def _conv_weights_format(self, fmt):
        with torch.no_grad():
            for p in self.vae.parameters():
                # Conv3d weights (CausalConv3d: every temporal conv and the 1x1x1 projections); TAEHV: Conv2d
                if p.ndim == self.conv_ndim:
                    p.data = p.data.contiguous(memory_format=fmt)

    def close(self):
        """Give the VAE back as it came (contiguous weights), after every decode is done."""
        self.wait()
        if self.channels_last:
            self._conv_weights_format(torch.contiguous_format)
            self.channels_last = False

    def reset(self):
        """A new video: a fresh causal cache, no events, no kept frames."""
        self.state = self.decoder.start()
        self.events = []  # (start, end) CUDA events around each overlapped decode
        self.frames = []  # submitted outputs, when keep_frames
        self.run_start = None

    def start_run(self):
        """Mark the run's start on the current stream (overlapped: the first chunk's latency is measured from
        here on the GPU's clock). Call it where the wall clock of the run starts, with the device idle."""
        if self.stream is not None:
            self.run_start = torch.cuda.Event(enable_timing=True)
            self.run_start.record(torch.cuda.current_stream(self.device))

    def decode(self, z):
        out, self.state = self.decoder.decode_raw(self.state, z)
        return out

    def flush(self):
        """The frame a pair-decoding host still holds back at the end of a video (None if none)."""
        out, self.state = self.decoder.flush_raw(self.state)
        return out

    @contextlib.contextmanager
    def _launch(self):
        with contextlib.ExitStack() as stack:
            if self.stream is not None:
                stack.enter_context(torch.cuda.stream(self.stream))
            if self.cudnn_benchmark:
                saved = torch.backends.cudnn.benchmark
                torch.backends.cudnn.benchmark = True
                stack.callback(setattr, torch.backends.cudnn, "benchmark", saved)
            yield

    def submit(self, z, last=False):
        """Decode one committed chunk (raw VAE latent [B, 16, T, h, w]); ``last``: the video ends with it, so the
        frame a pairing host holds back is decoded too. Returns the chunk's frames [B, 3, T', 8h, 8w]: computed
        (serial), or enqueued on the side stream (overlapped: their shape is final, their values are ready for
        the current stream after ``wait``)."""
        side = self.stream
        if side is not None:
            side.wait_stream(torch.cuda.current_stream(self.device))
            if z.is_cuda:
                z.record_stream(side)
        with self._launch():
            if side is not None:
                start = torch.cuda.Event(enable_timing=True)
                start.record(side)
            if self.channels_last and self.conv_ndim == 5:  # TAEHV takes one 2-D frame at a time: weights only
                z = z.contiguous(memory_format=torch.channels_last_3d)
            out = self.decode(z)
            if last:
                tail = self.flush()
                out = out if tail is None else torch.cat([out, tail], 2)
            if side is not None:
                end = torch.cuda.Event(enable_timing=True)
                end.record(side)
                self.events.append((start, end))
        if self.keep_frames:
            self.frames.append(out)
        return out

    def wait(self, *tensors):
        """The current stream waits for every decode submitted so far; ``tensors`` (frames from ``submit``) are
        marked as used by it, so their memory is not reused by the side stream while it reads them."""
        if self.stream is None:
            return
        cur = torch.cuda.current_stream(self.device)
        cur.wait_stream(self.stream)
        for t in tensors:
            t.record_stream(cur)

    def gpu_seconds(self) -> float:
        """Overlapped: the decodes' GPU time on their stream (after a synchronisation; concurrent with the
        generator, so slowed by sharing the GPU)."""
        return sum(s.elapsed_time(e) for s, e in self.events) / 1e3

    def first_chunk_s(self) -> float | None:
        """Overlapped: from ``start_run`` to the end of the first chunk's decode, on the GPU's clock (after a
        synchronisation)."""
        if self.run_start is None or not self.events:
            return None
        return self.run_start.elapsed_time(self.events[0][1]) / 1e3

    def collect(self):
        """The kept frames of the run so far, ready on the current stream, as one tensor [B, 3, T, H, W]."""
        self.wait(*self.frames)
        return torch.cat(self.frames, 2) if self.frames else None


def variant_parts(key: str) -> tuple[str, tuple[str, ...]]:
    """'compile+overlap+cudnn' -> ('compile', ('overlap', 'cudnn'))."""
    base, *opts = key.split("+")
    return base, tuple(opts)


def variant_name(key: str) -> str:
    """The variant's label: 'compile+overlap+cudnn' -> 'sdpa + torch.compile; VAE overlap+cudnn-benchmark' (a
    ' (...)' tail, as in 'compile (before failure)', is kept)."""
    key, paren, tail = key.partition(" (")
    base, opts = variant_parts(key)
    name = VARIANT_NAMES.get(base, base)
    name = name if not opts else f"{name}; VAE {'+'.join(VAE_OPTIONS.get(o, o) for o in opts)}"
    return name + paren + tail


def build_vae(comfy, dim, device, dtype):
    """Wan 2.1 VAE architecture (z_dim 16, dim_mult 1,2,4,4, 2 res blocks, temporal down False,True,True)
    with random weights (the host's layers skip weight init)."""
    from comfy.ldm.wan.vae import WanVAE

    vae = WanVAE(
        dim=dim,
        z_dim=16,
        dim_mult=[1, 2, 4, 4],
        num_res_blocks=2,
        attn_scales=[],
        temperal_downsample=[False, True, True],
        dropout=0.0,
    )
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


def build_tiny_vae(comfy, device, dtype):
    """The host's TAEHV for Wan 2.1's 16 latent channels (comfy/taesd/taehv.py: taew2_1 / lighttaew2_1's
    architecture), random weights N(0, 1/fan_in), biases N(0, 0.05) (the host's layers skip weight init)."""
    from comfy.taesd.taehv import TAEHV

    vae = TAEHV(latent_channels=16, show_progress_bar=False)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in vae.named_parameters():
            scale = 0.05 if name.endswith("bias") else p[0].numel() ** -0.5
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return vae.to(device=device, dtype=dtype).eval()


# ---- torch.compile ------------------------------------------------------------------------------
def _raise_recompile_limits():
    import torch._dynamo

    for name in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit", "accumulated_cache_size_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, max(getattr(torch._dynamo.config, name), 256))


class CompiledCausalWan(CausalWan):
    """CausalWan with the two attention-free halves of each block compiled (CausalWan._attn_in/_attn_out: the
    block's parameters are graph inputs, so one graph serves all blocks); the KV-cache write/read and the
    self-attention call between them stay eager. mode='reduce-overhead' replays them as CUDA graphs (their
    shapes never depend on the cache length); a new graph step begins with every forward."""

    def __init__(self, dit, config, attention=None, mode=None, backend="inductor"):
        super().__init__(dit, config, attention)
        _raise_recompile_limits()
        self.cuda_graphs = mode == "reduce-overhead"
        kw = {"dynamic": False, "backend": backend}
        if mode is not None:
            kw["mode"] = mode
        self._attn_in = torch.compile(lambda *a: CausalWan._attn_in(self, *a), **kw)
        self._attn_out = torch.compile(lambda *a: CausalWan._attn_out(self, *a), **kw)

    def forward_chunk(self, *a, **k):
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        return super().forward_chunk(*a, **k)


def make_model(dit, cfg, attention, compile_mode, compile_backend="inductor"):
    """The generator for one attention backend / compile mode (None, 'default', 'reduce-overhead')."""
    if compile_mode is None:
        return CausalWan(dit, cfg, attention=attention)
    return CompiledCausalWan(
        dit,
        cfg,
        attention=attention,
        mode=None if compile_mode == "default" else compile_mode,
        backend=compile_backend,
    )


# ---- one variant (backend x compile x VAE options) over all modes ------------------------------
def bench_variant(
    dit,
    cfg,
    text_ctx,
    *,
    attention,
    compile_mode,
    lh,
    lw,
    chunks,
    repeats,
    modes,
    decoder,
    device,
    dtype,
    stop_at=None,
    share_s=None,
    compile_backend="inductor",
    on_row=None,
    model=None,
):
    """Rows (one per mode) for one attention backend / compile mode. ``stop_at`` (perf_counter time) ends the
    repeats early; ``share_s`` (seconds, counted from the end of the warm-up: a compilation does not eat the
    variant's measuring time) moves it earlier; every mode keeps at least one measured run. ``model``: a CausalWan
    made before (variants that differ only in their VAE options share one, so one compilation serves them all).
    ``decoder``: a StreamingVAEDecoder or None (DiT only); an overlapped one decodes chunk n on its own CUDA stream
    while chunk n+1 is denoised, and the run's wall time still ends when every stream is done (its last frame
    decoded)."""
    cw = model if model is not None else make_model(dit, cfg, attention, compile_mode, compile_backend)
    with torch.no_grad():
        text = cw.encode_text(text_ctx)
    tpf, text_len = tokens_per_frame(cfg, lh, lw), text_ctx.shape[1]
    rows = []
    warm = False
    overlapped = decoder is not None and decoder.overlapped
    for mode in modes:
        policy, head = mode_policy(mode, cfg.dim, device=device)
        runs = []

        def one_run(timer=None):
            if head is not None:
                head.reset()
            if decoder is not None:
                decoder.reset()
            dec_s, first, n_frames = [0.0], [None], [0]

            def on_chunk(info):
                last = info.chunk_number == info.num_chunks - 1
                if overlapped:  # enqueued on the decoder's stream; the next chunk's DiT work follows at once
                    n_frames[0] += decoder.submit(info.latent, last).shape[2]
                    return
                if decoder is not None:
                    sync(device)
                    t = time.perf_counter()
                    frames = decoder.submit(info.latent, last)
                    sync(device)
                    dec_s[0] += time.perf_counter() - t
                    n_frames[0] += frames.shape[2]
                if first[0] is None:
                    first[0] = time.perf_counter() - t0

            if timer is not None:
                timer.reset()
            sync(device)
            if decoder is not None:
                decoder.start_run()
            t0 = time.perf_counter()
            _, _, rec = sample_video(
                cw,
                text,
                num_frames=chunks * CHUNK,
                latent_h=lh,
                latent_w=lw,
                chunk_frames=CHUNK,
                policy=policy,
                head=head,
                seed=0,
                device=device,
                dtype=dtype,
                chunk_callback=on_chunk,
            )
            if overlapped:
                decoder.wait()  # the current stream waits for the last decode: the video is complete
            sync(device)  # every stream of the device
            wall = time.perf_counter() - t0
            if overlapped:  # GPU clock (events): the decodes ran beside the DiT, no wall-clock span is theirs
                first[0] = decoder.first_chunk_s()
                dec_s[0] = decoder.gpu_seconds()
            if decoder is not None:
                assert n_frames[0] == video_frames(chunks * CHUNK, True), (n_frames[0], chunks)
            return {"wall": wall, "latency": first[0], "decode": dec_s[0], "rec": rec}

        t_warm = time.perf_counter()
        if not warm:
            one_run()  # warm-up (and compilation / graph capture): once per variant
            warm = True
            if share_s is not None:
                end = time.perf_counter() + share_s
                stop_at = end if stop_at is None else min(stop_at, end)
        warm_s = time.perf_counter() - t_warm

        def time_left():
            return stop_at is None or time.perf_counter() < stop_at

        runs.append(one_run())
        timer_row = {}
        if time_left():  # the timed run second, so that a tight budget still gets ms/step and TFLOP/s
            timer = ForwardTimer(cw, device)
            timed = one_run(timer)
            timer.remove()
            flops = run_flops(cfg, timed["rec"], tpf, text_len)
            timer_row = {
                "overhead": (timed["wall"] - timed["decode"]) / timer.seconds,
                "ms_per_step": 1e3 * timer.seconds / timer.calls,
                "tflops": flops / timer.seconds / 1e12,
                "tflop_per_run": flops / 1e12,
            }
        while len(runs) < repeats and time_left():
            runs.append(one_run())
        rec = runs[-1]["rec"]
        vframes = video_frames(chunks * CHUNK, True)
        row = {
            "mode": mode,
            "steps": rec.mean_steps_per_chunk,
            "nfe": rec.total_nfe,
            "vae": decoder is not None,
            "repeats": len(runs),
            "warmup_s": warm_s,
            "latency_s": [r["latency"] for r in runs],
            "fps": [vframes / r["wall"] for r in runs],
            # overlapped: the decode's time is not a span of the wall time, so no DiT-only figure from these runs
            "dit_fps": None if overlapped else [vframes / (r["wall"] - r["decode"]) for r in runs],
            "dit_ms_chunk": None if overlapped else [1e3 * (r["wall"] - r["decode"]) / chunks for r in runs],
            "vae_ms_chunk": [1e3 * r["decode"] / chunks for r in runs],
            "vae_options": list(decoder.options) if decoder is not None else [],
            "vae_overlap": overlapped,
            "overhead": timer_row.get("overhead"),
            "ms_per_step": timer_row.get("ms_per_step"),
            "tflops": timer_row.get("tflops"),
            "tflop_per_run": timer_row.get("tflop_per_run"),
        }
        rows.append(row)
        if on_row is not None:
            on_row(rows)
    return rows


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def print_results(results, args, setup_line, notes):
    label = (
        (
            "CPU SMOKE RUN at reduced size -- NOT GPU FIGURES (only proves the script runs; the reference "
            "rows are H100 figures and are not comparable)"
        )
        if args.smoke
        else "GPU run"
    )
    print(f"\n== {label}\n{setup_line}")
    hdr = [
        "variant",
        "mode",
        "steps/chunk",
        "NFE",
        "latency s",
        "FPS (DiT+VAE)",
        "FPS (DiT only)",
        "DiT ms/chunk",
        "VAE ms/chunk",
        "ms/step",
        "TFLOP/s",
        "peak GiB",
        "overhead",
    ]
    out = []
    for variant, res in results.items():
        if isinstance(res, str):
            out.append([variant, res[:70]] + [""] * (len(hdr) - 2))
            continue
        peak = res.get("peak_mem_gib")
        for r in res["rows"]:
            fps = sorted(r["fps"], reverse=True)
            dfps = sorted(r["dit_fps"], reverse=True) if r["dit_fps"] else None
            vae = r["vae"]
            out.append(
                [
                    variant,
                    r["mode"],
                    f"{r['steps']:.2f}",
                    r["nfe"],
                    fmt_mm(r["latency_s"], 1, 3) if vae else "-",
                    f"{fps[0]:.2f}/{statistics.median(fps):.2f}" if vae else "-",
                    f"{dfps[0]:.2f}/{statistics.median(dfps):.2f}" if dfps else "- (overlapped)",
                    fmt_mm(r["dit_ms_chunk"], 1, 1) if r["dit_ms_chunk"] else "-",
                    fmt_mm(r["vae_ms_chunk"], 1, 1) if vae else "-",
                    _fmt(r["ms_per_step"], ".1f"),
                    _fmt(r["tflops"], ".1f"),
                    _fmt(peak, ".2f"),
                    _fmt(r["overhead"], ".3f"),
                ]
            )
    blank = [""] * 7
    out.append(
        [
            "Self-Forcing (paper, 1xH100)",
            "chunk-wise, 4 steps",
            "4.00",
            35,
            f"{SELF_FORCING['latency_s']:.2f}",
            f"{SELF_FORCING['fps']:.2f}",
        ]
        + blank
    )
    out.append(["DSA (paper, 1xH100)", "adaptive", "?", "?", "< 1 (sub-second)", f"{DSA_PAPER['fps']:.2f}"] + blank)
    print_table(
        hdr,
        out,
        "x/y = min/median for times, best/median for FPS; latency = run start -> first chunk "
        "decoded; FPS = 81 video frames (21 latent) / wall time"
        if args.chunks == 7
        else f"x/y = min/median for times, best/median for FPS; FPS = {video_frames(args.chunks * CHUNK, True)} "
        "video frames / wall time",
    )
    print(f"note: {FLOP_FORMULA}")
    for n in notes:
        print(f"note: {n}")


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="CPU, reduced size (small config, small latent)")
    ap.add_argument("--micro", action="store_true", help="with --smoke: the smallest config (dim 128, 1 layer)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--dtype", default=None, choices=["bfloat16", "float16", "float32"])
    ap.add_argument("--chunks", type=int, default=None, help="default 7 (21 latent = 81 video frames); smoke 3")
    ap.add_argument("--repeats", type=int, default=None, help="default 3; smoke 2")
    ap.add_argument("--latent", default=None, help="HxW latent size; default 60x104 (480x832); smoke 4x6")
    ap.add_argument("--vae-dim", type=int, default=None, help="default 96 (Wan 2.1); smoke 8")
    ap.add_argument("--no-vae", action="store_true")
    ap.add_argument(
        "--vae-variants",
        default="sdpa,compile,cuda-graphs",
        help="variants that decode with the VAE ('all' for every one); the others time the DiT only",
    )
    ap.add_argument("--attention", default="all", help="comma list of sdpa,sdpa-flash,xformers,host or 'all'")
    ap.add_argument(
        "--variants",
        default=None,
        help="comma list of sdpa,sdpa-flash,xformers,host,compile,cuda-graphs (overrides --attention, "
        "--compile, --cuda-graphs); each may carry VAE options as suffixes: +overlap (decode on a second CUDA "
        "stream while the next chunk denoises), +cudnn (cudnn.benchmark for the VAE), +cl (channels-last VAE "
        "convolutions), e.g. compile+overlap+cudnn; a variant with VAE options always decodes",
    )
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--compile", action="store_true", help="add torch.compile rows (sdpa backend)")
    ap.add_argument("--cuda-graphs", action="store_true", help="add torch.compile mode='reduce-overhead' rows (CUDA)")
    ap.add_argument("--compile-backend", default="inductor", help="torch.compile backend (the dry run uses eager)")
    ap.add_argument("--budget-s", type=float, default=0.0, help="time budget of the whole process (0 = none)")
    ap.add_argument("--json", default=None, help="write the results here (after every mode)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (smoke)")
    args = ap.parse_args(argv)
    cuda = torch.cuda.is_available()
    args.device = torch.device(args.device or ("cuda" if cuda and not args.smoke else "cpu"))
    if args.device.type == "cuda" and not cuda:
        ap.error("CUDA requested but not available")
    return args


def _wanted_variants(args) -> list[str]:
    if args.variants:
        keys = [v for v in args.variants.split(",") if v]
        bad = [
            k
            for k in keys
            if variant_parts(k)[0] not in VARIANT_NAMES
            or any(o not in VAE_OPTIONS for o in variant_parts(k)[1])
            or len(set(variant_parts(k)[1])) != len(variant_parts(k)[1])
        ]
        if bad:
            raise SystemExit(
                f"unknown variants {bad}; choose from {list(VARIANT_NAMES)}, each optionally followed by "
                f"+option for VAE options {list(VAE_OPTIONS)}"
            )
        return keys
    keys = list(BACKENDS) if args.attention == "all" else [a for a in args.attention.split(",") if a]
    return keys + (["compile"] if args.compile else []) + (["cuda-graphs"] if args.cuda_graphs else [])


def _json_results(results, peaks):
    out = {}
    for key, res in results.items():
        out[key] = (
            res if isinstance(res, str) else {"name": variant_name(key), "rows": res, "peak_mem_gib": peaks.get(key)}
        )
    return out


def run(args):
    """All variants x modes; returns (results {variant name: {'rows', 'peak_mem_gib'} or 'failed/skipped: ...'},
    setup line, notes)."""
    t_start = time.perf_counter()
    deadline = t_start + args.budget_s if args.budget_s else None
    device = args.device
    smoke = args.smoke
    cfg = (MICRO_CFG if args.micro else SMOKE_CFG) if smoke else WAN21_T2V_1_3B
    dtype = getattr(torch, args.dtype or ("float32" if device.type == "cpu" else "bfloat16"))
    lh, lw = map(int, (args.latent or ("4x6" if smoke else "60x104")).lower().split("x"))
    args.chunks = args.chunks or (3 if smoke else 7)
    repeats = args.repeats or (2 if smoke else 3)
    vae_dim = args.vae_dim or (8 if smoke else 96)
    text_len = 64 if smoke else cfg.text_len
    modes = [m for m in args.modes.split(",") if m]
    keys = _wanted_variants(args)
    bases = {variant_parts(k)[0] for k in keys}
    vae_keys = set(keys) if args.vae_variants == "all" else set(args.vae_variants.split(","))
    vae_keys |= {k for k in keys if variant_parts(k)[1]}  # a variant with VAE options decodes
    notes = []

    comfy = None
    if not args.no_vae or "host" in bases:
        comfy, host_note = import_host(device)
        notes.append(host_note)
    vae = None
    if args.no_vae:
        notes.append("VAE decode skipped (--no-vae): FPS columns are DiT only")
    elif comfy is None:
        notes.append("VAE decode skipped: the host's WanVAE is not importable; FPS columns are DiT only")
    elif any(k in vae_keys for k in keys):
        vae = build_vae(comfy, vae_dim, device, dtype)
    if vae is not None and any("overlap" in variant_parts(k)[1] for k in keys):
        notes.append(
            "VAE overlap: the decode of chunk n runs on a second CUDA stream while chunk n+1 is denoised; FPS and "
            "the first chunk's latency still end when every stream is done; its VAE ms/chunk is the decode's GPU "
            "time on its stream (shared with the DiT), no DiT-only FPS; ms/step and TFLOP/s come from the timed "
            "run, whose synchronised forwards run alone"
            if device.type == "cuda"
            else f"VAE overlap: no CUDA streams on {device.type}: those variants decode serially (the same path)"
        )

    torch.manual_seed(0)
    with torch.no_grad():
        if smoke:
            dit = init_random_weights(WanDiT(cfg), seed=0).to(device=device, dtype=dtype).eval()
        else:  # default torch init on the device: fast, and speed does not depend on the values
            dit = WanDiT(cfg, device=device, dtype=dtype).eval()
        text_ctx = torch.randn(1, text_len, cfg.text_dim, device=device, dtype=dtype)

    backends = {}  # base variant -> (attention, compile mode); a base that cannot run here is left out
    for base in bases:
        if base == "sdpa":
            backends[base] = (sdpa_attention, None)
        elif base == "sdpa-flash":
            if device.type == "cuda":
                backends[base] = (flash_only_attention(), None)
            else:
                notes.append("sdpa-flash: n/a on CPU (flash kernel is CUDA only)")
        elif base == "xformers":
            if xformers_available():
                backends[base] = (xformers_attention, None)
            else:
                notes.append("xformers: not installed, skipped")
        elif base == "host":
            if comfy is not None:
                backends[base] = (host_attention(comfy), None)
            else:
                notes.append("host attention: host not importable, skipped")
        elif base == "compile":
            backends[base] = (sdpa_attention, "default")
        elif base == "cuda-graphs":
            if device.type == "cuda":
                backends[base] = (sdpa_attention, "reduce-overhead")
            else:
                notes.append("CUDA graphs: n/a on CPU")
    variants = {k: backends[variant_parts(k)[0]] for k in keys if variant_parts(k)[0] in backends}
    if "compile" not in bases and "cuda-graphs" not in bases:
        notes.append("torch.compile / CUDA graphs: not run (pass --compile / --cuda-graphs)")
    if "compile" in backends and args.compile_backend != "inductor":
        notes.append(f"torch.compile backend {args.compile_backend!r} (plumbing check, not a speed figure)")

    gpu = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    setup = (
        f"device {device}{gpu}, torch {torch.__version__}, dtype {str(dtype).replace('torch.', '')}, config dim "
        f"{cfg.dim} x {cfg.num_layers} layers, latent {lh}x{lw} (video {8 * lh}x{8 * lw}), {args.chunks} chunks x "
        f"{CHUNK} latent frames (KV cache keeps all), text {text_len} tokens, VAE dim "
        f"{vae_dim if vae is not None else '-'}, repeats {repeats} after 1 warm-up"
    )
    print(setup, flush=True)
    results, peaks = {}, {}
    meta = {
        "setup": setup,
        "device": str(device),
        "gpu": gpu.strip(" ()") or None,
        "torch": torch.__version__,
        "dtype": str(dtype).replace("torch.", ""),
        "config": {"dim": cfg.dim, "layers": cfg.num_layers, "ffn_dim": cfg.ffn_dim},
        "latent": [lh, lw],
        "chunks": args.chunks,
        "chunk_frames": CHUNK,
        "text_len": text_len,
        "video_frames": video_frames(args.chunks * CHUNK, True),
        "smoke": smoke,
        "flop_formula": FLOP_FORMULA,
    }

    def dump():
        if args.json:
            Path(args.json).write_text(
                json.dumps({"meta": meta, "variants": _json_results(results, peaks), "notes": notes}, indent=1)
            )

    names = list(variants)
    models = {}
    tiny_vae = None  # built on first use by a +tiny variant
    for n, key in enumerate(names):
        attn, cmode = variants[key]
        t = time.perf_counter()
        stop_at = share = None
        if deadline is not None:
            left = deadline - t
            if left <= 0:
                results[key] = "skipped: time budget spent"
                dump()
                continue
            weights = [2.0 if k in vae_keys and vae is not None else 1.0 for k in names[n:]]
            share = left * weights[0] / sum(weights)  # a variant that decodes too gets twice the share
            stop_at = deadline  # the share counts from the end of the variant's warm-up (compilation)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

        def on_row(rows, key=key):
            results[key] = rows
            if device.type == "cuda":
                peaks[key] = torch.cuda.max_memory_allocated(device) / 2**30
            dump()

        decoder = None
        try:
            if vae is not None and key in vae_keys:
                opts = variant_parts(key)[1]
                if "tiny" in opts and tiny_vae is None:
                    tiny_vae = build_tiny_vae(comfy, device, dtype)
                decoder = StreamingVAEDecoder(
                    tiny_vae if "tiny" in opts else vae,
                    overlap="overlap" in opts,
                    cudnn_benchmark="cudnn" in opts,
                    channels_last="cl" in opts,
                    tiny="tiny" in opts,
                )
            base = variant_parts(key)[0]
            if base not in models:  # variants differing only in VAE options share the model (one compilation)
                models[base] = make_model(dit, cfg, attn, cmode, args.compile_backend)
            bench_variant(
                dit,
                cfg,
                text_ctx,
                attention=attn,
                compile_mode=cmode,
                lh=lh,
                lw=lw,
                chunks=args.chunks,
                repeats=repeats,
                modes=modes,
                decoder=decoder,
                device=device,
                dtype=dtype,
                stop_at=stop_at,
                share_s=share,
                compile_backend=args.compile_backend,
                on_row=on_row,
                model=models[base],
            )
        except Exception as e:
            traceback.print_exc()
            done = results.get(key)
            results[key] = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
            if isinstance(done, list) and done:
                results[key + " (before failure)"] = done
        finally:
            if decoder is not None:
                decoder.close()  # the shared VAE as it came (contiguous weights) for the next variant
                sync(device)
        dump()
        print(f"  {variant_name(key)}: {time.perf_counter() - t:.1f} s", flush=True)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**30
        notes.append(f"peak GPU memory allocated (whole process) {peak:.2f} GiB")
    notes.append(f"peak RSS {peak_rss_mb():.0f} MiB")
    dump()
    named = {}
    for key, res in results.items():
        named[variant_name(key)] = res if isinstance(res, str) else {"rows": res, "peak_mem_gib": peaks.get(key)}
    return named, setup, notes


def main(argv=None):
    args = parse(argv)
    if args.device.type != "cuda" and not args.smoke:
        print("no CUDA device: run with --smoke for a reduced-size CPU run (not GPU figures)")
        if args.json:
            Path(args.json).write_text(
                json.dumps({"meta": {"device": "cpu"}, "variants": {}, "notes": ["no CUDA device: not run"]})
            )
        return 2
    if args.device.type == "cpu":
        torch.set_num_threads(args.threads or min(2, torch.get_num_threads()))
        torch.set_flush_denormal(True)  # random weights can produce subnormals, which are slow on CPU
    results, setup, notes = run(args)
    print_results(results, args, setup, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
