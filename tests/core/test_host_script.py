"""scripts/host.py's handling of ComfyUI trees (no host needed): version, host root, pins, unpacking, checks."""

import hashlib
import io
import re
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
import host  # noqa: E402

sys.path.pop(0)
SHARED_TREE = host.shared_release()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    # setenv first records the variables' state, so what host.main writes into os.environ is undone afterwards
    for name in ("DSA_HOST_TREE", "DSA_HOST_ROOT"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    host.tree_version.cache_clear()


def make_tree(folder: Path, version: str) -> Path:
    """A minimal ComfyUI-shaped folder: what host.py reads of a tree, plus things a checkout has and a host must
    not take over (git, models, other packs, the user's extra model paths)."""
    folder.mkdir(parents=True)
    (folder / "comfyui_version.py").write_text(f'# generated\n__version__ = "{version}"\n')
    (folder / "main.py").write_text("print('ComfyUI')\n")
    (folder / "comfy").mkdir()
    (folder / "comfy" / "sd.py").write_text("import torchaudio\n")
    (folder / "requirements.txt").write_text(
        "comfyui-frontend-package==1.48.7\ncomfyui-workflow-templates==0.11.41\ntorch\ntorchvision\ntorchaudio\n"
        "numpy>=1.25.0\nSQLAlchemy>=2.0.0\n\n#non essential dependencies:\nkornia>=0.7.1\n"
    )
    (folder / "extra_model_paths.yaml").write_text("mine:\n  custom_nodes: /home/me/nodes\n")
    for junk in (
        ".git/HEAD",
        "models/checkpoints/big.safetensors",
        "custom_nodes/OtherPack/__init__.py",
        "comfy/__pycache__/sd.cpython-311.pyc",
    ):
        (folder / junk).parent.mkdir(parents=True, exist_ok=True)
        (folder / junk).write_text("x")
    for code in ("comfy/ldm/models/autoencoder.py", "comfy_api/input/__init__.py"):  # code under such names
        (folder / code).parent.mkdir(parents=True, exist_ok=True)
        (folder / code).write_text("# ComfyUI code\n")
    return folder


def make_tarball(path: Path, tree: Path) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        tf.add(tree, arcname="ComfyUI")
    return path


def test_version_from_folder_and_tarball(tmp_path):
    tree = make_tree(tmp_path / "ComfyUI", "0.40.1")
    assert host.tree_version(tree) == "0.40.1"
    assert host.tree_version(make_tarball(tmp_path / "c.tar.gz", tree)) == "0.40.1"
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="comfyui_version.py"):
        host.tree_version(tmp_path / "empty")


def test_each_host_has_its_own_root_and_the_default_is_never_taken(tmp_path, monkeypatch):
    home = Path.home() / ".cache" / "comfyui-dsa"
    assert host.host_root() == home / "host-0.3.75" and host.host_version() == "0.3.75"
    assert host.constraints_file() == REPO / "host" / "constraints.txt"
    monkeypatch.setenv("DSA_HOST_TREE", str(make_tree(tmp_path / "new", "0.33.0")))
    assert host.host_root() == home / "host-0.33.0"
    assert host.constraints_file() == REPO / "host" / "constraints-0.33.0.txt"
    # a user's own 0.3.75 checkout must not replace the default host from PyPI
    monkeypatch.setenv("DSA_HOST_TREE", str(make_tree(tmp_path / "old", "0.3.75")))
    assert host.host_root() == home / "host-0.3.75-tree"
    monkeypatch.setenv("DSA_HOST_ROOT", str(tmp_path / "elsewhere"))
    assert host.host_root() == tmp_path / "elsewhere"


def test_tree_flag_selects_the_tree_like_the_environment(tmp_path, monkeypatch):
    tree = make_tree(tmp_path / "ComfyUI", "0.33.0")
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    host.main(["--tree", str(tree), "version"])
    assert out.getvalue().strip() == "0.33.0"


