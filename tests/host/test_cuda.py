"""CUDA correctness (marker `cuda`): the causal forward against the host's WanModel on the GPU in fp32, bf16 and
fp16, chunked vs block-causal in bf16 through a bf16 KV cache whose ring wraps, fp8 weights through the host's
casting (its own loader and load_models_gpu where importable), the confidence head and the sampler's host-device
syncs, interruption, the memory estimate against torch.cuda.max_memory_allocated, and the speed table's VAE decode
overlapped on a second CUDA stream (the serial decode's frames, with the current stream reusing freed memory at once).

Run on a GPU by scripts/gpu_check. Without CUDA the module is skipped with its reason, except in the GPU check's
dry run (DSA_CUDA_TESTS_DEVICE=cpu), which runs the same tests on the CPU at the same tiny sizes so they cannot
rot; the tests that only mean something on CUDA (sync counting, allocator peaks) skip there.

Tolerances: relative L2 error ||a - b|| / ||b|| of the flow output. fp32 (TF32 off): 1e-4. bf16: 2e-2, fp16:
5e-3 for our forward against the host's on the same weights and inputs (both round at every op; the orders of a
few ops differ), and our error against an fp32 reference at most 1.5x the host's own + 1e-3.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import pytest
import torch

DEVICE = os.environ.get("DSA_CUDA_TESTS_DEVICE") or ("cuda" if torch.cuda.is_available() else None)
ON_CUDA = DEVICE is not None and torch.device(DEVICE).type == "cuda"
pytestmark = pytest.mark.cuda
if DEVICE is None:
    pytest.skip(
        "CUDA not available on this machine: these tests run on a GPU through scripts/gpu_check "
        "(its --dry-run runs them on the CPU)",
        allow_module_level=True,
    )

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import host_env  # noqa: E402


def _import_host():
    if not ON_CUDA:
        return host_env.import_comfy_cpu()
    d = str(host_env.comfy_dir())
    if d not in sys.path:
        sys.path.insert(0, d)
    import comfy.cli_args

    comfy.cli_args.args.disable_api_nodes = True
    import comfy

    return comfy


_import_host()
import comfy.ldm.wan.model  # noqa: E402
import comfy.model_management  # noqa: E402
import comfy.ops  # noqa: E402

from dsa_core.ar_sampler import SamplingInterrupted, sample_video  # noqa: E402
from dsa_core.causal_wan import CausalWan  # noqa: E402
from dsa_core.confidence_head import ConfidenceHead  # noqa: E402
from dsa_core.config import WanConfig  # noqa: E402
from dsa_core.policies import ConfidencePolicy, FixedSteps  # noqa: E402
from dsa_core.reference import chunk_bounds, forward_block_causal  # noqa: E402
from dsa_core.wan_model import WanDiT, init_random_weights  # noqa: E402

CFG = WanConfig(dim=256, ffn_dim=512, num_heads=2, num_layers=4)  # head_dim 128, as the host detects it
TOL = {torch.float32: 1e-4, torch.bfloat16: 2e-2, torch.float16: 5e-3}
needs_cuda = pytest.mark.skipif(not ON_CUDA, reason="needs CUDA (this is the GPU check's dry run on the CPU)")


def rel(a, b) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


@pytest.fixture(autouse=True)
def no_tf32():
    """fp32 means fp32 here (the host may switch TF32 on when it starts)."""
    if not ON_CUDA:
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture(scope="module")
def weights():
    return init_random_weights(WanDiT(CFG), seed=11).eval().state_dict()


def host_model(sd, dtype, operations=None):
    m = comfy.ldm.wan.model.WanModel(
        dim=CFG.dim,
        ffn_dim=CFG.ffn_dim,
        num_heads=CFG.num_heads,
        num_layers=CFG.num_layers,
        device=DEVICE,
        dtype=dtype,
        operations=operations or comfy.ops.disable_weight_init,
    )
    m.load_state_dict(sd, strict=True)
    return m.eval()


def inputs(frames=6, h=6, w=8, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 16, frames, h, w, generator=g)
    t = torch.rand(1, frames, generator=g) * 1000
    ctx = torch.randn(1, 12, 4096, generator=g)
    return x.to(DEVICE, dtype), t.to(DEVICE), ctx.to(DEVICE, dtype)


@torch.no_grad()
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["fp32", "bf16", "fp16"])
def test_forward_matches_host_wanmodel(weights, dtype):
    """CausalWan over the host's own WanModel modules == the host's WanModel.forward, per dtype."""
    host = host_model(weights, dtype)
    x, t, ctx = inputs(dtype=dtype)
    cw = CausalWan(host, CFG)
    ref = host(x, t, ctx)
    got = cw.forward_full(x, t, cw.encode_text(ctx)).flow
    assert got.dtype == ref.dtype == dtype and torch.isfinite(got).all()
    err = rel(got, ref)
    assert err <= TOL[dtype], f"{dtype}: relative error {err:.2e} > {TOL[dtype]:.0e}"
    if dtype != torch.float32:  # our rounding is no worse than the host's own against an fp32 run
        host32 = host_model(weights, torch.float32)
        x32, t32, ctx32 = x.float(), t, ctx.float()
        ref32 = host32(x32, t32, ctx32)
        assert rel(got, ref32) <= 1.5 * rel(ref, ref32) + 1e-3, (rel(got, ref32), rel(ref, ref32))


@torch.no_grad()
def test_chunked_bf16_cache_matches_block_causal(weights):
    """Chunk by chunk through a bf16 KV cache (rolling window 5 + 1 sink: chunk [9, 12) wraps the ring) equals
    one block-causal masked forward in bf16, and the visible window is read as a view of the cache."""
    dit = host_model(weights, torch.bfloat16)
    cw = CausalWan(dit, CFG)
    x, t, ctx = inputs(frames=12, h=4, w=6, seed=3, dtype=torch.bfloat16)
    text = cw.encode_text(ctx)
    cache = cw.new_cache(1, 4, 6, 3, window_frames=5, sink_frames=1, device=DEVICE, dtype=torch.bfloat16)
    assert cache.slot(9) == 4 and cache.slot(11) == 1  # the last chunk wraps
    outs = [cw.forward_chunk(x[:, :, s:e], t[:, s:e], text, cache, s).flow for s, e in chunk_bounds(12, 3)]
    chunked = torch.cat(outs, 2)
    masked = forward_block_causal(cw, x, t, text, 3, 5, 1).flow
    err = rel(chunked, masked)
    assert err <= 1e-2, f"chunked vs block-causal in bf16: {err:.2e}"
    k, _ = cache.visible(0, 12)
    assert k.data_ptr() == cache._kv[0][0].data_ptr() and k.dtype == torch.bfloat16
    # the same through an fp32 model/cache: bf16 stays close to it
    dit32 = host_model(weights, torch.float32)
    cw32 = CausalWan(dit32, CFG)
    c32 = cw32.new_cache(1, 4, 6, 3, window_frames=5, sink_frames=1, device=DEVICE, dtype=torch.float32)
    text32 = cw32.encode_text(ctx.float())
    ref = torch.cat(
        [cw32.forward_chunk(x[:, :, s:e].float(), t[:, s:e], text32, c32, s).flow for s, e in chunk_bounds(12, 3)], 2
    )
    assert rel(chunked, ref) <= 3e-2, rel(chunked, ref)


def _fp8_supported() -> bool:
    return hasattr(torch, "float8_e4m3fn")


@torch.no_grad()
@pytest.mark.skipif(not _fp8_supported(), reason="this torch has no float8_e4m3fn")
def test_fp8_weights_through_host_casting(weights):
    """Weights stored in fp8 (e4m3fn), computed in bf16 by the host's manual_cast layers: our forward over them
    equals the host's forward over them, and stays near the bf16-weight result."""
    host8 = host_model(weights, torch.float8_e4m3fn, operations=comfy.ops.manual_cast)
    assert host8.blocks[0].self_attn.q.weight.dtype == torch.float8_e4m3fn
    x, t, ctx = inputs(dtype=torch.bfloat16)
    cw = CausalWan(host8, CFG)
    ref = host8(x, t, ctx)
    got = cw.forward_full(x, t, cw.encode_text(ctx)).flow
    assert got.dtype == torch.bfloat16 and torch.isfinite(got).all()
    assert rel(got, ref) <= 2e-2, rel(got, ref)
    bf16 = host_model(weights, torch.bfloat16)
    ref16 = bf16(x, t, ctx)
    assert rel(got, ref16) <= 0.3, f"fp8 weights moved the output by {rel(got, ref16):.2f} (relative)"


