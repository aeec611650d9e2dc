"""Shared fixtures: the pack folder as the host sees it, a models folder the tests fill, and both host tiers.

Tests under tests/core need no host; tests under tests/host use `inprocess_host` (tier a, fast, no server) and
`server_host` (tier b, a real ComfyUI server on a free loopback port, one per session).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
sys.path.insert(0, str(TESTS))
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # dsa_core importable as a top-level package in tests

PACK_NAME = "ComfyUI-DSA"
PROBE_PACK = "dsa_test_probes"
ARTIFACTS = Path(os.environ.get("DSA_TEST_ARTIFACTS", REPO / "test-artifacts"))


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("dsa-host")


@pytest.fixture(scope="session")
def pack_parent(session_dir) -> Path:
    """A custom_nodes folder holding this repo under the pack's name (the folder name is the host's name for it)."""
    parent = session_dir / "packs"
    parent.mkdir()
    (parent / PACK_NAME).symlink_to(REPO, target_is_directory=True)
    # a test-only pack beside it: an attention override that counts its calls (tests/host/probe_pack)
    (parent / PROBE_PACK).symlink_to(TESTS / "host" / "probe_pack", target_is_directory=True)
    return parent


@pytest.fixture(scope="session")
def models_dir(session_dir) -> Path:
    import host_env

    d = session_dir / "models"
    for sub in host_env.host_script.MODEL_FOLDERS:
        (d / sub).mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="session")
def inprocess_host(session_dir, pack_parent, models_dir):
    from inprocess_host import InProcessHost

    host = InProcessHost(session_dir / "inproc-base", pack_parent, models_dir).start(PACK_NAME)
    if not host.pack_nodes:
        failures = "\n".join(r.getMessage() for r in host.log_records if r.levelno >= 30)
        pytest.fail(f"{PACK_NAME} did not import into the in-process host:\n{failures}")
    return host


@pytest.fixture(scope="session")
def server_host(session_dir, pack_parent, models_dir):
    from server_host import ServerHost

    work = session_dir / "server"
    work.mkdir()
    (work / "models").symlink_to(models_dir, target_is_directory=True)
    host = ServerHost(work, pack_parent, PACK_NAME, slim=os.environ.get("DSA_SLIM_HOST") == "1").start()
    yield host
    host.stop()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "server.log").write_text(host.log())


@pytest.fixture(scope="session")
def tiny_models(models_dir) -> dict:
    """A tiny random Wan 2.1 checkpoint and two prompt embeddings in the session's models folder."""
    from testdata import write_head, write_prompt, write_tiny_wan, write_tiny_wan_with_head

    return {
        "wan": write_tiny_wan(models_dir / "diffusion_models" / "tiny_wan.safetensors").name,
        "wan_with_head": write_tiny_wan_with_head(models_dir / "diffusion_models" / "tiny_dsa.safetensors").name,
        "head": write_head(models_dir / "dsa" / "tiny_head.safetensors").name,
        "prompt_a": write_prompt(models_dir / "dsa_prompts" / "prompt_a.safetensors", seed=1).name,
        "prompt_b": write_prompt(models_dir / "dsa_prompts" / "prompt_b.safetensors", seed=2).name,
    }


@pytest.fixture(scope="session")
def workflow_model_files(models_dir, session_dir, server_host):
    """The files the real-model templates name. Only the DSA files are read at validation time (their headers), so
    the text encoder and VAE are empty placeholders; the real-model templates are validated, never executed. The
    image-to-video template's start image goes into both hosts' input folders (the front end shows it)."""
    sys.path.insert(0, str(REPO / "scripts"))
    import make_workflows
    from testdata import write_causal_ar_wan, write_head, write_tiny_wan

    write_tiny_wan(models_dir / "diffusion_models" / make_workflows.GENERATOR)
    write_causal_ar_wan(models_dir / "diffusion_models" / make_workflows.CAUSAL_FORCING)
    write_head(models_dir / "dsa" / make_workflows.HEAD)
    for folder, name in (("text_encoders", make_workflows.TEXT_ENCODER), ("vae", make_workflows.VAE)):
        (models_dir / folder / name).write_bytes(b"")
    tiny_vae = models_dir / "vae_approx" / make_workflows.TINY_VAE
    if not tiny_vae.exists():  # the tiny-VAE streaming tests may have written a real one under this name
        tiny_vae.write_bytes(b"")
    from PIL import Image

    for base in ("inproc-base", "server/base"):  # the --base-directory of each host tier
        (session_dir / base / "input").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (48, 40), (200, 120, 40)).save(session_dir / base / "input" / make_workflows.START_IMAGE)
    return models_dir
