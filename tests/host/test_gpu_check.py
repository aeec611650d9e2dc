"""The one GPU command (scripts/gpu_check) cannot rot: its dry run runs every part at tiny size on the CPU (the
CUDA tests on the CPU, the speed parts with the reduced config, torch.compile through the eager backend) and
writes its JSON and Markdown; its JSON follows the documented schema."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


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
    assert list(parts) == ["env", "cuda_tests", "bench", "compile", "cuda_graphs"]
    for name in ("env", "cuda_tests", "bench", "compile"):
        assert parts[name]["status"] == "passed", (name, parts[name])
    assert parts["cuda_graphs"]["status"] == "skipped" and "n/a on CPU" in parts["cuda_graphs"]["reason"]
    assert all(v.startswith("ok") for v in report["env"]["comfy_imports"].values()), report["env"]
    tests = report["tests"]
    assert tests["passed"] >= 7 and tests["failed"] == tests["errors"] == 0, tests
    skipped = [c for c in tests["cases"] if c["outcome"] == "skipped"]
    assert all("needs CUDA" in c["message"] or "no dsa_core.memory_estimate" in c["message"] for c in skipped)
    rows = report["bench"]["rows"]
    variants = {(r["variant"], r["mode"]) for r in rows}
    assert {
        ("sdpa", "fixed-4"),
        ("sdpa", "adaptive-2"),
        ("sdpa + torch.compile", "fixed-4"),
        ("host optimized_attention", "fixed-4"),
    } <= variants, variants
    for r in rows:
        assert "error" not in r, r
        assert r["fps_best"] > 0 and r["ms_per_chunk_step"] > 0 and r["tflops"] >= 0 and r["nfe"] > 0
        assert r["vae"] == (r["variant"] != "host optimized_attention")
        if r["vae"]:
            assert 0 < r["latency_s_min"] and r["vae_ms_per_chunk_median"] > 0
    assert "Lq * (12 d^2 + 4 d f)" in report["bench"]["flop_formula"]
    assert [t["target"] for t in report["targets"]] == [
        "fixed-4 FPS >= 25",
        "adaptive-3 FPS >= 30",
        "first decoded chunk <= 0.4 s",
    ]
    assert all(t["met"] is None for t in report["targets"])  # no verdict from a CPU run
    md = (out / "gpu_check.md").read_text()
    assert "| cuda_tests | passed |" in md and "sdpa + torch.compile" in md
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
