"""Thresholds an artist can trust: calibration tables (presets defined by cost, resolved per head) and the step
budget, on the shipped toy model. Expectations come from the table stored in the model file, never from hard-coded
thresholds, so the tests hold for whatever toy model is committed (after `python -m dsa_core.calibrate_presets`)."""

import math

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from dsa_core.ar_sampler import sample_video
from dsa_core.calibrate_presets import calibrate, measure, write_metadata
from dsa_core.calibration import (
    META_HEAD,
    META_HEURISTIC,
    PRESET_COST,
    CalibrationRow,
    CalibrationTable,
    nfe_ratio,
    presets_from_rows,
    table_from_metadata,
)
from dsa_core.causal_wan import CausalWan
from dsa_core.checkpoint import load_generator
from dsa_core.confidence_head import load_head
from dsa_core.expected_cost import expected_cost
from dsa_core.policies import (
    BUDGET_TOLERANCE,
    CONFIDENCE_HEAD,
    CONFIDENCE_HEURISTIC,
    BudgetAllowance,
    BudgetPolicy,
    threshold_from_preset,
)
from dsa_core.schedules import extended_ladder, self_forcing_ladder
from dsa_core.toy import MODEL_FILE
from dsa_core.toy import world as W
from dsa_core.toy.preset_rollouts import toy_rollouts

HELD_OUT_SCENE_SEED = 777  # the tests' prompts: drawn apart from the calibration's and kept disjoint from them
HELD_OUT_SEEDS = list(range(9100, 9105))


@pytest.fixture(scope="module")
def toy():
    with safe_open(str(MODEL_FILE), framework="pt") as f:
        meta = dict(f.metadata() or {})
    dit = load_generator(MODEL_FILE, dtype="fp32")
    head = load_head(MODEL_FILE, expected_dim=dit.config.dim)
    return {
        "cw": CausalWan(dit, dit.config),
        "head": head,
        "meta": meta,
        "ladder": extended_ladder(self_forcing_ladder(), int(meta.get("dsa.toy.max_steps", 6))),
    }


def test_the_shipped_model_carries_both_tables(toy):
    head_table = toy["head"].calibration
    heur = table_from_metadata(toy["meta"], META_HEURISTIC)
    assert head_table is not None and heur is not None, "run python -m dsa_core.calibrate_presets on the toy model"
    for t in (head_table, heur):
        assert set(t.presets) == set(PRESET_COST)
        assert t.rollouts["videos"] >= (48 if t.source == "head" else 24) and t.base_steps == 4
        assert all(r.quality is not None and r.quality[1] <= r.quality[0] <= r.quality[2] for r in t.rows)
        ratios = [r.nfe_ratio for r in t.rows]
        assert min(ratios) < 0.6 or t.source == "heuristic"  # the heuristic never stops after step 1
        assert max(ratios) == pytest.approx(nfe_ratio(t.max_steps, 4))


def _held_out(toy, table, n_prompts=8):
    return toy_rollouts(n_prompts, HELD_OUT_SEEDS, HELD_OUT_SCENE_SEED, exclude=table.rollouts["prompts"])


def test_presets_cost_what_they_promise_on_held_out_prompts(toy):
    """Acceptance: fast / balanced / quality spend within 10 % of 50 / 70 / 100 % of fixed 4's NFE on prompts and
    seeds the table was not measured on."""
    table = toy["head"].calibration
    rs = _held_out(toy, table)
    assert not set(rs.prompts) & set(table.rollouts["prompts"])
    for name, cost in PRESET_COST.items():
        thr = threshold_from_preset(name, table=table)
        row = measure(toy["cw"], rs, toy["ladder"], CONFIDENCE_HEAD, thr, toy["head"], 1, table.max_steps)
        assert abs(row.nfe_ratio / cost - 1) <= 0.10, (name, thr, row.nfe_ratio)


