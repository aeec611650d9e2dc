"""The sampler's output is pinned bit for bit: latents, steps and confidences of three runs on the real tiny
generator are compared with tests/core/data/sampler_pinned.safetensors, which was written by this file's
``write_reference`` from the sampler as it stood before its denoising step moved to dsa_core/flow_step.py.
Any change to the step maths, the noise, the order of operations or the precision rule shows up here.

Float results depend on the CPU's kernels: the file records the torch version, the CPU capability and a
fingerprint of the processor (model name and instruction-set flags) it was made with. Two machines reporting the
same capability can still pick different kernels (measured: 2e-6 apart), so the comparison is exact only on the
same processor; elsewhere it falls back to a 1e-5 tolerance (and says so), so the test still catches real
changes without failing on a different vector unit.

Regenerate (only when an output change is intended): ``DSA_WRITE_PINNED=1 bash scripts/test
tests/core/test_sampler_pinned.py``.
"""

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from dsa_core.ar_sampler import ChunkInterrupted, commit_chunk, denoise_chunk, prepare_state, sample_video
from dsa_core.causal_wan import CausalWan
from dsa_core.confidence_head import ConfidenceHead, HeadConfig
from dsa_core.config import TINY
from dsa_core.policies import ConfidencePolicy, FixedSteps, HeuristicPolicy
from dsa_core.schedules import extended_ladder, self_forcing_ladder
from dsa_core.wan_model import WanDiT, init_random_weights

PINNED = Path(__file__).parent / "data" / "sampler_pinned.safetensors"
H, W, CF = 4, 6, 3


