"""The one GPU command (scripts/gpu_check) cannot rot: its dry run runs every part at tiny size on the CPU (the
CUDA tests on the CPU, the speed parts with the reduced config, torch.compile through the eager backend) and
writes its JSON and Markdown; its JSON follows the documented schema. The speed table's streaming decode gives the
host's frames, and its VAE options (second-stream overlap, cudnn.benchmark, channels-last) give the serial path's
frames through the bench's own sampling run (on the CPU the overlap is the serial path; tests/host/test_cuda.py
checks it on a real second CUDA stream)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
NODE, NODE_COMPILE = "node path: DSA Sampler", "node path: TorchCompileModel -> DSA Sampler"


def test_gpu_check_dry_run_writes_its_report(tmp_path):
    env = dict(os.environ, DSA_PYTHON=sys.executable, DSA_GPU_WORK=str(tmp_path / "work"))
    env.pop("OUT", None)
    out = tmp_path / "out"
    r = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_check"), "--dry-run", "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["schema"] == "dsa-gpu-check/1" and report["mode"] == "dry-run"
    parts = {p["name"]: p for p in report["parts"]}
    assert list(parts) == [
        "env",
        "cuda_tests",
        "compile",
        "vae_overlap",
        "tiny_vae",
        "bench",
        "node_compile",
        "cuda_graphs",
    ]
    for name in ("env", "cuda_tests", "compile", "vae_overlap", "tiny_vae", "bench", "node_compile"):
        assert parts[name]["status"] == "passed", (name, parts[name])
    assert parts["cuda_graphs"]["status"] == "skipped" and "n/a on CPU" in parts["cuda_graphs"]["reason"]
    assert all(v.startswith("ok") for v in report["env"]["comfy_imports"].values()), report["env"]
    tests = report["tests"]
    assert tests["passed"] >= 7 and tests["failed"] == tests["errors"] == 0, tests
    skipped = [c for c in tests["cases"] if c["outcome"] == "skipped"]
    assert all("needs CUDA" in c["message"] or "no dsa_core.memory_estimate" in c["message"] for c in skipped)
    rows = report["bench"]["rows"]
    variants = {(r["variant"], r["mode"]) for r in rows}
    overlap = "sdpa + torch.compile; VAE overlap+cudnn-benchmark+channels-last"
    assert {
        ("sdpa", "fixed-4"),
        ("sdpa", "adaptive-2"),
        ("sdpa + torch.compile", "fixed-4"),
        ("host optimized_attention", "fixed-4"),
        (overlap, "fixed-4"),
        (overlap, "adaptive-2"),
        ("sdpa + torch.compile; VAE overlap", "fixed-4"),
        ("sdpa + torch.compile; VAE cudnn-benchmark", "fixed-4"),
        ("sdpa + torch.compile; VAE channels-last", "fixed-4"),
        (NODE, "fixed-4"),
        (NODE_COMPILE, "fixed-4"),
        ("sdpa + torch.compile; VAE tiny-TAEHV", "fixed-4"),
        ("sdpa + torch.compile; VAE tiny-TAEHV+overlap", "adaptive-2"),
    } <= variants, variants
    for r in rows:
        assert "error" not in r, r
        node_path = r["part"] == "node_compile"
        assert r["fps_best"] > 0 and r["ms_per_chunk_step"] > 0 and r["nfe"] > 0
        assert r["tflops"] is None if node_path else r["tflops"] >= 0
        assert r["vae"] == (r["variant"] not in ("host optimized_attention", NODE, NODE_COMPILE))
        if r["vae"]:
            assert 0 < r["latency_s_min"] and r["vae_ms_per_chunk_median"] > 0
        assert r["vae_overlap"] is False  # no CUDA streams here: the overlap variants decode serially
        assert r["dit_fps_median"] > 0
    assert [r["vae_options"] for r in rows if r["variant"] == overlap][0] == ["overlap", "cudnn", "cl"]
    # the graph path (UNETLoader -> TorchCompileModel -> DSA Sampler): compiled in the warm-up, reused after, and the
    # same video as the uncompiled MODEL's (cudagraphs backend on the CPU: the same ops, no CUDA graphs)
    notes = report["bench"]["notes"]
    compiled = next(n for n in notes if n.startswith("node_compile: node-compile: graphs compiled per run"))
    warm, *later = json.loads(compiled.split("per run ", 1)[1].split(" (", 1)[0])
    assert warm > 0 and later and all(g == 0 for g in later), compiled
    assert any(n.startswith("node_compile: node: graphs compiled per run [null") for n in notes), notes
    assert any("compiled vs uncompiled latent: max |diff| / max |uncompiled| = 0.00e+00" in n for n in notes), notes
    assert [r["part"] for r in rows if r["variant"] == overlap][0] == "vae_overlap"
    tiny = [r for r in rows if r["part"] == "tiny_vae"]
    assert {tuple(r["vae_options"]) for r in tiny} == {("tiny",), ("overlap", "tiny")}
    assert "Lq * (12 d^2 + 4 d f)" in report["bench"]["flop_formula"]
    assert [t["target"] for t in report["targets"]] == [
        "fixed-4 FPS >= 25",
        "adaptive-3 FPS >= 30",
        "first decoded chunk <= 0.4 s",
        "tiny VAE: fixed-4 FPS (DiT+decode) >= 0.9 x DiT-only FPS",
    ]
    assert all(t["met"] is None for t in report["targets"])  # no verdict from a CPU run
    assert all(
        "tiny" not in (t["variant"] or "") for t in report["targets"][:3]
    )  # the Wan VAE targets: Wan VAE rows only
    ratio = report["targets"][3]
    assert ratio["variant"].startswith("sdpa + torch.compile; VAE tiny-TAEHV") and 0 < ratio["value"] < 1
    md = (out / "gpu_check.md").read_text()
    assert "| cuda_tests | passed |" in md and "sdpa + torch.compile" in md and "| vae_overlap | passed |" in md
    assert "VAE ms/chunk" in md and overlap in md
    assert (out / "gpu_check.log").stat().st_size > 0


@pytest.mark.parametrize("frames,chunk", [(9, 3), (12, 3), (7, 1)])
def test_bench_streaming_decode_equals_the_hosts_decode(frames, chunk):
    """The speed table's streaming VAE decode (chunk by chunk, causal cache carried) gives exactly the host's
    whole-video WanVAE.decode, in the host's own frame grouping (single frames on 0.3.x, aligned pairs on 0.33)."""
    import host_env

    host_env.import_comfy_cpu()
    import comfy

    from benchmarks.bench_gpu import StreamingVAEDecoder, build_vae

    vae = build_vae(comfy, 8, "cpu", torch.float32)
    z = torch.randn(1, 16, frames, 4, 6, generator=torch.Generator().manual_seed(frames))
    with torch.no_grad():
        whole = vae.decode(z)
        dec = StreamingVAEDecoder(vae)
        outs = [dec.decode(z[:, :, s : s + chunk]) for s in range(0, frames, chunk)]
        tail = dec.flush()
    streamed = torch.cat(outs + ([tail] if tail is not None else []), 2)
    assert streamed.shape == whole.shape and whole.abs().mean() > 0.1
    assert torch.equal(streamed, whole)