def test_folder_is_copied_without_user_data_once_per_change(tmp_path):
    src = make_tree(tmp_path / "ComfyUI", "0.33.0")
    root = tmp_path / "root"
    root.mkdir()
    host._unpack_tree(src, root)
    got = host.comfy_dir(root)
    assert (got / "main.py").exists() and (got / "comfy" / "sd.py").exists()
    assert (got / "comfy/ldm/models/autoencoder.py").exists() and (got / "comfy_api/input/__init__.py").exists()
    for absent in (".git", "models", "extra_model_paths.yaml", "comfy/__pycache__", "custom_nodes/OtherPack"):
        assert not (got / absent).exists(), absent
    assert (got / "custom_nodes").is_dir()  # the host's start-up needs the folder
    stamp = (root / ".tree-stamp").read_text()
    marker = got / "left-by-a-run"
    marker.write_text("x")
    host._unpack_tree(src, root)  # unchanged source: nothing is copied again
    assert marker.exists() and (root / ".tree-stamp").read_text() == stamp
    (src / "main.py").write_text("print('ComfyUI, edited')\n")
    host._unpack_tree(src, root)
    assert not marker.exists() and "edited" in (got / "main.py").read_text()


def test_tarball_is_unpacked_from_its_top_folder(tmp_path):
    tarball = make_tarball(tmp_path / "mine.tar.gz", make_tree(tmp_path / "ComfyUI", "0.40.1"))
    root = tmp_path / "root"
    root.mkdir()
    host._unpack_tree(tarball, root)
    got = host.comfy_dir(root)
    assert host.tree_version(got) == "0.40.1" and not (got / "extra_model_paths.yaml").exists()
    expected = "tarball " + hashlib.sha256(tarball.read_bytes()).hexdigest()
    assert (root / ".tree-stamp").read_text() == expected


def test_a_tarball_under_a_known_name_must_be_the_known_release(tmp_path):
    fake = make_tarball(tmp_path / "comfyui-0.33.0.tar.gz", make_tree(tmp_path / "ComfyUI", "0.33.0"))
    with pytest.raises(SystemExit, match="sha256"):
        host._check_known_tarball(fake)
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(SystemExit, match="sha256"):
        host._unpack_tree(fake, root)
    assert not host.comfy_dir(root).exists()
    host._check_known_tarball(make_tarball(tmp_path / "my-build.tar.gz", tmp_path / "ComfyUI"))  # unknown: no check


def test_requirements_split_leaves_torch_to_the_script(tmp_path):
    hostreqs, frontend = host._split_tree_requirements(make_tree(tmp_path / "ComfyUI", "0.33.0"))
    assert hostreqs == ["numpy>=1.25.0", "SQLAlchemy>=2.0.0", "kornia>=0.7.1", "requests"]
    assert frontend == ["comfyui-frontend-package==1.48.7", "comfyui-workflow-templates==0.11.41"]


def _name(req: str) -> str:
    return re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0].strip().lower().replace("_", "-")


@pytest.mark.skipif(not SHARED_TREE.exists(), reason=f"{SHARED_TREE} is not on this machine")
def test_shared_release_is_known_and_every_requirement_is_pinned(tmp_path):
    host._check_known_tarball(SHARED_TREE)
    assert host.tree_version(SHARED_TREE) == "0.33.0"
    with tarfile.open(SHARED_TREE) as tf:
        tf.extract("ComfyUI/requirements.txt", tmp_path, filter="data")
    hostreqs, frontend = host._split_tree_requirements(tmp_path / "ComfyUI")
    pins = {
        _name(line.split("==")[0])
        for line in (REPO / "host" / "constraints-0.33.0.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    wanted = {_name(r) for r in hostreqs + frontend} | {"torch", "pytest", "selenium", "websocket-client"}
    assert wanted <= pins, f"not pinned: {sorted(wanted - pins)}"