def test_heuristic_presets_hold_where_the_heuristic_can_reach_them(toy):
    table = table_from_metadata(toy["meta"], META_HEURISTIC)
    rs = _held_out(toy, table, n_prompts=6)
    reachable = {k: c for k, c in PRESET_COST.items() if abs(table.reached[k] / c - 1) <= 0.05}
    assert reachable, "the heuristic reaches none of the preset costs"
    for name, cost in PRESET_COST.items():
        thr = threshold_from_preset(name, table=table)
        if name not in reachable:  # out of its range: the cheapest (or dearest) threshold it has
            ends = (min(r.nfe_ratio for r in table.rows), max(r.nfe_ratio for r in table.rows))
            assert table.reached[name] in ends
            continue
        row = measure(toy["cw"], rs, toy["ladder"], CONFIDENCE_HEURISTIC, thr, None, 1, table.max_steps)
        assert abs(row.nfe_ratio / cost - 1) <= 0.10, (name, thr, row.nfe_ratio)


def _budget_run(toy, scene, seed, budget, table, frames=W.NUM_FRAMES, state=None, text=None, confidence=None):
    cw = toy["cw"]
    text = text if text is not None else cw.encode_text(W.prompt_embedding(scene)[None])
    src = confidence or CONFIDENCE_HEAD
    policy = BudgetPolicy(budget, 1, 6, confidence=src, table=table)
    return sample_video(
        cw,
        None if state is not None else text,
        num_frames=frames,
        latent_h=W.LATENT_H,
        latent_w=W.LATENT_W,
        chunk_frames=W.CHUNK_FRAMES,
        ladder=toy["ladder"],
        policy=policy,
        seed=seed,
        head=toy["head"] if src == CONFIDENCE_HEAD else None,
        state=state,
    )


@pytest.mark.parametrize("budget", [1.5, 2.5, 4.0])
def test_budget_holds_the_mean_within_a_tenth_also_across_an_extension(toy, budget):
    table = toy["head"].calibration
    scenes = _held_out(toy, table, n_prompts=4).prompts
    spreads = set()
    for i, prompt in enumerate(scenes):
        scene = W.scene_from_prompt(prompt)
        for seed in (11 + i, 40 + i):
            _, state, rec = _budget_run(toy, scene, seed, budget, table)
            first = [c.steps for c in rec.chunks]
            assert budget - BUDGET_TOLERANCE <= sum(first) / len(first) <= budget + BUDGET_TOLERANCE + 1e-9, first
            # the extender: the state carries the allowance; the whole lineage keeps the mean
            _, state2, rec2 = _budget_run(toy, scene, seed + 1, budget, table, frames=6, state=state)
            steps = first + [c.steps for c in rec2.chunks]
            assert state2.allowance.chunks == len(steps) and state2.allowance.steps == sum(steps)
            assert budget - BUDGET_TOLERANCE <= sum(steps) / len(steps) <= budget + BUDGET_TOLERANCE + 1e-9, steps
            # no chunk went past the budget except with what earlier chunks saved; none below min_steps
            saved = 0.0
            for s in steps:
                assert 1 <= s <= math.floor(budget + saved + 1e-9)
                saved += budget - s
            spreads.add(tuple(first))
            assert rec2.allowance == state2.allowance.to_dict()
    if budget < 4.0:
        assert len(spreads) > 1, "the confidence never changed where the steps went"


def test_budget_with_the_heuristic_and_without_a_table(toy):
    scene = W.Scene("square", "red", "drifting right", "black")
    for table in (table_from_metadata(toy["meta"], META_HEURISTIC), None):
        _, _, rec = _budget_run(toy, scene, 3, 3.0, table, confidence=CONFIDENCE_HEURISTIC)
        steps = [c.steps for c in rec.chunks]
        assert sum(steps) / len(steps) <= 3.0 + 1e-9 and min(steps) >= 1
        assert rec.policy["name"] == "budget" and rec.policy["calibrated"] is (table is not None)


def test_budget_refuses_a_mean_outside_the_step_limits():
    with pytest.raises(ValueError, match="min_steps"):
        BudgetPolicy(1.5, min_steps=2)
    with pytest.raises(ValueError, match="max_steps"):
        BudgetPolicy(5.0, max_steps=4)


def test_allowance_spend_is_plain_state():
    a = BudgetAllowance().spend(2.5, 2).spend(2.5, 3)
    assert (a.chunks, a.steps, a.saved, a.mean_steps) == (2, 5, 0.0, 2.5)


def _table(rows):
    rows = [CalibrationRow(t, m, nfe_ratio(m, 4)) for t, m in rows]
    presets, reached = presets_from_rows(rows, 4)
    return CalibrationTable("head", 4, 1, 6, "self_forcing", tuple(rows), presets, reached)