@pytest.fixture(scope="module")
def bench_decode():
    """Decoded frames of the speed table's own run (bench_variant: sampling run + per-chunk streaming decode) on the
    CPU at the smallest size, for a set of VAE options; the VAE and generator are shared, as in the bench."""
    import host_env

    host_env.import_comfy_cpu()
    import comfy

    from benchmarks import bench_gpu
    from dsa_core.attention import sdpa_attention
    from dsa_core.wan_model import WanDiT, init_random_weights

    cfg = bench_gpu.MICRO_CFG
    dit = init_random_weights(WanDiT(cfg), seed=0).eval()
    text = torch.randn(1, 8, cfg.text_dim, generator=torch.Generator().manual_seed(1))
    vae = bench_gpu.build_vae(comfy, 8, "cpu", torch.float32)
    tiny = bench_gpu.build_tiny_vae(comfy, "cpu", torch.float32)
    model = bench_gpu.make_model(dit, cfg, sdpa_attention, None)

    @torch.no_grad()
    def run(**options):
        dec = bench_gpu.StreamingVAEDecoder(tiny if options.get("tiny") else vae, keep_frames=True, **options)
        try:
            rows = bench_gpu.bench_variant(
                dit,
                cfg,
                text,
                attention=sdpa_attention,
                compile_mode=None,
                lh=2,
                lw=4,
                chunks=4,  # 12 latent frames: on a pairing host the last chunk holds a frame back (flushed)
                repeats=1,
                modes=["adaptive-3"],
                decoder=dec,
                device=torch.device("cpu"),
                dtype=torch.float32,
                model=model,
            )
            return dec.collect(), rows[0], dec
        finally:
            dec.close()

    run.vae, run.tiny = vae, tiny
    return run


