"""Presets by cost and the step budget through the real host's nodes, on the bundled toy model (its file carries the
head's and the heuristic's calibration tables): the expected cost in the report beside the measured one, presets
resolved per head, the budget's mean kept across the extender, and one line for a head without a table."""

import pytest
from graphs import dsa_graph

from dsa_core.calibration import META_HEURISTIC, PRESET_COST, table_from_metadata
from dsa_core.checkpoint_header import read_header
from dsa_core.confidence_head import load_head
from dsa_core.policies import BUDGET_TOLERANCE
from dsa_core.toy import MODEL_FILE

TOY = MODEL_FILE.name
PROMPT = "toy_red_square_drifting_right_on_black.safetensors"
PROMPT_B = "toy_green_disc_drifting_left_on_black.safetensors"


def toy_graph(seed=0, **policy):
    # 64x64 px = the toy's 8x8 latent; 45 frames = 12 latent frames = 4 chunks; the extender adds 2 chunks
    return dsa_graph(TOY, PROMPT, PROMPT_B, width=64, height=64, length=45, add_frames=24, seed=seed, **policy)


@pytest.fixture(scope="module")
def tables():
    head = load_head(MODEL_FILE)
    _, meta = read_header(MODEL_FILE)
    return head.calibration, table_from_metadata(meta, META_HEURISTIC)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_budget_keeps_its_mean_across_the_extender(inprocess_host, seed):
    budget = 2.5
    res = inprocess_host.run(toy_graph(seed, policy="budget", mean_steps=budget))
    assert res.success, res.error()
    first, ext = res.outputs["3"][2][0], res.outputs["5"][2][0]
    steps = [c["steps"] for c in first["chunks"]] + [c["steps"] for c in ext["chunks"]]
    assert len(steps) == 6
    mean = sum(steps) / len(steps)
    assert budget - BUDGET_TOLERANCE <= mean <= budget + BUDGET_TOLERANCE, steps
    assert ext["allowance"]["chunks"] == 6 and ext["allowance"]["steps"] == sum(steps)
    assert first["policy"] == {**first["policy"], "name": "budget", "mean_steps": budget, "calibrated": True}
    assert first["expected"]["nfe_ratio"] == pytest.approx((budget + 1) / 5)
    events = [d for e, d in res.events if e == "dsa.steps" and "chunk" in d]
    assert events and all(d["budget"] == budget and d["expected"]["source"] == "head" for d in events)


def test_presets_resolve_per_head_and_the_report_expects_their_cost(inprocess_host, tables):
    head_table, heuristic_table = tables
    for name in PRESET_COST:
        res = inprocess_host.run(toy_graph(5, threshold_preset=name, threshold=0.33))
        assert res.success, res.error()
        rep = res.outputs["3"][2][0]
        assert rep["policy"]["threshold"] == head_table.presets[name]
        e = rep["expected"]
        assert e["calibrated"] and e["note"] == "" and e["threshold"] == head_table.presets[name]
        assert e["mean_steps"] == pytest.approx(head_table.mean_steps_at(head_table.presets[name]))
        assert "no calibration table" not in rep["summary"]
    res = inprocess_host.run(toy_graph(5, policy="heuristic", threshold_preset="balanced", extend=False))
    assert res.success, res.error()
    rep = res.outputs["3"][2][0]
    assert rep["policy"]["threshold"] == heuristic_table.presets["balanced"]
    assert rep["expected"]["source"] == "heuristic" and rep["expected"]["calibrated"]


def test_a_head_without_a_table_keeps_the_old_numbers_and_says_so(inprocess_host, tiny_models):
    g = dsa_graph(tiny_models["wan_with_head"], tiny_models["prompt_a"], extend=False, threshold_preset="balanced")
    res = inprocess_host.run(g)
    assert res.success, res.error()
    rep = res.outputs["3"][2][0]
    assert rep["policy"]["threshold"] == 0.75
    assert rep["summary"].count("no calibration table") == 1 and rep["expected"]["mean_steps"] is None


def test_budget_outside_the_step_limits_is_one_clear_error(inprocess_host):
    res = inprocess_host.run(toy_graph(0, policy="budget", mean_steps=7.5, extend=False))
    assert not res.success
    assert "mean_steps 7.5 must lie between min_steps (1) and max_steps (6)" in str(res.error())
