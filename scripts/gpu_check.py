"""The GPU check behind scripts/gpu_check: every part time-boxed in its own process, one JSON + one Markdown table.

    bash scripts/gpu_check                 # on the GPU machine (from the repository root, .gpu/ carried)
    bash scripts/gpu_check --dry-run       # every part at tiny size on the CPU (what the test suite runs)

Parts (each a subprocess in its own process group, killed at its time box; they run in the order --parts
names them; the whole run ends by --budget-s, later parts get what is left or are reported as skipped):
  env          python/torch/CUDA/GPU, the host's comfy modules importable, bf16 matmul rate and copy bandwidth
  cuda_tests   pytest -m cuda tests/host/test_cuda.py (on the CPU in a dry run, tiny sizes)
  compile      bench_gpu.py --variants compile   (torch.compile of the block halves, + VAE, serial decode)
  node_compile benchmarks/bench_node_compile.py: the graph path in the host (UNETLoader -> TorchCompileModel ->
               DSA Sampler) beside the same graph without TorchCompileModel (DiT only); not in the device default;
               skipped, with the missing package named, where the image cannot start the whole host
  vae_overlap  bench_gpu.py --variants compile+overlap+cudnn+cl,compile+overlap,compile+cudnn,compile+cl,
               modes fixed-4 and adaptive-3: the VAE decode on a second CUDA stream beside the DiT, cudnn.benchmark
               and channels-last for the VAE, one at a time and all together (one compilation shared)
  tiny_vae     bench_gpu.py --variants compile+tiny,compile+tiny+overlap, modes fixed-4 and adaptive-3: the host's
               tiny video decoder (TAEHV, taew2_1's architecture) streaming each chunk, serial (DiT+decode FPS
               against its own DiT-only FPS) and on a second CUDA stream
  bench        benchmarks/bench_gpu.py: sdpa (+ VAE), sdpa-flash, xformers, host attention (DiT only)
  cuda_graphs  bench_gpu.py --variants cuda-graphs (the same with CUDA graphs, + VAE); not in the device default
Default parts: env,cuda_tests,compile,vae_overlap,tiny_vae,bench on the device (node_compile and cuda_graphs on
request: --parts env,compile,node_compile puts the graph's compile beside the benchmark's own, at most about 7 min);
the dry run adds node_compile and cuda_graphs (all parts).
Setup before them: the ComfyUI tarball in .gpu/ is unpacked to a temp folder (DSA_COMFY_DIR), the wheels in
.gpu/wheels are installed with pip --no-index --target into a temp folder put on PYTHONPATH.
Output folder: $OUT if set, else ./gpu-check-out. Schema: benchmarks/README.md ("gpu_check.json").
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import tarfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GPU_DIR = REPO / ".gpu"
TARBALL = "comfyui-0.33.0.tar.gz"
SCHEMA = "dsa-gpu-check/1"
# name -> (time box s on the GPU, time box s in a dry run)
BOXES = {
    "env": (60, 90),
    "cuda_tests": (150, 240),
    "compile": (110, 150),
    "node_compile": (240, 240),
    "vae_overlap": (180, 150),
    "tiny_vae": (100, 120),
    "bench": (150, 150),
    "cuda_graphs": (110, 60),
}
DEVICE_PARTS = "env,cuda_tests,compile,vae_overlap,tiny_vae,bench"  # the plain command on the GPU machine
DRY_RUN_PARTS = DEVICE_PARTS + ",node_compile,cuda_graphs"  # the dry run: every part, so none can rot
# the VAE levers all together (first: it gets the most time), then each alone, on the fastest DiT measured so far
# (torch.compile; its serial-decode baseline is the compile part)
VAE_OVERLAP_VARIANTS = "compile+overlap+cudnn+cl,compile+overlap,compile+cudnn,compile+cl"
TINY_VAE_VARIANTS = "compile+tiny,compile+tiny+overlap"  # serial first: its DiT-only FPS is the target's reference
TINY_VS_DIT = 0.9  # with the tiny decoder, DiT+decode FPS >= this x DiT-only FPS (fixed-4)
TARGETS = [  # (key, mode, metric, comparison, value): the issue's targets for Wan 2.1 1.3B, 480x832, bf16, H100/H200
    ("fixed-4 FPS >= 25", "fixed-4", "fps", ">=", 25.0),
    ("adaptive-3 FPS >= 30", "adaptive-3", "fps", ">=", 30.0),
    ("first decoded chunk <= 0.4 s", "fixed-4", "latency_s", "<=", 0.4),
]

PROBE = r"""
import json, os, sys, time, importlib
out = {"python": sys.version.split()[0], "executable": sys.executable}
import torch
out.update(torch=torch.__version__, cuda_available=torch.cuda.is_available(), torch_cuda=torch.version.cuda)
try:
    import triton; out["triton"] = triton.__version__