@pytest.mark.parametrize(
    "options",
    [dict(overlap=True), dict(overlap=True, cudnn_benchmark=True), dict(channels_last=True)]
    + [dict(overlap=True, cudnn_benchmark=True, channels_last=True)],
    ids=["overlap", "overlap+cudnn", "channels-last", "all"],
)
def test_bench_vae_options_give_the_serial_frames(bench_decode, options):
    """Same seed, same sampling run: the overlapped / cudnn.benchmark / channels-last decode paths give the serial
    decode's frames (on the CPU the overlap has no streams and is the serial path, its frames bit-equal)."""
    from benchmarks.bench_common import video_frames

    ref, ref_row, _ = bench_decode()
    cudnn_benchmark = torch.backends.cudnn.benchmark
    got, row, dec = bench_decode(**options)
    assert ref.shape == got.shape and ref.shape[2] == video_frames(12, True) and ref.abs().mean() > 0.05
    if options.get("channels_last"):
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)  # other conv kernels: equal up to rounding
    else:
        assert torch.equal(got, ref)
    assert not dec.overlapped and row["vae_overlap"] is False  # no CUDA streams on the CPU: the serial path
    assert row["vae_options"] == list(dec.options) and len(row["vae_options"]) == len(options)
    assert row["vae"] and row["dit_fps"] and row["latency_s"][0] > 0  # serial figures, as the plain decode
    assert row["steps"] == ref_row["steps"] and row["nfe"] == ref_row["nfe"]
    assert all(p.is_contiguous() for p in bench_decode.vae.parameters())  # close() gave the shared VAE back
    assert torch.backends.cudnn.benchmark == cudnn_benchmark  # switched on only while the decode launched


def test_bench_variant_keys_take_vae_options():
    from benchmarks import bench_gpu

    args = bench_gpu.parse(["--smoke", "--variants", "sdpa,compile+overlap+cudnn,compile+cl"])
    assert bench_gpu._wanted_variants(args) == ["sdpa", "compile+overlap+cudnn", "compile+cl"]
    assert bench_gpu.variant_name("compile+overlap+cudnn") == "sdpa + torch.compile; VAE overlap+cudnn-benchmark"
    assert (
        bench_gpu.variant_name("compile+cl (before failure)")
        == "sdpa + torch.compile; VAE channels-last (before failure)"
    )
    for bad in ("compile+fast", "nope+overlap", "sdpa+overlap+overlap"):
        with pytest.raises(SystemExit, match="unknown variants"):
            bench_gpu._wanted_variants(bench_gpu.parse(["--smoke", "--variants", bad]))


def test_bench_tiny_decode_equals_the_hosts_decode():
    """The speed table's tiny decoder (the host's TAEHV through the pack's streaming decoder, memory carried across
    chunks) gives exactly the host's whole-video TAEHV.decode."""
    import host_env

    host_env.import_comfy_cpu()
    import comfy

    from benchmarks.bench_gpu import StreamingVAEDecoder, build_tiny_vae

    vae = build_tiny_vae(comfy, "cpu", torch.float32)
    z = torch.randn(1, 16, 7, 4, 6, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        whole = vae.decode(z)
        dec = StreamingVAEDecoder(vae, tiny=True)
        streamed = torch.cat([dec.decode(z[:, :, s : s + 3]) for s in range(0, 7, 3)], 2)
    assert dec.flush() is None and dec.options == ("tiny",)
    assert streamed.shape == whole.shape == (1, 3, 1 + 4 * 6, 32, 48) and whole.std() > 0.05
    assert torch.equal(streamed, whole)


def test_bench_tiny_options_give_the_serial_frames(bench_decode):
    """The tiny decoder in the bench's own sampling run: overlapped (serial on the CPU) and channels-last give its
    serial frames; the Wan VAE frame count; the generator's run is the Wan VAE run's."""
    from benchmarks.bench_common import video_frames

    ref, ref_row, _ = bench_decode()
    tiny, tiny_row, dec = bench_decode(tiny=True)
    assert tiny.shape == ref.shape and tiny.shape[2] == video_frames(12, True) and tiny.std() > 0.05
    assert tiny_row["steps"] == ref_row["steps"] and tiny_row["vae_options"] == ["tiny"] and tiny_row["dit_fps"]
    over, over_row, _ = bench_decode(tiny=True, overlap=True)
    assert torch.equal(over, tiny) and over_row["vae_options"] == ["overlap", "tiny"]
    cl, _, _ = bench_decode(tiny=True, channels_last=True)
    torch.testing.assert_close(cl, tiny, rtol=1e-5, atol=1e-5)
    assert all(p.is_contiguous() for p in bench_decode.tiny.parameters())  # close() gave the shared VAE back