@torch.no_grad()
def test_fp8_through_host_loader_and_load_models_gpu(tmp_path, weights):
    """The host's own loader (comfy.sd.load_diffusion_model_state_dict, weight dtype fp8) and load_models_gpu:
    the causal forward runs over the loaded model in its compute dtype and matches the host's forward."""
    try:
        import comfy.sd
    except Exception as e:  # e.g. an optional package the GPU image lacks
        pytest.skip(f"comfy.sd does not import here ({type(e).__name__}: {e})")
    sd = {k: v.clone() for k, v in weights.items()}
    patcher = comfy.sd.load_diffusion_model_state_dict(sd, model_options={"dtype": torch.float8_e4m3fn})
    assert patcher is not None, "the host did not detect the Wan 2.1 state dict"
    comfy.model_management.load_models_gpu([patcher])
    dm = patcher.model.diffusion_model
    dtype = patcher.model.get_dtype_inference() if hasattr(patcher.model, "get_dtype_inference") else None
    dtype = (
        dtype
        if dtype in (torch.bfloat16, torch.float16, torch.float32)
        else (patcher.model.manual_cast_dtype or torch.float32)
    )
    dev = comfy.model_management.get_torch_device()
    assert dm.blocks[0].self_attn.q.weight.dtype == torch.float8_e4m3fn
    x, t, ctx = inputs(dtype=dtype)
    x, t, ctx = x.to(dev), t.to(dev), ctx.to(dev)
    cw = CausalWan(dm, CFG)
    ref = dm(x, t, ctx)
    got = cw.forward_full(x, t, cw.encode_text(ctx)).flow
    assert torch.isfinite(got).all() and rel(got, ref) <= TOL.get(dtype, 2e-2) * 2, (dtype, rel(got, ref))


