"""Every file the code and the docs send a reader to is in the repository, and no text speaks of work items.

Scans the tracked text files (Python, JS, Markdown, the shell entry points) for repository paths
('docs/method.md', 'dsa_core/flow_step.py', 'tests/core/...') and for bare module or document names
('noise.py', 'README.md'), and checks each one resolves: from the repository root, from the file's own
folder, or as the name of some file in the repository. ComfyUI's model folders ('models/vae/', ...) are the
host's, not the repository's, and are left out (the pack's own 'models/toy/' is checked).
"""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOP = (
    "docs",
    "dsa_core",
    "nodes",
    "tests",
    "scripts",
    "js",
    "workflows",
    "benchmarks",
    "host",
    "results",
    "models/toy",
)
PATH_RE = re.compile(r"(?<![\w./-])(?:" + "|".join(re.escape(t) for t in TOP) + r")(?:/[\w.*-]*)*")
NAME_RE = re.compile(r"(?<![\w./-])[\w-]+\.(?:py|md)\b")
URL_RE = re.compile(r"\w+://\S+")
HOST_FILES = {"main.py", "comfyui_version.py", "sd.py"}  # ComfyUI's own files, named where the host is handled
OUTPUT_FILES = {"gpu_check.md"}  # what the GPU check writes into its output folder
# ../shared/hosts is where CI finds a host release tarball; nothing else outside the repository may be cited.
WORK_ITEM_RE = re.compile(
    r"\b(?:issue|work item|ticket)s?\s*#?\s*\d+|acceptance criteria|\.\./shared\b(?!/hosts)", re.I
)


def _tracked_text_files() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    keep = []
    for rel in out:
        p = ROOT / rel
        if p.is_file() and (p.suffix in (".py", ".js", ".md") or rel in ("scripts/test", "scripts/demo", ".ci/run")):
            keep.append(p)
    return keep


def _resolves(token: str, here: Path, names: set[str]) -> bool:
    token = token.rstrip(".,:;)")
    if not token:
        return True
    if "*" in token:  # a glob such as models/toy/prompts/*.safetensors
        return any(ROOT.glob(token))
    for base in (ROOT, here.parent):
        p = base / token
        if p.exists():
            return True
        if not token.endswith("/") and any(p.parent.glob(p.name + "*")):  # a prefix such as toy_
            return True
    return "/" not in token and (token in names or token in HOST_FILES or token in OUTPUT_FILES)


def test_every_named_path_exists():
    files = _tracked_text_files()
    names = {p.name for p in files} | {p.name for p in ROOT.rglob("*") if ".git" not in p.parts}
    missing = []
    for path in files:
        if path == Path(__file__).resolve():
            continue
        for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            line = URL_RE.sub(" ", line)
            for m in list(PATH_RE.finditer(line)) + list(NAME_RE.finditer(line)):
                if not _resolves(m.group(0), path, names):
                    missing.append(f"{path.relative_to(ROOT)}:{i}: {m.group(0)}")
    assert not missing, "paths named in the repository that do not exist in it:\n" + "\n".join(missing)


def test_the_scan_sees_what_it_checks():
    files = {p.relative_to(ROOT).as_posix() for p in _tracked_text_files()}
    assert {"dsa_core/flow_step.py", "docs/method.md", "README.md", "scripts/test"} <= files
    assert not _resolves("docs/DSA-METHOD.md", ROOT / "README.md", set())
    assert _resolves("docs/method.md", ROOT / "README.md", set())
    assert _resolves("noise.py", ROOT / "dsa_core" / "ar_sampler.py", set())


def test_no_text_speaks_of_work_items():
    found = []
    for path in _tracked_text_files():
        if path == Path(__file__).resolve():
            continue
        for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if WORK_ITEM_RE.search(line):
                found.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not found, "code, tests and docs describe behaviour, not work items:\n" + "\n".join(found)
