"""The toy world's (v3) exact continuations, its validity and per-chunk metrics, the evaluation statistics, the batched
evaluation sampler and the step-rank head label that cannot collapse to the step index."""

from collections import Counter

import numpy as np
import pytest
import torch

from dsa_core.ar_sampler import sample_video
from dsa_core.confidence_head import ConfidenceHead, HeadConfig
from dsa_core.policies import ConfidencePolicy, FixedSteps, HeuristicPolicy
from dsa_core.toy import world as W
from dsa_core.toy.evaluate import (
    Evaluator,
    IndexSchedule,
    MatchedRandomSteps,
    VideoResult,
    batched_sample,
    conf_gain_spearman,
    oracle_rows,
    split_pairs,
    step_cond_by_kind,
    target_ceiling,
)
from dsa_core.toy.stats import bootstrap_ci, paired_diff_ci, spearman, verdict
from dsa_core.training.targets import HeadTarget, rank_within_step

pytestmark = pytest.mark.usefixtures("one_thread")


# ---- world ------------------------------------------------------------------------------------------
def test_continuations_are_an_exact_distribution():
    scene = W.Scene("square", "red", "drifting right", "black")
    first = W.continuations(scene, None)
    assert len(first) == 36 and first.probs.sum() == pytest.approx(1.0)  # the 36 whole-pixel positions
    assert set(first.kinds) == {"start"} and all(int(p) % W.NPOS % 4 == 0 for p in first.positions[:, 0])
    red = W.COLOUR_NAMES.index("red")
    # away from the wall: exactly one allowed chunk, one grid step (0.25 px) per frame to the right
    c = W.continuations(scene, W.State(5, 8, red))
    assert len(c) == 1 and c.kinds == ["none"] and c.probs[0] == 1.0
    assert [int(v) % W.NPOS for v in c.positions[0]] == [6, 7, 8] and all(int(v) // W.NPOS == 8 for v in c.positions[0])
    assert W.context_kind(scene, W.State(5, 8, red)) == "continuation" and W.context_kind(scene, None) == "first"
    # at the wall it drifts towards: a teleport to a whole-pixel position >= TELEPORT_MIN px away, motion kept
    wall = W.State(W.NPOS - 1, 8, red)
    assert W.context_kind(scene, wall) == "event"
    t = W.continuations(scene, wall)
    assert len(t) == 30 and set(t.kinds) == {"teleport"} and t.probs.sum() == pytest.approx(1.0)
    for row in t.positions:
        x, y = int(row[0]) % W.NPOS, int(row[0]) // W.NPOS
        assert x % 4 == 0 and y % 4 == 0 and max(abs(x - (W.NPOS - 1)), abs(y - 8)) * W.GRID >= W.TELEPORT_MIN
        assert [int(v) % W.NPOS for v in row] == [min(x + i, W.NPOS - 1) for i in range(3)]
    assert (t.colours == red).all()  # colours never change
    # the other walls are no event for a shape drifting right, and still shapes never teleport
    assert W.context_kind(scene, W.State(0, 8, red)) == "continuation"
    still = W.Scene("square", "red", "still", "black")
    assert W.context_kind(still, W.State(W.NPOS - 1, 8, red)) == "continuation"
    assert len(W.continuations(still, W.State(W.NPOS - 1, 8, red))) == 1


def test_event_due_share_is_flat_over_chunk_positions():
    """A per-position schedule cannot exploit the events' timing: the share of chunks with an event due is
    0 / 0.133 / 0.148 / 0.164 (exact), and sampled videos agree."""
    share = W.event_due_share()
    assert share[0] == 0.0 and share[1:] == pytest.approx((0.1333, 0.1478, 0.1638), abs=1e-3)
    assert max(share[1:]) - min(share[1:]) < 0.04
    g = torch.Generator().manual_seed(0)
    due = Counter()
    for _ in range(1500):
        _, _, kinds = W.sample_states(W.random_scene(g), g)
        due.update(i for i, k in enumerate(kinds) if k == "teleport")
    for i in (1, 2, 3):
        assert abs(due[i] / 1500 - share[i]) < 0.03  # 1500 videos: sd ~0.009


def test_sampled_videos_follow_the_enumeration_and_are_valid():
    scene = W.Scene("disc", "cyan", "drifting up", "grey")
    g = torch.Generator().manual_seed(0)
    fitter = W.SceneFitter()
    kinds = Counter()
    for _ in range(60):
        video, ks = W.sample_video(scene, g, with_events=True)
        kinds.update(ks[1:])
        assert ks[0] == "start" and video.shape == (W.NUM_FRAMES, W.LATENT_H, W.LATENT_W, 3)
        sc = fitter.chunk_scores(scene, W.encode_rgb(video)[0])
        assert all(s.conditional < 1e-10 and s.realism < 1e-6 and s.valid for s in sc)
        assert [s.kind for s in sc] == ks
        assert [s.context for s in sc] == ["first"] + ["event" if k == "teleport" else "continuation" for k in ks[1:]]
        assert all((s.destination >= 0) == (s.context == "event") for s in sc)
    assert kinds["teleport"] > 5 and kinds["none"] > 100


def test_validity_rejects_blur_and_wrong_stories_that_cond_tolerates():
    """cond is blur-tolerant (the conditional mean of the first chunk scores well while rendering nothing);
    validity is not: every frame must be a clean render and the states an allowed continuation."""
    g = torch.Generator().manual_seed(2)
    scene = W.Scene("square", "yellow", "drifting down", "black")
    fitter = W.SceneFitter()
    video = W.sample_video(scene, g)
    lat = W.encode_rgb(video)[0]
    # the blur of all 36 starts (the exact model's step-1 output for the first chunk)
    blur = lat.clone()
    blur[:, :3] = W.encode_rgb(W.continuations(scene, None).frames(scene)).mean(0)
    sb = fitter.chunk_scores(scene, blur)[0]
    assert not sb.sharp and not sb.valid
    # a sharp square one pixel off in the first chunk: sharp, consistent as a start (any whole-pixel start)...
    frozen = W.encode_rgb(np.repeat(video[:1], W.NUM_FRAMES, 0))[0]  # a clean frame that stops moving
    s = fitter.chunk_scores(scene, frozen)
    assert all(c.sharp for c in s) and not all(c.valid for c in s)  # realistic frames, wrong story
    assert not fitter.valid_video(scene, frozen) and fitter.valid_video(scene, lat)
    noisy = fitter.chunk_scores(scene, lat + 0.3 * torch.randn(lat.shape, generator=g))
    assert not any(c.valid for c in noisy)


def test_energy_distance_catches_a_generator_that_never_makes_events():
    g = torch.Generator().manual_seed(4)
    scene = W.Scene("disc", "green", "drifting left", "grey")
    fitter = W.SceneFitter(real_videos=64)
    real, calm = [], []
    while len(calm) < 12:
        v, ks = W.sample_video(scene, g, with_events=True)
        if len(real) < 12:
            real.append(v)
        if all(k in ("start", "none") for k in ks):
            calm.append(v)
    e_real = fitter.energy_distance(scene, W.encode_rgb(np.stack(real)))
    e_calm = fitter.energy_distance(scene, W.encode_rgb(np.stack(calm)))
    assert e_calm > 2 * abs(e_real)
    with pytest.raises(ValueError, match="at least 2"):
        fitter.energy_distance(scene, W.encode_rgb(np.stack(real[:1])))


def test_teleport_coverage_scores_one_spot_and_no_teleport_badly():
    from dsa_core.toy.evaluate import teleport_coverage

    def res(p, dests, valid=True):
        n = len(dests)
        return VideoResult(p, 0, [1] * n, [2] * n, [0.0] * n, [0.0] * n, [False] * n, ["none"] * n,
                           valid=[valid] * n, context=["event"] * n, destinations=dests)  # fmt: skip

    spread = [res(p, [(7 * i + p) % 36 for i in range(4)]) for p in range(6)]
    one_spot = [res(p, [3, 3, 3, 3]) for p in range(6)]
    never = [res(p, [-1] * 4, valid=False) for p in range(6)]
    scenes = [W.Scene("square", "red", "drifting right", "black")] * 6
    c_spread, c_one, c_never = (teleport_coverage(scenes, r)["coverage"] for r in (spread, one_spot, never))
    assert c_spread > 0.8 and c_one < 0.4 and c_never == 0.0


# ---- statistics -------------------------------------------------------------------------------------
def test_bootstrap_intervals_and_paired_verdicts():
    g = torch.Generator().manual_seed(0)
    x = 1.0 + torch.randn(400, generator=g)
    m, lo, hi = bootstrap_ci(x)
    assert lo < m < hi and lo < 1.0 < hi and 0.1 < hi - lo < 0.3  # ~ 2 * 1.96 / sqrt(400) = 0.196
    m2, lo2, hi2 = bootstrap_ci(x[:40])
    assert hi2 - lo2 > 2 * (hi - lo)
    a = torch.randn(100, generator=g)
    assert verdict(paired_diff_ci(a - 0.5, a + 0.01 * torch.randn(100, generator=g))) == "better"
    assert verdict(paired_diff_ci(a + 0.5, a)) == "worse"
    assert verdict(paired_diff_ci(a + 0.01 * torch.randn(100, generator=g), a)) == "tie"
    with pytest.raises(ValueError):
        paired_diff_ci([1.0, 2.0], [1.0])


def test_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert spearman([1, 1, 1], [1, 2, 3]) != spearman([1, 1, 1], [1, 2, 3])  # no spread: nan


# ---- evaluation pieces ------------------------------------------------------------------------------
def test_split_pairs_halves_every_prompt():
    h = split_pairs(3, list(range(10)))
    assert not set(h["selection"]) & set(h["heldout"])
    for half in h.values():
        assert Counter(p for p, _ in half) == {0: 5, 1: 5, 2: 5}


def test_matched_random_control_keeps_each_half_histogram():
    pol = MatchedRandomSteps(groups=[{1: 3, 4: 1}, {2: 2}], seed=0)
    got = []
    for _ in range(6):
        k = 1
        while pol.decide(k, None) is None:
            k += 1
        got.append(k)
    assert sorted(got[:4]) == [1, 1, 1, 4] and got[4:] == [2, 2]


def test_batched_evaluation_sampler_matches_the_sampler(tiny_cw):
    """Each video in the batch is what sample_video makes for its seed alone, with its own stop decisions."""
    from dsa_core.schedules import extended_ladder, self_forcing_ladder

    torch.manual_seed(0)
    head = ConfidenceHead(HeadConfig(dim=tiny_cw.config.dim, hidden_dim=16))
    ladder = extended_ladder(self_forcing_ladder(), 6)
    scenes = [W.Scene("square", "red", "still", "black"), W.Scene("disc", "blue", "drifting up", "grey")]
    ctx = torch.stack([W.prompt_embedding(s) for s in scenes])
    seeds = [3, 9]
    for pol in (FixedSteps(2), IndexSchedule([3, 1]), ConfidencePolicy(0.5, 1, 6), HeuristicPolicy(0.9, 1, 6)):
        lat, steps, nfe, _, _ = batched_sample(tiny_cw, tiny_cw.encode_text(ctx), seeds, pol, ladder, head=head)
        for i, sd in enumerate(seeds):
            one, _, rec = sample_video(
                tiny_cw,
                tiny_cw.encode_text(ctx[i : i + 1]),
                num_frames=W.NUM_FRAMES,
                latent_h=W.LATENT_H,
                latent_w=W.LATENT_W,
                chunk_frames=W.CHUNK_FRAMES,
                ladder=ladder,
                policy=pol if not isinstance(pol, IndexSchedule) else IndexSchedule([3, 1]),
                seed=sd,
                head=head,
            )
            assert steps[i] == [c.steps for c in rec.chunks] and nfe[i] == [c.nfe for c in rec.chunks], pol
            torch.testing.assert_close(lat[i], one[0], atol=1e-4, rtol=1e-4)


def test_evaluator_rows_spearman_and_oracle(tiny_dit):
    ev = Evaluator(tiny_dit, [W.Scene("square", "red", "still", "black")], real_videos=16)
    head = ConfidenceHead(HeadConfig(dim=tiny_dit.config.dim, hidden_dim=16))
    res = ev.run("fixed 3", FixedSteps(3), [(0, 1), (0, 2), (0, 3)], head=head, per_step=True)
    r = res[0]
    assert len(r.steps) == W.NUM_CHUNKS and r.steps == [3] * W.NUM_CHUNKS and r.nfe == [4] * W.NUM_CHUNKS
    assert len(r.step_cond) == W.NUM_CHUNKS and all(len(e) == 3 for e in r.step_cond)
    assert r.step_cond[0][-1] == pytest.approx(r.cond[0], rel=1e-5)  # the last step's x0 is the output
    assert all(len(c) == 3 and all(0 <= v <= 1 for v in c) for c in r.confidence)
    sp = conf_gain_spearman(res)
    assert set(sp["per_step"]) == {1, 2}
    # every head target's true distance per chunk and step: x0_agreement is 0 at the last step
    assert set(r.step_target) == {"x0_agreement"}  # teacher_gain needs a teacher
    assert all(len(c) == 3 and c[-1] == 0.0 and c[0] > 0 for c in r.step_target["x0_agreement"])


def test_target_ceiling_reads_each_targets_true_distance(tiny_dit):
    """With a teacher, teacher_gain is recorded too (0 at the last step); the ceiling of a target that is
    the gain itself is a perfect -1, of a target unrelated to it near 0."""
    ev = Evaluator(tiny_dit, [W.Scene("square", "red", "still", "black")], real_videos=16, teacher=tiny_dit)
    res = ev.run("fixed 3", FixedSteps(3), [(0, s) for s in range(1, 7)], per_step=True)
    assert set(res[0].step_target) == {"x0_agreement", "teacher_gain"}
    assert all(c[-1] == 0.0 for r in res for c in r.step_target["teacher_gain"])
    ceil = target_ceiling(res)
    assert set(ceil) == {"x0_agreement", "teacher_gain", "current_error"}
    assert set(ceil["x0_agreement"]["per_step"]) == {1, 2}
    g = torch.Generator().manual_seed(0)
    for r in res:  # a target equal to the measured gain: confident = nothing to gain, perfectly
        r.step_target["exact"] = [[e - es[-1] for e in es] for es in r.step_cond]
        r.step_target["noise"] = [[float(torch.rand((), generator=g)) for _ in es] for es in r.step_cond]
    ceil = target_ceiling(res)
    assert ceil["exact"]["mean"] == pytest.approx(-1.0)
    assert abs(ceil["noise"]["mean"]) < 0.6


def _fixed_run(step_cond, events=None, confidence=None, seed=0):
    """A fixed-steps VideoResult from per-chunk, per-step cond errors (the output = the last step's)."""
    n, k = len(step_cond), len(step_cond[0])
    events = events if events is not None else [False] * n
    return VideoResult(
        0,
        seed,
        [k] * n,
        [k + 1] * n,
        [e[-1] for e in step_cond],
        [0.0] * n,
        events,
        ["none"] * n,
        confidence=confidence if confidence is not None else [],
        step_cond=step_cond,
    )


def test_conf_gain_spearman_is_zero_for_a_step_counter_and_negative_for_a_good_head():
    g = torch.Generator().manual_seed(0)
    counter, good = [], []
    for v in range(40):
        gains = torch.rand(4, generator=g).tolist()  # per chunk: how much is left after step 1
        errs = [[0.01 + gn / k for k in (1, 2, 3)] for gn in gains]
        for c in errs:
            c[-1] = 0.01
        counter.append(_fixed_run(errs, confidence=[[0.2, 0.6, 0.9]] * 4, seed=v))
        good.append(_fixed_run(errs, confidence=[[1 - gn, 1 - gn / 2, 1.0] for gn in gains], seed=v))
    assert conf_gain_spearman(counter)["per_step"][1] != conf_gain_spearman(counter)["per_step"][1]  # nan
    assert conf_gain_spearman(good)["mean"] < -0.9
    orc = oracle_rows(good, [2.5, 4.0])
    assert orc[0]["nfe_per_chunk"][0] == pytest.approx(2.5, abs=0.1)
    assert orc[1]["cond"][0] < orc[0]["cond"][0]


# ---- the head label that cannot collapse to the step index ------------------------------------------
def _synthetic_features(n, g, dim=32):
    """Frames at exit steps 0..3; half are 'event' frames whose remaining change is 4x larger. Every
    frame's remaining change shrinks with the step (as the real x0_agreement does), so a pooled rank
    mostly encodes the step. The hidden state carries the event flag, the time embedding the step."""
    step = torch.randint(4, (n,), generator=g)
    event = torch.rand(n, generator=g) < 0.5
    d = (0.4 / (1 + step.float())) * torch.where(event, 4.0, 1.0) * (1 + 0.1 * torch.rand(n, generator=g))
    hidden = torch.randn(n, dim, generator=g) * 0.1
    hidden[:, 0] += event.float() * 2 - 1
    temb = torch.zeros(n, dim)
    temb[torch.arange(n), 1 + step] = 3.0
    return hidden, temb, d, step, event


def _train_head(hidden, temb, labels, g, dim=32, epochs=300):
    torch.manual_seed(0)
    head = ConfidenceHead(HeadConfig(dim=dim, hidden_dim=32))
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(epochs):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            head.logits(hidden[:, None], temb[:, None])[:, 0], labels
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    return head


def test_step_rank_label_has_mean_one_half_at_every_step():
    g = torch.Generator().manual_seed(0)
    _, _, d, step, _ = _synthetic_features(2000, g)
    lab = rank_within_step(d, step)
    for k in range(4):
        assert float(lab[step == k].mean()) == pytest.approx(0.5, abs=0.01)
    t = HeadTarget("x0_agreement", label="step_rank")
    running = t.label(d[None], steps=step[None])
    torch.testing.assert_close(running[0], lab)
    assert float(t.label(torch.zeros(1, 2), steps=torch.ones(1, 2, dtype=torch.long), update=False).min()) == 1.0
    with pytest.raises(ValueError, match="exit step"):
        t.label(d[None])
    with pytest.raises(ValueError, match="no scale"):
        HeadTarget("x0_agreement", tau=0.1, label="step_rank")


def test_head_trained_on_step_rank_is_not_a_step_counter():
    """Pooled rank labels teach a step counter (confidence after step 1 low for every frame, after step 4
    high); step-rank labels teach the head which frames are settled: after step 1 continuation frames are
    confident and event frames are not, and the mean confidence no longer climbs with the step."""
    g = torch.Generator().manual_seed(1)
    hidden, temb, d, step, event = _synthetic_features(3000, g)
    pooled = HeadTarget("x0_agreement", window=10**6, label="rank").label(d)
    ranked = rank_within_step(d, step)
    h_pool = _train_head(hidden, temb, pooled, g)
    h_rank = _train_head(hidden, temb, ranked, g)
    hv, tv, dv, sv, ev = _synthetic_features(2000, torch.Generator().manual_seed(2))
    with torch.no_grad():
        cp = h_pool(hv[:, None], tv[:, None])[:, 0]
        cr = h_rank(hv[:, None], tv[:, None])[:, 0]
    s1 = sv == 0
    gap_rank = float(cr[s1 & ~ev].mean() - cr[s1 & ev].mean())
    assert gap_rank > 0.35  # labels: continuation frames ~0.75, event frames ~0.25 at every step
    climb_pool = float(cp[sv == 3].mean() - cp[sv == 0].mean())
    climb_rank = float(cr[sv == 3].mean() - cr[sv == 0].mean())
    assert climb_pool > 0.4 and abs(climb_rank) < 0.1
    # within one step, confident = little left to change
    assert spearman(cr[s1], dv[s1]) < -0.5


def test_current_error_ceiling_tells_repairable_from_persistent_errors():
    """The exact current error predicts the gain when more steps repair bad chunks (-1) and has the wrong
    sign when bad chunks only get worse: what no quality estimate can overcome."""
    g = torch.Generator().manual_seed(0)
    repaired, persistent = [], []
    for _ in range(30):
        first = (0.01 + torch.rand(4, generator=g) * 0.02).tolist()
        repaired.append(_fixed_run([[e, (e + 0.005) / 2, 0.005] for e in first], [False] * 4))
        persistent.append(_fixed_run([[e, 1.5 * e, 2 * e] for e in first], [False] * 4))
    assert target_ceiling(repaired)["current_error"]["mean"] == pytest.approx(-1.0)
    assert target_ceiling(persistent)["current_error"]["mean"] > 0.9


def test_step_cond_by_kind_splits_first_event_and_continuation_chunks():
    runs = [
        _fixed_run(
            [[0.02, 0.01, 0.005], [0.004, 0.005, 0.006], [0.01, 0.02, 0.03], [0.004, 0.004, 0.004]],
            [False, False, True, False],
        )
        for _ in range(5)
    ]
    k = step_cond_by_kind(runs)
    assert {n: d["chunks"] for n, d in k.items()} == {"first": 5, "event": 5, "continuation": 10}
    assert k["first"]["cond_by_step"][0][0] == pytest.approx(0.02)
    assert k["first"]["last_minus_first"][0] == pytest.approx(-0.015) and k["first"]["share_improved"] == 1.0
    assert k["event"]["last_minus_first"][0] == pytest.approx(0.02) and k["event"]["share_improved"] == 0.0
    assert k["continuation"]["cond_by_step"][2][0] == pytest.approx(0.005)


def test_exact_denoiser_is_the_posterior_mean_of_the_allowed_continuations():
    from dsa_core.toy.exact_denoiser import posterior_mean

    scene = W.Scene("disc", "blue", "drifting left", "grey")
    cont = W.continuations(scene, None)
    renders = W.encode_rgb(cont.frames(scene)).flatten(1)
    log_prior = torch.log(torch.as_tensor(cont.probs, dtype=torch.float32))
    prior_mean = torch.as_tensor(cont.probs, dtype=torch.float32) @ renders
    torch.testing.assert_close(posterior_mean(torch.randn(renders.shape[1]), 1.0, renders, log_prior), prior_mean)
    g = torch.Generator().manual_seed(0)
    i = 5  # one start position: at low noise the posterior picks it out of every allowed chunk
    x_s = 0.9 * renders[i] + 0.1 * torch.randn(renders.shape[1], generator=g)
    torch.testing.assert_close(posterior_mean(x_s, 0.1, renders, log_prior), renders[i], atol=1e-4, rtol=0)


def test_perfect_model_reference_needs_steps_and_then_renders_the_world_exactly(tiny_dit):
    from dsa_core.toy.evaluate import perfect_model_reference

    ev = Evaluator(tiny_dit, [W.Scene("square", "red", "drifting right", "black")], real_videos=16)
    ref = perfect_model_reference(ev, [(0, s) for s in (1, 2, 3)])
    conds = [r["cond"][0] for r in ref["rows"]]
    assert [r["steps"] for r in ref["rows"]] == list(range(1, 7)) and ref["pairs"] == 3
    assert conds[0] > 1e-3 and conds[-1] < 1e-5  # one step gives the blur of every allowed chunk
    first = ref["step_cond_by_kind"]["first"]
    assert first["chunks"] == 3 and first["last_minus_first"][0] < 0 and first["share_improved"] == 1.0
    assert first["share_exact"] == 1.0 and 1 < first["steps_to_exact"] <= 6  # never exact after one step
    assert 0.4 < ref["steps_to_exact_nfe_ratio_vs_fixed4"] <= 7 / 5


def test_teacher_check_scores_the_teachers_own_euler_samples(tiny_dit):
    """The 'can the teacher render?' measurement: validity of its own Euler samples per video and chunk kind (a
    random network renders nothing valid)."""
    from dsa_core.toy.teacher_check import teacher_validity

    res = teacher_validity(tiny_dit, [W.Scene("square", "red", "drifting right", "black")], [0, 1], steps=2)
    assert res["videos"] == 2 and res["steps"] == 2 and res["valid"][0] == 0.0
    assert set(res["valid_by_kind"]) == set(W.CHUNK_KINDS) and res["chunks_by_kind"]["first"] == 2
    assert sum(res["chunks_by_kind"].values()) == 2 * W.NUM_CHUNKS