def _sample(cw, text, *, policy, head, frames=9, h=4, w=6, dtype=torch.bfloat16, **kw):
    return sample_video(
        cw,
        text,
        num_frames=frames,
        latent_h=h,
        latent_w=w,
        chunk_frames=3,
        policy=policy,
        head=head,
        seed=5,
        device=DEVICE,
        dtype=dtype,
        **kw,
    )


@torch.no_grad()
def test_confidence_head_on_device_and_one_sync_per_step(weights):
    """The head gives the same confidences on the device as on the CPU; a sampling run reads one scalar set per
    denoising step from the device (CUDA sync debug mode counts them)."""
    head = ConfidenceHead(CFG.dim).eval()
    torch.manual_seed(0)
    hidden, temb = torch.randn(2, 3, CFG.dim), torch.randn(2, 3, CFG.dim)
    on_cpu = head(hidden, temb)
    head_dev = ConfidenceHead(CFG.dim, device=DEVICE).eval()
    head_dev.load_state_dict(head.state_dict())
    assert (head_dev(hidden.to(DEVICE), temb.to(DEVICE)).cpu() - on_cpu).abs().max() <= 1e-5
    dit = host_model(weights, torch.bfloat16)
    cw = CausalWan(dit, CFG)
    text = cw.encode_text(inputs(dtype=torch.bfloat16)[2])
    policy = ConfidencePolicy(threshold=0.99, min_steps=1, max_steps=4)
    _sample(cw, text, policy=policy, head=head_dev)  # warm-up (first-call allocations, kernel loads)
    if ON_CUDA:
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode(1)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            latent, _, rec = _sample(cw, text, policy=policy, head=head_dev)
    finally:
        if ON_CUDA:
            torch.cuda.set_sync_debug_mode(0)
    assert torch.isfinite(latent).all()
    steps = rec.total_steps
    assert all(len(c.frame_confidence) == c.steps and len(c.frame_confidence[0]) == 3 for c in rec.chunks)
    if ON_CUDA:
        syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
        assert len(syncs) <= steps + len(rec.chunks), (
            f"{len(syncs)} synchronizing operations for {steps} steps: {[str(w.message)[:80] for w in syncs[:5]]}"
        )