def _processor() -> str:
    """Model name and instruction-set flags from /proc/cpuinfo, hashed ('' where the file is absent)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return ""
    keep = sorted({ln.split(":", 1)[1].strip() for ln in lines if ln.split(":")[0].strip() in ("model name", "flags")})
    return hashlib.sha256("\n".join(keep).encode()).hexdigest()[:16]


def _environment() -> dict:
    return {"torch": torch.__version__, "cpu": torch.backends.cpu.get_cpu_capability(), "processor": _processor()}


def _runs() -> dict:
    """name -> (latent, record) of the pinned runs; everything seeded, independent of the global RNG."""
    cw = CausalWan(init_random_weights(WanDiT(TINY), seed=1).eval(), TINY)
    g = torch.Generator().manual_seed(5)
    texts = [cw.encode_text(torch.randn(2, 6, 4096, generator=g)) for _ in range(2)]
    head = init_random_weights(ConfidenceHead(HeadConfig(dim=TINY.dim, hidden_dim=16)), seed=3).eval()
    sf, ext = self_forcing_ladder(), extended_ladder(self_forcing_ladder(), 6)
    out = {}
    # Self-Forcing's sampler: 4 fixed steps per chunk
    lat, _, rec = sample_video(
        cw,
        texts[0],
        num_frames=9,
        latent_h=H,
        latent_w=W,
        chunk_frames=CF,
        ladder=sf,
        policy=FixedSteps(),
        seed=11,
        batch=2,
    )
    out["fixed"] = (lat, rec)
    # DSA: a real (random) head decides each chunk's steps on the extended ladder; the threshold sits inside the
    # head's range so chunks stop at different steps
    lat, _, rec = sample_video(
        cw,
        texts[0],
        num_frames=12,
        latent_h=H,
        latent_w=W,
        chunk_frames=CF,
        ladder=ext,
        policy=ConfidencePolicy(CONFIDENCE_THRESHOLD, 1, 6),
        head=head,
        seed=12,
        batch=2,
    )
    out["confidence"] = (lat, rec)
    # a continuation with a rolling window, attention sinks, a prompt switch and the heuristic policy
    lat0, state, _ = sample_video(
        cw,
        texts[0],
        num_frames=6,
        latent_h=H,
        latent_w=W,
        chunk_frames=CF,
        ladder=sf,
        seed=13,
        batch=2,
        window_frames=6,
        sink_frames=3,
    )
    lat, _, rec = sample_video(
        cw, texts[1], num_frames=6, state=state, ladder=ext, recache="all", policy=HeuristicPolicy(0.4, 1, 6), seed=14
    )
    out["continued"] = (torch.cat([lat0, lat], 2), rec)
    return out


CONFIDENCE_THRESHOLD = 0.465  # the random head's confidences lie around 0.39..0.49 here


def _flatten(runs: dict) -> tuple[dict, dict]:
    tensors, meta = {}, {}
    for name, (lat, rec) in runs.items():
        tensors[f"{name}.latent"] = lat.contiguous()
        conf = [[-1.0 if c is None else c for c in ch.confidence] for ch in rec.chunks]
        width = max(len(c) for c in conf)
        tensors[f"{name}.confidence"] = torch.tensor(
            [c + [float("nan")] * (width - len(c)) for c in conf], dtype=torch.float64
        )
        meta[name] = {
            "steps": [ch.steps for ch in rec.chunks],
            "stop": [ch.stop_reason for ch in rec.chunks],
            "nfe": [ch.nfe for ch in rec.chunks],
            "extra_nfe": rec.extra_nfe,
        }
    return tensors, meta


def write_reference():
    tensors, meta = _flatten(_runs())
    PINNED.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(PINNED), metadata={"runs": json.dumps(meta), "environment": json.dumps(_environment())})


@pytest.fixture(scope="module")
def pinned():
    if os.environ.get("DSA_WRITE_PINNED") == "1":
        write_reference()
    with safe_open(str(PINNED), "pt") as f:
        meta = f.metadata()
        return ({k: f.get_tensor(k) for k in f.keys()}, json.loads(meta["runs"]), json.loads(meta["environment"]))


@pytest.fixture(scope="module")
def current():
    return _flatten(_runs())


def test_pinned_runs_exercise_the_policies(pinned):
    _, meta, _ = pinned
    assert set(meta["fixed"]["stop"]) == {"fixed"} and meta["fixed"]["steps"] == [4, 4, 4]
    steps = meta["confidence"]["steps"]
    assert len(set(steps)) > 1, f"the confidence run must stop chunks at different steps, got {steps}"
    assert max(steps) <= 6 and "confident" in meta["confidence"]["stop"]
    assert meta["continued"]["extra_nfe"] > 0  # the prompt switch recomputed the cache


@pytest.mark.parametrize("name", ["fixed", "confidence", "continued"])
def test_sampler_output_is_pinned(pinned, current, name):
    want, want_meta, env = pinned
    got, got_meta = current
    assert got_meta[name] == want_meta[name]
    exact = env == _environment()
    for key in (f"{name}.latent", f"{name}.confidence"):
        if exact:
            assert torch.equal(got[key].nan_to_num(7.0), want[key].nan_to_num(7.0)), (
                f"{key} differs from the pinned output (max |diff| {(got[key] - want[key]).abs().nan_to_num(0).max()})"
            )
        else:
            torch.testing.assert_close(
                got[key],
                want[key],
                atol=1e-5,
                rtol=1e-5,
                equal_nan=True,
                msg=lambda m: f"{key} (pinned on {env}, running on {_environment()}): {m}",
            )


def test_the_pieces_compose_to_the_pinned_run(pinned):
    """prepare_state, denoise_chunk and commit_chunk called by hand give the pinned confidence run bit for bit."""
    want, want_meta, env = pinned
    cw = CausalWan(init_random_weights(WanDiT(TINY), seed=1).eval(), TINY)
    g = torch.Generator().manual_seed(5)
    text = cw.encode_text(torch.randn(2, 6, 4096, generator=g))
    head = init_random_weights(ConfidenceHead(HeadConfig(dim=TINY.dim, hidden_dim=16)), seed=3).eval()
    ladder, policy = extended_ladder(self_forcing_ladder(), 6), ConfidencePolicy(CONFIDENCE_THRESHOLD, 1, 6)
    steps_seen = []
    with torch.no_grad():
        work, extra = prepare_state(cw, text, num_frames=12, latent_h=H, latent_w=W, chunk_frames=CF, seed=12, batch=2)
        chunks = []
        for n in range(4):
            x0, rec = denoise_chunk(
                cw,
                work,
                ladder,
                policy,
                head=head,
                chunk_number=n,
                num_chunks=4,
                callback=lambda info: steps_seen.append(info.step),
            )
            commit_chunk(cw, work, x0, rec)
            chunks.append((x0, rec))
    assert extra == 0 and work.next_chunk_index == 4 and work.frames == 12
    assert [r.steps for _, r in chunks] == want_meta["confidence"]["steps"]
    assert len(steps_seen) == sum(want_meta["confidence"]["steps"])
    got = torch.cat([x for x, _ in chunks], 2)
    if env == _environment():
        assert torch.equal(got, want["confidence.latent"])
    else:
        torch.testing.assert_close(got, want["confidence.latent"], atol=1e-5, rtol=1e-5)


def test_denoise_chunk_stops_when_asked_and_leaves_the_frames_alone():
    cw = CausalWan(init_random_weights(WanDiT(TINY), seed=1).eval(), TINY)
    text = cw.encode_text(torch.randn(1, 6, 4096, generator=torch.Generator().manual_seed(5)))
    calls = []

    def stop_after_two():
        calls.append(1)
        return len(calls) > 2

    with torch.no_grad():
        work, _ = prepare_state(cw, text, num_frames=3, latent_h=H, latent_w=W, chunk_frames=CF, seed=1)
        with pytest.raises(ChunkInterrupted) as e:
            denoise_chunk(cw, work, self_forcing_ladder(), FixedSteps(), should_stop=stop_after_two)
    assert e.value.record.steps == 2 and e.value.record.nfe == 2
    assert work.frames == 0 and work.next_chunk_index == 0