def test_table_reads_and_round_trips():
    t = _table([(0.0, 1.0), (0.4, 1.5), (0.5, 2.5), (0.6, 4.0), (0.8, 6.0)])
    assert t.presets == {"fast": 0.4, "balanced": 0.5, "quality": 0.6}
    assert t.mean_steps_at(0.55) == pytest.approx(3.25)
    assert t.threshold_for_mean_steps(3.25) == pytest.approx(0.55)
    assert t.threshold_for_mean_steps(0.5) == 0.0 and t.threshold_for_mean_steps(9) == 0.8
    back = CalibrationTable.from_json(t.to_json())
    assert back == t
    assert threshold_from_preset("balanced", table=t) == 0.5
    assert threshold_from_preset("balanced") == 0.75  # no table: the uncalibrated number
    assert threshold_from_preset("custom", 0.3, table=t) == 0.3


def test_expected_cost_says_what_it_knows():
    t = _table([(0.0, 1.0), (0.5, 2.5), (1.0, 6.0)])
    e = expected_cost("confidence", "balanced", 0.75, head_table=t)
    assert e["threshold"] == 0.5 and e["mean_steps"] == pytest.approx(2.5) and e["speedup"] == pytest.approx(5 / 3.5)
    assert e["calibrated"] and e["note"] == ""
    e = expected_cost("confidence", "balanced", 0.75, head_table=None)
    assert e["threshold"] == 0.75 and e["mean_steps"] is None and "no calibration table" in e["note"]
    e = expected_cost("budget", "balanced", 0.75, mean_steps=2.5, head_table=None)
    assert e["nfe_ratio"] == pytest.approx(0.7) and e["source"] == "head"
    e = expected_cost("heuristic", "fast", 0.5, heuristic_table=t, has_head=False)
    assert e["source"] == "heuristic" and e["threshold"] == t.presets["fast"]


def test_a_malformed_table_is_one_clear_error():
    with pytest.raises(ValueError, match="dsa.calibration.*recalibrate"):
        table_from_metadata({META_HEAD: "{not json"})


def test_calibration_writes_a_table_and_keeps_the_tensors(toy, tmp_path):
    """The command's pieces on a small rollout set: a table whose presets bracket their costs, written into a copy
    of the model file with every tensor unchanged."""
    path = tmp_path / "toy.safetensors"
    sd = load_file(str(MODEL_FILE))
    save_file(sd, str(path), metadata=toy["meta"])
    rs = toy_rollouts(2, [1, 2], scene_seed=5)
    table = calibrate(
        toy["cw"], rs, toy["ladder"], CONFIDENCE_HEAD, toy["head"], grid=(0.0, 0.5, 1.0), max_bisections=3, log=None
    )
    assert [r.threshold for r in table.rows][:1] == [0.0] and len(table.rows) > 3  # bisected between the grid
    write_metadata(path, {META_HEAD: table.to_json()})
    again = load_file(str(path))
    assert all(torch.equal(again[k], sd[k]) and again[k].dtype == sd[k].dtype for k in sd)
    assert load_head(path).calibration == table


def test_the_evaluation_runs_the_budget_as_the_sampler_does(toy):
    """evaluate_budget.BatchedBudget (many videos at once, one allowance each) takes the steps sample_video takes."""
    from dsa_core.toy.evaluate import batched_sample
    from dsa_core.toy.evaluate_budget import BatchedBudget

    cw, table = toy["cw"], toy["head"].calibration
    scenes = [W.Scene("square", "red", "drifting right", "black"), W.Scene("disc", "cyan", "drifting up", "grey")]
    pairs = [(0, 5), (1, 6), (0, 7)]
    text = cw.encode_text(torch.stack([W.prompt_embedding(scenes[p]) for p, _ in pairs]))
    policy = BatchedBudget(BudgetPolicy(2.5, 1, 6, table=table), toy["ladder"])
    _, steps, _, _, _ = batched_sample(cw, text, [s for _, s in pairs], policy, toy["ladder"], head=toy["head"])
    for i, (p, seed) in enumerate(pairs):
        _, _, rec = _budget_run(toy, scenes[p], seed, 2.5, table)
        assert steps[i] == [c.steps for c in rec.chunks]