@torch.no_grad()
def test_interruption_on_device(weights):
    """should_stop between steps ends the run with the finished chunks, on the device; the state is untouched."""
    cw = CausalWan(host_model(weights, torch.bfloat16), CFG)
    text = cw.encode_text(inputs(dtype=torch.bfloat16)[2])
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 6  # 4 steps of chunk 0, 2 of chunk 1, then stop

    with pytest.raises(SamplingInterrupted) as ei:
        _sample(cw, text, policy=FixedSteps(), head=None, should_stop=stop)
    e = ei.value
    assert e.latent.shape[2] == 3 and e.latent.device.type == torch.device(DEVICE).type
    assert e.record.interrupted and len(e.record.chunks) == 1
    if hasattr(cw, "between_blocks"):  # the interrupt check inside a step, between transformer blocks
        n = []

        def between():
            n.append(1)
            if len(n) == 3:
                raise KeyboardInterrupt("stop inside a step")

        cw.between_blocks = between
        with pytest.raises(KeyboardInterrupt):
            _sample(cw, text, policy=FixedSteps(), head=None)
        assert len(n) == 3
        cw.between_blocks = None


@needs_cuda
@torch.no_grad()
def test_memory_estimate_against_cuda_peak():
    """The sampler's memory estimate (where this build has one) against what CUDA really allocated."""
    try:
        from dsa_core.memory_estimate import estimate_sampling_memory
    except ImportError:
        pytest.skip("this build has no dsa_core.memory_estimate")
    cfg = WanConfig(dim=512, ffn_dim=2048, num_heads=4, num_layers=4)
    dit = init_random_weights(WanDiT(cfg), seed=0).to(DEVICE, torch.bfloat16).eval()
    cw = CausalWan(dit, cfg)
    text = cw.encode_text(torch.randn(1, 512, cfg.text_dim, device=DEVICE, dtype=torch.bfloat16))
    lh, lw, frames = 30, 52, 9
    est = estimate_sampling_memory(
        cfg, latent_h=lh, latent_w=lw, chunk_frames=3, total_frames=frames, dtype=torch.bfloat16
    )
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    sample_video(
        cw,
        text,
        num_frames=frames,
        latent_h=lh,
        latent_w=lw,
        chunk_frames=3,
        policy=FixedSteps(2),
        seed=0,
        device=DEVICE,
        dtype=torch.bfloat16,
    )
    torch.cuda.synchronize()
    used = torch.cuda.max_memory_allocated() - base
    text_bytes = est.text  # the prompt's K/V were made before the baseline
    measured = used + text_bytes
    print(f"memory estimate {est.total / 2**20:.1f} MiB, CUDA peak over baseline + prompt {measured / 2**20:.1f} MiB")
    assert measured <= 1.2 * est.total, f"estimate {est.total / 2**20:.1f} MiB < peak {measured / 2**20:.1f} MiB"
    assert est.total <= 4 * measured, f"estimate {est.total / 2**20:.1f} MiB >> peak {measured / 2**20:.1f} MiB"


def _bench_vae(dim=16):
    from benchmarks.bench_gpu import build_vae

    return build_vae(comfy, dim, DEVICE, torch.float32)


