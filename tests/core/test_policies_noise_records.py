import json

import pytest
import torch

from dsa_core.noise import SeededNoise, derive_seed
from dsa_core.policies import (
    THRESHOLD_PRESETS,
    ConfidencePolicy,
    FixedSteps,
    HeuristicPolicy,
    heuristic_confidence,
    make_policy,
    threshold_from_preset,
    validate_threshold,
)
from dsa_core.records import ChunkRecord, RunRecord
from dsa_core.schedules import extended_ladder, self_forcing_ladder


def test_thresholds_one_scale():
    assert set(THRESHOLD_PRESETS) == {"quality", "balanced", "fast"}
    assert all(0 <= v <= 1 for v in THRESHOLD_PRESETS.values())
    assert THRESHOLD_PRESETS["quality"] > THRESHOLD_PRESETS["balanced"] > THRESHOLD_PRESETS["fast"]
    assert threshold_from_preset("Quality") == THRESHOLD_PRESETS["quality"]
    assert threshold_from_preset("0.3") == 0.3
    for bad in (-0.1, 1.5, "1.5", "ultra"):
        with pytest.raises(ValueError):
            threshold_from_preset(bad)
    assert validate_threshold(1) == 1.0


def test_policy_rules():
    lad = extended_ladder(self_forcing_ladder(), 6)
    assert FixedSteps().max_steps(lad) == 4 and FixedSteps(2).max_steps(lad) == 2
    p = ConfidencePolicy(0.8, min_steps=2, max_steps=5)
    assert p.max_steps(lad) == 5
    assert p.decide(1, 0.99) is None  # below min_steps
    assert p.decide(2, 0.8) == "confident"  # >= threshold
    assert p.decide(2, 0.79) is None
    assert p.decide(3, None) is None
    assert ConfidencePolicy(2.0).decide(4, 1.0) is None  # > 1: never stops early
    assert ConfidencePolicy(1.0).decide(1, 1.0) == "confident"  # a saturated sigmoid meets 1.0
    with pytest.raises(ValueError, match="exceeds the ladder"):
        ConfidencePolicy(0.5, max_steps=7).max_steps(lad)
    with pytest.raises(ValueError):
        ConfidencePolicy(-0.1)
    with pytest.raises(ValueError):
        ConfidencePolicy(0.5, min_steps=3, max_steps=2)
    assert "heuristic" in HeuristicPolicy(0.5).to_dict()["label"]
    assert isinstance(make_policy("heuristic", threshold="fast"), HeuristicPolicy)
    assert make_policy("confidence", threshold="quality", max_steps=6).to_dict()["threshold"] == 0.9
    json.dumps(make_policy("fixed").to_dict())


def test_heuristic_confidence():
    x = torch.randn(2, 16, 3, 4, 4)
    assert heuristic_confidence(None, x) is None
    c = heuristic_confidence(x, x)
    assert c.shape == (2, 3) and torch.all(c == 1)
    assert torch.all(heuristic_confidence(-x, x) == 0)


def test_noise_keyed_and_reproducible():
    n = SeededNoise(7)
    a = n.sample(3, 1, (1, 16, 3, 4, 4))
    assert torch.equal(a, SeededNoise(7).sample(3, 1, (1, 16, 3, 4, 4)))
    assert not torch.equal(a, n.sample(3, 2, (1, 16, 3, 4, 4)))
    assert not torch.equal(a, n.sample(6, 1, (1, 16, 3, 4, 4)))
    assert not torch.equal(a, SeededNoise(8).sample(3, 1, (1, 16, 3, 4, 4)))
    assert n.sample(0, 0, (2, 3), dtype=torch.bfloat16).dtype == torch.bfloat16
    assert derive_seed(1, 2, 3) == derive_seed(1, 2, 3) < 2**63


def test_run_record_numbers():
    r = RunRecord(base_steps=4)
    r.chunks = [
        ChunkRecord(0, 0, 3, steps=2, nfe=3),
        ChunkRecord(1, 3, 3, steps=6, nfe=7),
        ChunkRecord(2, 6, 3, steps=1, nfe=2),
    ]
    r.extra_nfe = 2
    assert r.total_nfe == 14 and r.fixed_nfe == 15
    assert r.speedup == pytest.approx(15 / 12)
    assert r.mean_steps_per_frame == pytest.approx(3.0)
    d = json.loads(r.to_json())
    assert d["total_nfe"] == 14 and len(d["chunks"]) == 3
    assert "steps/frame" in r.summary()


def test_threshold_presets_resolve_in_one_place():
    from dsa_core.policies import CUSTOM_PRESET, make_policy, threshold_from_preset

    assert threshold_from_preset("balanced") == THRESHOLD_PRESETS["balanced"]
    assert threshold_from_preset(CUSTOM_PRESET, 0.3) == 0.3 and threshold_from_preset("0.4") == 0.4
    with pytest.raises(ValueError, match="needs a threshold value"):
        threshold_from_preset(CUSTOM_PRESET)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        threshold_from_preset(CUSTOM_PRESET, 1.5)
    assert make_policy("confidence", threshold="fast", custom_threshold=0.2).threshold == THRESHOLD_PRESETS["fast"]
    assert make_policy("heuristic", threshold=CUSTOM_PRESET, custom_threshold=0.2).threshold == 0.2
    assert make_policy("fixed", threshold=CUSTOM_PRESET, steps=5).steps == 5
