"""Keeps the benchmark scripts from rotting: their entry functions at the tiniest size (a few seconds).
Speed itself is measured by running the benchmarks (benchmarks/README.md), never asserted here."""

from __future__ import annotations

import math

import pytest
import torch

from benchmarks import bench_cpu, bench_gpu
from benchmarks.bench_common import MODES, ScriptedHead


def _positive(values):
    values = values if isinstance(values, (list, tuple)) else [values]
    return all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in values)


def test_scripted_head_gives_the_pattern():
    head = ScriptedHead((2, 1, 3), dim=128)
    h = torch.zeros(1, 3, 128)
    verdicts = [float(head(h, h).min()) for _ in range(2 + 1 + 3 + 2)]
    assert verdicts == [0, 1, 1, 0, 0, 1, 0, 1]


@torch.no_grad()
def test_cpu_bench_entry_points(capsys):
    cfg, lh, lw = bench_cpu.CONFIGS["micro"]
    rows = bench_cpu.bench_sampler("micro", cfg, lh, lw, chunks=3, repeats=1, text_len=8)
    assert [r["mode"] for r in rows] == list(MODES)
    assert [round(r["steps"], 2) for r in rows] == [4.0, 3.0, 2.0]  # (3,2,4) and (2,1,3) over 3 chunks
    assert [r["nfe"] for r in rows] == [15, 12, 9]
    for r in rows:
        for key in ("first_s", "later_s", "latent_fps", "video_fps", "overhead", "step_ms"):
            assert _positive(r[key]), (key, r[key])
        assert min(r["overhead"]) >= 0.99
    bench_cpu.print_sampler(rows, 3)
    heads = bench_cpu.bench_head_cost({"micro": rows[0]["step_ms"]}, calls=5)
    assert _positive(heads[0]["head_ms"]) and heads[0]["head_params"] > 0
    bench_cpu.print_head(heads)
    kv = bench_cpu.bench_kv("micro", cfg, lh, lw, chunks=4, window=3, sink=1, repeats=1)
    keep, roll = kv["runs"].values()
    assert len(keep["per_chunk"]) == 4 and _positive([t for c in keep["per_chunk"] for t in c])
    assert roll["bytes"] < keep["bytes"]
    bench_cpu.print_kv(kv)
    bench_cpu.print_kv_full_size()
    out = capsys.readouterr().out
    assert "adaptive-2" in out and "keep-all" in out and "1.3B" in out


@torch.no_grad()
def test_gpu_bench_smoke_on_cpu(capsys):
    args = bench_gpu.parse(
        [
            "--smoke",
            "--no-vae",
            "--attention",
            "sdpa",
            "--chunks",
            "2",
            "--repeats",
            "1",
            "--latent",
            "2x2",
            "--modes",
            "fixed-4,adaptive-2",
        ]
    )
    bench_gpu.SMOKE_CFG, saved = bench_cpu.MICRO, bench_gpu.SMOKE_CFG
    try:
        results, setup, notes = bench_gpu.run(args)
    finally:
        bench_gpu.SMOKE_CFG = saved
    rows = results["sdpa"]["rows"]
    assert [r["mode"] for r in rows] == ["fixed-4", "adaptive-2"]
    for r in rows:
        for key in ("latency_s", "fps", "dit_fps", "dit_ms_chunk", "overhead"):
            assert _positive(r[key]), (key, r[key])
    bench_gpu.print_results(results, args, setup, notes)
    out = capsys.readouterr().out
    assert "CPU SMOKE RUN" in out and "NOT GPU FIGURES" in out and "17.00" in out and "22.63" in out


def test_gpu_bench_refuses_cpu_without_smoke(capsys):
    if torch.cuda.is_available():
        pytest.skip("has CUDA")
    assert bench_gpu.main([]) == 2


def test_memory_estimate_bench_measures_one_size():
    import json
    import subprocess
    import sys
    from pathlib import Path

    # run as a script, not imported: importing it would put the repo first on sys.path, ahead of the host
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_memory_estimate.py"
    spec = ["smoke", dict(dim=128, ffn_dim=256, num_heads=1, num_layers=2), 8, 8, 3, 3, 0, 0]
    out = subprocess.run(
        [sys.executable, str(script), "--one", json.dumps(spec)], capture_output=True, text=True, check=True
    )
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["estimate"] > r["kv"] > 0 and r["peak_growth"] >= 0


def test_interrupt_bench_lands_a_stop_inside_attention():
    from benchmarks import bench_interrupt

    r = bench_interrupt.measure(256, 256, 13, [0.0], "sdpa", layers=1)
    assert r["queries"] == 3 * 16 * 16 and r["keys"] == 4 * 16 * 16 and r["latencies"][0] is not None