@needs_cuda
@torch.no_grad()
@pytest.mark.parametrize(
    "options",
    [dict(overlap=True), dict(overlap=True, cudnn_benchmark=True, channels_last=True)],
    ids=["overlap", "overlap+cudnn+channels-last"],
)
def test_overlapped_vae_decode_on_a_second_stream(options):
    """The speed table's overlapped decode runs on a second CUDA stream and gives the serial decode's frames while
    the current stream goes on computing and reusing freed memory at once: each chunk's latent is made on the
    current stream and freed right after it is submitted (record_stream keeps its memory from a NaN-filled
    allocation of the same size until the decode has read it); the frames are read after wait()."""
    from benchmarks.bench_gpu import StreamingVAEDecoder

    vae = _bench_vae()
    z = torch.randn(1, 16, 12, 8, 12, generator=torch.Generator().manual_seed(5)).to(DEVICE)
    serial = StreamingVAEDecoder(vae, keep_frames=True)
    for s in range(0, 12, 3):  # 4 chunks: on a pairing host the last frame is held back, then flushed
        serial.submit(z[:, :, s : s + 3].clone(), last=s == 9)
    ref = serial.collect()
    cudnn_benchmark = torch.backends.cudnn.benchmark
    dec = StreamingVAEDecoder(vae, keep_frames=True, **options)
    assert dec.overlapped and dec.stream != torch.cuda.current_stream()
    busy = torch.randn(2048, 2048, device=DEVICE)
    torch.cuda.synchronize()
    dec.start_run()
    for s in range(0, 12, 3):
        chunk = z[:, :, s : s + 3] * 1.0  # allocated on the current stream
        dec.submit(chunk, last=s == 9)
        del chunk  # freed while the side stream may not have read it yet
        for _ in range(3):
            junk = torch.full((1, 16, 3, 8, 12), float("nan"), device=DEVICE)  # same size: the freed block
            busy = busy @ busy
            busy = busy / busy.norm()
        del junk
    got = dec.collect()
    torch.cuda.synchronize()
    assert torch.isfinite(got).all() and got.shape == ref.shape
    tol = 1e-3 if len(options) > 1 else 1e-5  # cudnn.benchmark / channels-last may pick other conv kernels
    torch.testing.assert_close(got, ref, rtol=tol, atol=tol)  # frames of magnitude ~1: a race shows as NaN or junk
    assert len(dec.events) == 4 and dec.gpu_seconds() > 0 and 0 < dec.first_chunk_s()
    assert torch.backends.cudnn.benchmark == cudnn_benchmark
    dec.close()
    assert all(p.is_contiguous() for p in vae.parameters())


@needs_cuda
@torch.no_grad()
def test_bench_overlap_run_gives_the_serial_frames(weights):
    """The speed table's own run with the overlap (sampling on the current stream, each committed chunk decoded on
    a second one while the next chunk is denoised) decodes the serial run's frames, and reports honest figures:
    the first chunk's latency inside the run's wall time, a DiT-only FPS only for the serial run."""
    from benchmarks import bench_gpu
    from dsa_core.attention import sdpa_attention

    dit = host_model(weights, torch.float32)
    text = torch.randn(1, 12, 4096, generator=torch.Generator().manual_seed(2)).to(DEVICE)
    vae = _bench_vae()
    model = bench_gpu.make_model(dit, CFG, sdpa_attention, None)
    out = {}
    for overlap in (False, True):
        dec = bench_gpu.StreamingVAEDecoder(vae, overlap=overlap, keep_frames=True)
        rows = bench_gpu.bench_variant(
            dit,
            CFG,
            text,
            attention=sdpa_attention,
            compile_mode=None,
            lh=4,
            lw=6,
            chunks=3,
            repeats=1,
            modes=["fixed-4"],
            decoder=dec,
            device=torch.device(DEVICE),
            dtype=torch.float32,
            model=model,
        )
        out[overlap] = dec.collect(), rows[0]
        dec.close()
    (ref, serial), (got, over) = out[False], out[True]
    torch.cuda.synchronize()
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    assert over["vae_overlap"] is True and over["dit_fps"] is None and serial["dit_fps"]
    for r in (serial, over):
        wall = bench_gpu.video_frames(9, True) / r["fps"][0]
        assert 0 < r["latency_s"][0] < wall and r["vae_ms_chunk"][0] > 0
