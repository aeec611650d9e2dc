"""The perfect-model bound guards the toy world: with the world's exact denoiser in the product's sampler
and the posterior's top weight as the confidence, DSA's allocation must show (the issue's bounds). If one
of these fails after a change to the world, change the world back, not the bound."""

import pytest
import torch

from dsa_core.ar_sampler import sample_video
from dsa_core.policies import ConfidencePolicy
from dsa_core.schedules import extended_ladder, self_forcing_ladder
from dsa_core.toy import perfect_model as P
from dsa_core.toy import world as W
from dsa_core.toy.evaluate import eval_scenes, split_pairs
from dsa_core.toy.exact_denoiser import ExactWorldModel, PosteriorTopWeight

LADDER = extended_ladder(self_forcing_ladder(), 6)


def test_replayed_trajectories_equal_the_product_sampler_running_the_policy():
    """One 6-step trajectory per chunk, replayed under a policy, is what sample_video gives with that policy."""
    scenes = [W.Scene("disc", "cyan", "drifting up", "grey"), W.Scene("square", "red", "drifting left", "black")]
    pm = P.PerfectModelRuns(scenes, LADDER)
    for p, scene in enumerate(scenes):
        for seed in (3, 17):
            model = ExactWorldModel(scene)
            lat, _, rec = sample_video(
                model,
                model.encode_text(batch=1),
                num_frames=W.NUM_FRAMES,
                latent_h=W.LATENT_H,
                latent_w=W.LATENT_W,
                chunk_frames=W.CHUNK_FRAMES,
                ladder=LADDER,
                policy=ConfidencePolicy(0.9, max_steps=6),
                seed=seed,
                head=PosteriorTopWeight(),
            )
            replay = pm.run(p, seed, P.confidence_stop(0.9))
            assert [c.steps for c in rec.chunks] == replay.steps
            scores = W.SceneFitter().chunk_scores(scene, lat[0])
            assert [c.valid for c in scores] == replay.valid
            assert [c.context for c in scores] == replay.kinds


def test_exact_model_confidence_is_one_on_continuations_after_one_step():
    scene = W.Scene("square", "white", "drifting right", "black")
    pm = P.PerfectModelRuns([scene], LADDER)
    t = pm.trajectory(0, 5, 1, W.State(8, 4, W.COLOUR_NAMES.index("white")))
    assert t.kind == "continuation" and t.conf[0] == pytest.approx(1.0) and t.outcomes[0].valid
    t = pm.trajectory(0, 5, 1, W.State(20, 4, W.COLOUR_NAMES.index("white")))
    assert t.kind == "event" and t.conf[0] == pytest.approx(1 / 30) and not t.outcomes[0].valid
    assert t.outcomes[-1].valid and t.outcomes[-1].destination >= 0


def test_perfect_model_bound_holds_on_the_evaluation_pairs():
    """The evaluation's own prompts and seeds (10 x 16, held-out half of 80 videos): the bounds of the world."""
    torch.set_num_threads(1)
    scenes = eval_scenes(2)
    halves = split_pairs(len(scenes), list(range(1000, 1016)))
    s = P.evaluate(scenes, halves, LADDER, log=lambda m: None)["summary"]
    assert s["nfe_ratio"] <= 0.62
    assert min(v[0] for v in s["random_control_margin_by_threshold"].values()) >= 0.15
    assert s["event_minus_continuation_steps"] >= 2.0
    assert s["beats_position_schedule"] and s["position_schedule"]["margin"][0] >= 0.05
    assert s["beats_motion_schedule"] and s["motion_schedule"]["margin"][0] >= 0.05
    # equal NFE: the schedules were chosen among those no dearer (on the selection half) than the run
    assert max(s["position_schedule"]["nfe_per_chunk"][0], s["motion_schedule"]["nfe_per_chunk"][0]) <= (
        s["nfe_per_chunk"][0] + 0.1
    )
    assert s["beats_heuristic"]
    assert s["heuristic_nfe_ratio"] is None or s["heuristic_nfe_ratio"] > s["nfe_ratio"]
