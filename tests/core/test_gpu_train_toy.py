"""The one device command that trains the toy model (scripts/gpu_train_toy) cannot rot: its dry run trains every
stage at tiny size on the CPU and writes the files a device run sends back (each small enough to come back), and
the CPU evaluation of those files (reproduce --from-weights) writes the report with the learned summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_gpu_train_toy_dry_run_writes_weights_the_cpu_evaluates(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, DSA_PYTHON=sys.executable, OUT=str(out), TMPDIR=str(tmp_path), OMP_NUM_THREADS="1")
    r = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_train_toy"), "--dry-run"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    files = sorted(p.name for p in out.iterdir())
    assert files == [
        "calibrated_head.safetensors",
        "dsa_toy_wan.safetensors",
        "gpu_train_toy.log",
        "teacher.safetensors",
        "training.json",
    ]
    assert all((out / f).stat().st_size < 16 * 2**20 for f in files)  # what a device run can send back
    info = json.loads((out / "training.json").read_text())
    assert info["dmd_steps_done"] == 2 and info["label_name"] == "tolerance" and len(info["teacher_losses"]) == 3
    assert "exit 0" in (out / "gpu_train_toy.log").read_text()
    assert not list(tmp_path.glob("gpu_train_toy.*"))  # its scratch folder is gone

    from dsa_core.toy import reproduce

    res = tmp_path / "res"
    args = ["--from-weights", str(out), "--out", str(res), "--no-progress", "--threads", "1"]
    args += ["--eval-per-motion", "1", "--eval-seeds", "2", "--precondition-only", "--perfect-seeds", "2"]
    args += ["--save-model", str(tmp_path / "model"), "--calibrate-prompts", "1", "--calibrate-seeds", "1"]
    assert reproduce.main(args) == 0
    rep = json.loads((res / "results.json").read_text())
    assert rep["summary"]["learned"]["precondition_met"] is False
    assert set(rep["timings"]["reused_from_work"]) == {"teacher_s", "dmd_s", "calibration_s"}
    assert rep["dmd_steps_done"] == 2
    assert (tmp_path / "model" / "dsa_toy_wan.safetensors").is_file()