except Exception as e:
    out["triton"] = None
try:
    import xformers; out["xformers"] = xformers.__version__
except Exception:
    out["xformers"] = None
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    out.update(gpu=p.name, capability=f"{p.major}.{p.minor}", gpu_memory_gib=round(p.total_memory / 2**30, 1),
               multiprocessors=p.multi_processor_count,
               flash_sdp=torch.backends.cuda.flash_sdp_enabled(),
               mem_efficient_sdp=torch.backends.cuda.mem_efficient_sdp_enabled(),
               cudnn_sdp=getattr(torch.backends.cuda, "cudnn_sdp_enabled", lambda: None)())
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16); b = torch.randn_like(a)
    for _ in range(3): a @ b
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    for _ in range(10): a @ b
    e.record(); torch.cuda.synchronize()
    out["bf16_matmul_tflops"] = round(10 * 2 * 8192**3 / (s.elapsed_time(e) / 1e3) / 1e12, 1)
    x = torch.empty(2 * 2**30 // 2, dtype=torch.bfloat16, device="cuda").normal_(); y = torch.empty_like(x)
    y.copy_(x); s.record()
    for _ in range(5): y.copy_(x)
    e.record(); torch.cuda.synchronize()
    out["copy_tb_s"] = round(5 * 2 * x.numel() * 2 / (s.elapsed_time(e) / 1e3) / 1e12, 2)
    del a, b, x, y
sys.path.insert(0, os.path.join(os.getcwd(), "tests"))
imports = {}
try:
    import host_env
    d = str(host_env.comfy_dir())
    out["comfy_dir"] = d
    try:
        sys.path.insert(0, d)
        import comfyui_version; out["comfy_version"] = comfyui_version.__version__
    except Exception as e:
        out["comfy_version"] = f"unknown ({e})"
    if torch.cuda.is_available():
        import comfy.cli_args; comfy.cli_args.args.disable_api_nodes = True
    else:
        host_env.import_comfy_cpu()
    for m in ("comfy.model_management", "comfy.ops", "comfy.float", "comfy.ldm.modules.attention",
              "comfy.ldm.wan.model", "comfy.ldm.wan.vae", "comfy.model_patcher"):
        t = time.perf_counter()
        try:
            importlib.import_module(m); imports[m] = f"ok ({time.perf_counter() - t:.1f} s)"
        except Exception as e:
            imports[m] = f"{type(e).__name__}: {str(e)[:200]}"
    if torch.cuda.is_available():
        try:
            import comfy.model_management as mm
            out["comfy_torch_device"] = str(mm.get_torch_device())
            out["comfy_attention"] = "xformers" if mm.xformers_enabled() else (
                "pytorch" if mm.pytorch_attention_enabled() else "other")
        except Exception as e:
            out["comfy_torch_device"] = f"{type(e).__name__}: {str(e)[:200]}"
except Exception as e:
    imports["host"] = f"{type(e).__name__}: {str(e)[:200]}"
out["comfy_imports"] = imports
print("PROBE_JSON " + json.dumps(out))
"""


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Log:
    """Everything printed goes to stdout and to gpu_check.log."""

    def __init__(self, path: Path):
        self.f = open(path, "a", buffering=1)

    def __call__(self, msg: str = "") -> None:
        print(msg, flush=True)
        self.f.write(msg + "\n")


def run_part(name: str, argv: list, timeout: float, env: dict, log: Log) -> dict:
    """Run one part in its own process group; kill the group at the time box. Streams its output."""
    log(f"\n===== {name} (time box {timeout:.0f} s): {' '.join(str(a) for a in argv)}")
    t0 = time.perf_counter()
    tail = collections.deque(maxlen=60)
    try:
        p = subprocess.Popen(
            [str(a) for a in argv],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except OSError as e:
        return {"name": name, "status": "error", "reason": f"could not start: {e}", "wall_s": 0.0, "timeout_s": timeout}

    def pump():
        for line in p.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            log(line)

    th = threading.Thread(target=pump, daemon=True)
    th.start()
    timed_out = False
    try:
        rc = p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                break
            try:
                p.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        rc = p.returncode
    th.join(timeout=5)
    wall = time.perf_counter() - t0
    status = "timeout" if timed_out else ("passed" if rc == 0 else "failed")
    res = {
        "name": name,
        "status": status,
        "returncode": rc,
        "wall_s": round(wall, 1),
        "timeout_s": round(timeout),
        "log_tail": list(tail)[-25:],
    }
    if timed_out:
        res["reason"] = f"killed at its time box ({timeout:.0f} s)"
    log(f"===== {name}: {status} in {wall:.1f} s")
    return res


def prepare_host(args, env: dict, work: Path, log: Log) -> dict:
    """Unpack the carried ComfyUI tarball and install the carried wheels (device mode); report what was done."""
    info = {"comfy_dir": None, "wheels": [], "wheel_install": None}
    use_carried = args.host == "carried" or (args.host == "auto" and not args.dry_run)
    if os.environ.get("DSA_COMFY_DIR"):
        info["comfy_dir"] = os.environ["DSA_COMFY_DIR"]
    elif use_carried and (GPU_DIR / TARBALL).is_file():
        dest = work / "comfy"
        if not (dest / "ComfyUI" / "main.py").is_file():
            t = time.perf_counter()
            with tarfile.open(GPU_DIR / TARBALL) as tf:
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(dest, filter="data")
                else:
                    tf.extractall(dest)
            log(f"unpacked {TARBALL} in {time.perf_counter() - t:.1f} s")
        env["DSA_COMFY_DIR"] = info["comfy_dir"] = str(dest / "ComfyUI")
    else:
        info["comfy_dir"] = "test host (scripts/host.py)"
    wheels = sorted((GPU_DIR / "wheels").glob("*.whl")) if use_carried else []
    if wheels:
        site = work / "site"
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-index",
            "--no-deps",
            "--no-compile",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--upgrade",
            "--target",
            str(site),
        ]
        cmd += [str(w) for w in wheels]
        t = time.perf_counter()
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            ok = r.returncode == 0
            msg = "ok" if ok else (r.stderr or r.stdout)[-800:]
        except Exception as e:
            ok, msg = False, f"{type(e).__name__}: {e}"
        if not ok:  # one bad wheel must not cost the others: install one by one
            done = []
            for w in wheels:
                one = cmd[: cmd.index("--target") + 2] + [str(w)]
                r = subprocess.run(one, capture_output=True, text=True, timeout=60)
                if r.returncode == 0:
                    done.append(w.name)
            msg += f" | installed one by one: {done}"
        info["wheels"] = [w.name for w in wheels]
        info["wheel_install"] = f"{msg} ({time.perf_counter() - t:.1f} s)"
        env["PYTHONPATH"] = str(site) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        log(f"wheels -> {site}: {info['wheel_install']}")
    return info


def junit_summary(path: Path) -> dict:
    out = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0, "cases": []}
    if not path.is_file():
        return out
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname', '').split('.')[-1]}::{case.get('name')}"
        outcome, msg = "passed", ""
        for tag, key in (("failure", "failed"), ("error", "errors"), ("skipped", "skipped")):
            el = case.find(tag)
            if el is not None:
                outcome, msg = key, (el.get("message") or "")[:400]
                break
        out[outcome] += 1
        out["cases"].append(
            {
                "name": name,
                "outcome": outcome.rstrip("s") if outcome == "errors" else outcome,
                "time_s": round(float(case.get("time", 0) or 0), 2),
                "message": msg,
            }
        )
    return out


def bench_rows(bench_json: dict, part: str) -> list:
    rows = []
    for key, v in (bench_json.get("variants") or {}).items():
        if isinstance(v, str):
            rows.append({"part": part, "variant": key, "error": v})
            continue
        for r in v["rows"]:
            med = lambda xs: sorted(xs)[len(xs) // 2] if xs else None  # noqa: E731
            rnd = lambda x, n: None if x is None else round(x, n)  # noqa: E731
            dit_fps = r.get("dit_fps") or []  # none for an overlapped decode (no DiT-only span in its wall time)
            rows.append(
                {
                    "part": part,
                    "variant": v.get("name", key),
                    "mode": r["mode"],
                    "vae": r["vae"],
                    "vae_options": r.get("vae_options", []),
                    "vae_overlap": bool(r.get("vae_overlap", False)),
                    "steps_per_chunk": round(r["steps"], 3),
                    "nfe": r["nfe"],
                    "repeats": r["repeats"],
                    "fps_best": round(max(r["fps"]), 3),
                    "fps_median": round(med(r["fps"]), 3),
                    "dit_fps_best": round(max(dit_fps), 3) if dit_fps else None,
                    "dit_fps_median": rnd(med(dit_fps), 3),
                    "latency_s_min": round(min(r["latency_s"]), 4),
                    "latency_s_median": round(med(r["latency_s"]), 4),
                    "dit_ms_per_chunk_median": rnd(med(r.get("dit_ms_chunk") or []), 2),
                    "vae_ms_per_chunk_median": round(med(r["vae_ms_chunk"]), 2) if r["vae"] else None,
                    "ms_per_chunk_step": None if r["ms_per_step"] is None else round(r["ms_per_step"], 3),
                    "tflops": None if r["tflops"] is None else round(r["tflops"], 2),
                    "tflop_per_run": None if r["tflop_per_run"] is None else round(r["tflop_per_run"], 3),
                    "overhead": None if r["overhead"] is None else round(r["overhead"], 4),
                    "peak_mem_gib": None if v.get("peak_mem_gib") is None else round(v["peak_mem_gib"], 2),
                    "warmup_s": round(r.get("warmup_s", 0.0), 1),
                }
            )
    return rows


def check_targets(rows: list, gpu: bool) -> list:
    """The Wan VAE targets from the Wan VAE rows (a tiny decoder's rows cannot meet them), then the tiny decoder's:
    its best fixed-4 DiT+decode FPS over the DiT-only FPS of its serial row (the same compiled generator)."""
    out = []
    for key, mode, metric, cmp, value in TARGETS:
        cands = [r for r in rows if r.get("mode") == mode and r.get("vae") and "tiny" not in r.get("vae_options", [])]
        field = {"fps": "fps_median", "latency_s": "latency_s_median"}[metric]
        best = None
        for r in cands:
            if best is None or (r[field] > best[field] if cmp == ">=" else r[field] < best[field]):
                best = r
        got = None if best is None else best[field]
        met = None if got is None or not gpu else (got >= value if cmp == ">=" else got <= value)
        out.append({"target": key, "value": got, "variant": None if best is None else best["variant"], "met": met})
    tiny = [r for r in rows if r.get("mode") == "fixed-4" and "tiny" in r.get("vae_options", []) and "error" not in r]
    dit = max((r["dit_fps_median"] for r in tiny if r.get("dit_fps_median")), default=None)
    best = max(tiny, key=lambda r: r["fps_median"], default=None)
    got = None if best is None or not dit else round(best["fps_median"] / dit, 3)
    out.append(
        {
            "target": f"tiny VAE: fixed-4 FPS (DiT+decode) >= {TINY_VS_DIT} x DiT-only FPS",
            "value": got,
            "variant": None if best is None else best["variant"],
            "met": None if got is None or not gpu else got >= TINY_VS_DIT,
        }
    )
    return out


def markdown(report: dict) -> str:
    env = report.get("env") or {}
    lines = [
        f"# GPU check ({report['mode']})",
        "",
        f"{report['started']} -> {report['finished']}, {report['wall_s']:.0f} s; GPU: {env.get('gpu') or 'none'}; "
        f"torch {env.get('torch')} (CUDA {env.get('torch_cuda')}); python {env.get('python')}; "
        f"ComfyUI {env.get('comfy_version')}; bf16 matmul {env.get('bf16_matmul_tflops')} TFLOP/s, copy "
        f"{env.get('copy_tb_s')} TB/s",
        "",
        "| part | status | wall s | box s | note |",
        "|---|---|---|---|---|",
    ]
    for p in report["parts"]:
        lines.append(
            f"| {p['name']} | {p['status']} | {p.get('wall_s', 0)} | {p.get('timeout_s', '')} | "
            f"{(p.get('reason') or '').replace('|', '/')[:150]} |"
        )
    t = report.get("tests") or {}
    lines += [
        "",
        f"CUDA tests: {t.get('passed', 0)} passed, {t.get('failed', 0)} failed, {t.get('errors', 0)} errors, "
        f"{t.get('skipped', 0)} skipped",
        "",
    ]
    for c in t.get("cases", []):
        if c["outcome"] != "passed":
            lines.append(f"- {c['outcome']}: {c['name']}: {c['message'][:200]}")
    b = report.get("bench") or {}
    rows = [r for r in b.get("rows", []) if "error" not in r]
    lines += [
        "",
        f"Speed ({b.get('setup', '')})",
        "",
        "| variant | mode | steps/chunk | NFE | FPS DiT+VAE (median/best) | FPS DiT only | first chunk s | "
        "VAE ms/chunk | ms/chunk-step | TFLOP/s | peak GiB | overhead |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    f = lambda v, s: "-" if v is None else format(v, s)  # noqa: E731
    for r in rows:
        vae = r["vae"]
        lines.append(
            f"| {r['variant']} | {r['mode']} | {r['steps_per_chunk']:.2f} | {r['nfe']} | "
            f"{f(r['fps_median'], '.2f') + '/' + f(r['fps_best'], '.2f') if vae else '-'} | "
            f"{f(r['dit_fps_median'], '.2f')} | {f(r['latency_s_median'], '.3f') if vae else '-'} | "
            f"{f(r['vae_ms_per_chunk_median'], '.1f') + (' (overlapped)' if r.get('vae_overlap') else '')} | "
            f"{f(r['ms_per_chunk_step'], '.1f')} | {f(r['tflops'], '.3g')} | {f(r['peak_mem_gib'], '.1f')} | "
            f"{f(r['overhead'], '.3f')} |"
        )
    for r in b.get("rows", []):
        if "error" in r:
            lines.append(f"| {r['variant']} | {r['error'][:120]} | | | | | | | | | | |")
    lines += ["", f"FLOPs: {b.get('flop_formula', '')}", ""]
    for tg in report.get("targets", []):
        lines.append(
            f"- target {tg['target']}: {tg['value']} ({tg['variant']}) -> "
            f"{'met' if tg['met'] else ('not met' if tg['met'] is False else 'n/a')}"
        )
    for n in b.get("notes", []):
        lines.append(f"- note: {n}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="every part at tiny size on the CPU")
    ap.add_argument("--budget-s", type=float, default=None, help="the whole run (default 420 on a GPU, 600 dry run)")
    ap.add_argument("--out", default=None, help="output folder (default $OUT, else ./gpu-check-out)")
    ap.add_argument(
        "--host",
        choices=["auto", "carried", "test-host"],
        default="auto",
        help="ComfyUI for the parts: the carried .gpu tarball (default on the device) or the test host "
        "(default in a dry run); DSA_COMFY_DIR overrides both",
    )
    ap.add_argument(
        "--parts",
        default=None,
        help=f"comma list, run in this order (default: {DEVICE_PARTS}; dry run: {DRY_RUN_PARTS}); e.g. "
        "env,compile,vae_overlap for the VAE levers alone (about 4-5 min)",
    )
    args = ap.parse_args(argv)
    wanted = [p for p in (args.parts or (DRY_RUN_PARTS if args.dry_run else DEVICE_PARTS)).split(",") if p]
    unknown = [p for p in wanted if p not in BOXES]
    if unknown or len(set(wanted)) != len(wanted):
        ap.error(f"--parts: unknown or repeated {unknown or wanted}; choose from {list(BOXES)}")
    t_start = time.perf_counter()
    started = now_iso()
    budget = args.budget_s or (600.0 if args.dry_run else 420.0)
    deadline = t_start + budget
    out = Path(args.out or os.environ.get("OUT") or REPO / "gpu-check-out")
    out.mkdir(parents=True, exist_ok=True)
    work = Path(os.environ.get("DSA_GPU_WORK", "/tmp/dsa-gpu-check"))
    (work / "parts").mkdir(parents=True, exist_ok=True)
    log_path = out / "gpu_check.log"
    log_path.write_text("")
    log = Log(log_path)
    mode = "dry-run" if args.dry_run else "device"
    log(f"gpu_check ({mode}), budget {budget:.0f} s, output {out}, python {sys.executable}")

    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("TORCHINDUCTOR_CACHE_DIR", str(work / "inductor"))
    env.pop("OUT", None)
    command = " ".join(["scripts/gpu_check"] + (argv or sys.argv[1:]))
    report = {
        "schema": SCHEMA,
        "mode": mode,
        "started": started,
        "command": command,
        "budget_s": budget,
        "host": platform.node(),
        "parts": [],
        "env": None,
        "tests": None,
        "bench": {"rows": [], "notes": []},
        "targets": [],
    }
    try:
        report["git"] = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
            ).stdout.strip()
            or None
        )
    except Exception:
        report["git"] = None

    def write():
        report["finished"] = now_iso()
        report["wall_s"] = round(time.perf_counter() - t_start, 1)
        (out / "gpu_check.json").write_text(json.dumps(report, indent=1))
        (out / "gpu_check.md").write_text(markdown(report))

    t = time.perf_counter()
    try:
        report["setup"] = prepare_host(args, env, work, log)
        report["setup"]["wall_s"] = round(time.perf_counter() - t, 1)
    except Exception as e:
        report["setup"] = {"error": f"{type(e).__name__}: {e}"}
        log(f"setup failed: {e}")
    write()

    py = sys.executable
    dry = args.dry_run
    junit = work / "parts" / "junit.xml"
    small = (
        [
            "--smoke",
            "--micro",
            "--chunks",
            "2",
            "--repeats",
            "1",
            "--latent",
            "2x2",
            "--vae-dim",
            "8",
            "--modes",
            "fixed-4,adaptive-2",
        ]
        if dry
        else []
    )
    parts = {
        "env": [py, "-c", PROBE],
        "cuda_tests": [
            py,
            "-m",
            "pytest",
            "-c",
            "tests/pytest.ini",
            "--rootdir",
            "tests",
            "tests/host/test_cuda.py",
            "-m",
            "cuda",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            f"--junitxml={junit}",
        ],
        "bench": [py, "benchmarks/bench_gpu.py", "--variants", "sdpa,sdpa-flash,xformers,host"] + small,
        "compile": [py, "benchmarks/bench_gpu.py", "--variants", "compile"]
        + small
        + (["--compile-backend", "eager"] if dry else []),
        # the modes of the targets, 2 repeats (+ the timed run): ~25 s per variant after one ~30-60 s compilation
        "vae_overlap": [
            py,
            "benchmarks/bench_gpu.py",
            "--variants",
            VAE_OVERLAP_VARIANTS,
            "--modes",
            "fixed-4,adaptive-3",
            "--repeats",
            "2",
        ]
        + small
        + (["--compile-backend", "eager"] if dry else []),
        "tiny_vae": [
            py,
            "benchmarks/bench_gpu.py",
            "--variants",
            TINY_VAE_VARIANTS,
            "--modes",
            "fixed-4,adaptive-3",
            "--repeats",
            "2",
        ]
        + small
        + (["--compile-backend", "eager"] if dry else []),
        "cuda_graphs": [py, "benchmarks/bench_gpu.py", "--variants", "cuda-graphs"] + small,
        # what a graph gets: UNETLoader -> TorchCompileModel -> DSA Sampler in the host, beside the uncompiled MODEL
        # (the dry run: TorchCompileModel's cudagraphs backend, which on the CPU compiles without CUDA graphs)
        "node_compile": [py, "benchmarks/bench_node_compile.py"]
        + (["--smoke", "--backend", "cudagraphs"] if dry else []),
    }
    order = wanted
    for i, name in enumerate(order):
        box = BOXES[name][1 if dry else 0]
        left = deadline - time.perf_counter()
        # keep 20 s for each later part's start-up, so one slow part cannot starve all the others
        timeout = min(box, left - 20 * (len(order) - i - 1))
        if timeout < 20:
            report["parts"].append(
                {
                    "name": name,
                    "status": "skipped",
                    "wall_s": 0.0,
                    "timeout_s": 0,
                    "reason": f"global budget ({budget:.0f} s) spent",
                }
            )
            write()
            continue
        penv = dict(env)
        argv_ = list(parts[name])
        bench_json = work / "parts" / f"{name}.json"
        if name in ("bench", "compile", "node_compile", "vae_overlap", "tiny_vae", "cuda_graphs"):
            bench_json.unlink(missing_ok=True)
            argv_ += ["--json", str(bench_json), "--budget-s", str(max(10, int(timeout - 30)))]
        if name == "cuda_tests":
            junit.unlink(missing_ok=True)
            if dry:
                penv["DSA_CUDA_TESTS_DEVICE"] = "cpu"
        res = run_part(name, argv_, timeout, penv, log)
        if name == "env":
            for line in res.get("log_tail", []):
                if line.startswith("PROBE_JSON "):
                    report["env"] = json.loads(line[len("PROBE_JSON ") :])
            res["log_tail"] = [x for x in res.get("log_tail", []) if not x.startswith("PROBE_JSON ")][-10:]
            imports = (report["env"] or {}).get("comfy_imports", {})
            bad = {k: v for k, v in imports.items() if not v.startswith("ok")}
            if bad:
                res["reason"] = f"host imports failing: {bad}"
        elif name == "cuda_tests":
            report["tests"] = junit_summary(junit)
            tt = report["tests"]
            res["reason"] = (
                f"{tt['passed']} passed, {tt['failed']} failed, {tt['errors']} errors, {tt['skipped']} skipped"
            )
            if tt["passed"] == tt["failed"] == tt["errors"] == 0 and res.get("returncode") in (0, 5):
                res["status"] = "skipped"  # pytest exits 5 when the module skips itself (no CUDA)
                why = [x for x in res.get("log_tail", []) if x.startswith("SKIPPED")]
                res["reason"] += f": {why[0].split(': ', 1)[-1][:150]}" if why else ""
        else:
            data = {}
            if bench_json.is_file():
                try:
                    data = json.loads(bench_json.read_text())
                except ValueError as e:
                    res["reason"] = f"bench JSON unreadable: {e}"
            rows = bench_rows(data, name)
            report["bench"]["rows"] += rows
            meta = data.get("meta") or {}
            for k in ("setup", "flop_formula", "gpu"):
                if meta.get(k):
                    report["bench"][k] = meta[k]
            report["bench"]["notes"] += [f"{name}: {n}" for n in data.get("notes", [])]
            measured = [r for r in rows if "error" not in r]
            errors = [f"{r['variant']}: {r['error']}" for r in rows if "error" in r]
            if errors:
                res["reason"] = "; ".join(errors)[:300]
            if res["status"] == "failed" and res.get("returncode") == 2 and not measured:
                res["status"], res["reason"] = "skipped", "no CUDA device"
            elif res["status"] == "failed" and res.get("returncode") == 3 and not measured:  # host cannot start
                res["status"], res["reason"] = "skipped", "; ".join(data.get("notes", []))[:300]
            elif res["status"] == "passed" and not measured:
                res["status"] = "skipped" if not errors else "failed"
                res["reason"] = res.get("reason") or "; ".join(data.get("notes", []))[:300]
            elif res["status"] == "passed" and errors:
                res["status"] = "failed"
        report["parts"].append(res)
        write()
    gpu = bool((report.get("env") or {}).get("cuda_available")) and not dry
    report["targets"] = check_targets(report["bench"]["rows"], gpu)
    write()
    log("\n" + markdown(report))
    log(
        f"gpu_check: wrote {out / 'gpu_check.json'}, {out / 'gpu_check.md'}, {log_path} "
        f"({time.perf_counter() - t_start:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
