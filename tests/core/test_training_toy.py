"""The toy world, its codec and metric, and the committed toy model + prompts."""

import numpy as np
import pytest
import torch

from dsa_core.toy import DEFAULT_PROMPT, demo_assets, write_gif
from dsa_core.toy import world as W

pytestmark = pytest.mark.usefixtures("one_thread")


def test_codec_roundtrip_and_decode_shape():
    g = torch.Generator().manual_seed(0)
    lat, ctx, scenes = W.make_batch(3, g)
    assert lat.shape == (3, 16, W.NUM_FRAMES, W.LATENT_H, W.LATENT_W) and ctx.shape == (3, 8, 4096)
    rgb = W.latent_to_rgb_small(lat)
    torch.testing.assert_close(W.encode_rgb(rgb.numpy()), lat, rtol=1e-4, atol=1e-4)
    big = W.decode_to_rgb(lat)
    assert big.shape == (3, W.NUM_FRAMES, W.LATENT_H * W.PIXEL_SCALE, W.LATENT_W * W.PIXEL_SCALE, 3)
    assert float(big.min()) >= 0 and float(big.max()) <= 1


def test_real_videos_fit_exactly_and_noise_does_not():
    g = torch.Generator().manual_seed(1)
    fitter = W.SceneFitter()
    for motion in ("still", "drifting left", "drifting up"):
        scene = W.Scene("disc", "red", motion, "grey")
        lat, _, _ = W.make_batch(1, g, scenes=[scene])
        assert fitter.fit_error(scene, lat[0]) < 1e-10
        assert fitter.fit_error(scene, lat[0] + 0.5 * torch.randn_like(lat[0])) > 1e-3
        wrong = W.Scene("disc", "blue", motion, "grey")  # the first chunk has the wrong colour
        assert fitter.fit_error(wrong, lat[0]) > 1e-3


def test_prompts_are_deterministic_and_distinct():
    a, b = W.Scene("square", "red", "still", "black"), W.Scene("disc", "red", "still", "black")
    assert torch.equal(W.prompt_embedding(a), W.prompt_embedding(a))
    assert not torch.equal(W.prompt_embedding(a), W.prompt_embedding(b))
    assert W.scene_from_prompt(a.prompt) == a


def test_committed_toy_model_loads_and_generates(tmp_path):
    from dsa_core.ar_sampler import sample_video
    from dsa_core.causal_wan import CausalWan
    from dsa_core.checkpoint import load_generator
    from dsa_core.confidence_head import load_head
    from dsa_core.policies import ConfidencePolicy
    from dsa_core.prompt_files import load_prompt_embedding
    from dsa_core.schedules import extended_ladder, self_forcing_ladder

    assets = demo_assets()
    assert assets.model.is_file(), "models/toy/dsa_toy_wan.safetensors is missing (python -m dsa_core.toy.reproduce)"
    total = assets.model.stat().st_size + sum(p.stat().st_size for p in assets.prompts)
    assert total < 12 * 2**20
    assert (assets.default_prompt.name == DEFAULT_PROMPT) and assets.default_prompt in assets.prompts
    dit = load_generator(assets.model, dtype="fp32")
    head = load_head(assets.model, expected_dim=dit.config.dim)
    assert dit.config.head_dim == 128 and dit.config.text_dim == 4096
    emb = load_prompt_embedding(assets.default_prompt)
    assert emb.prompt and emb.context.shape == (1, W.PROMPT_TOKENS, 4096)
    cw = CausalWan(dit, dit.config)
    lat, _, rec = sample_video(
        cw,
        cw.encode_text(emb.context.float()),
        num_frames=assets.num_frames,
        latent_h=assets.latent_h,
        latent_w=assets.latent_w,
        chunk_frames=assets.chunk_frames,
        ladder=extended_ladder(self_forcing_ladder(), assets.max_steps),
        policy=ConfidencePolicy(0.5, 1, assets.max_steps),
        seed=0,
        head=head,
    )
    assert torch.isfinite(lat).all() and len(rec.chunks) == assets.num_frames // assets.chunk_frames
    video = W.decode_to_rgb(lat)[0]
    gif = write_gif(video, tmp_path / "v.gif")
    from PIL import Image

    with Image.open(gif) as im:
        assert im.n_frames == assets.num_frames
    # the video is not blank: the shape's colour differs from the background somewhere
    assert float(video.std()) > 0.02


def test_trivial_baselines_and_energy_distance():
    from dsa_core.toy.evaluate import trivial_baselines

    scenes = [W.Scene("square", "red", "drifting left", "black"), W.Scene("disc", "yellow", "drifting up", "grey")]
    b = trivial_baselines(scenes, n_per_prompt=32, fitter=W.SceneFitter(real_videos=128))
    assert set(b) == {"real videos", "frozen first frame"}
    assert b["real videos"]["cond"] < 1e-10 and b["frozen first frame"]["event_rate"] == 0.0
    # a frozen frame ignores motion (cond > 0 for the drifting prompt) and never makes events: the energy
    # distance puts it far above the real videos' sampling noise
    assert b["frozen first frame"]["cond"] > 1e-4
    # world v3 videos vary less (36 starts), so the real videos' sampling noise needs 32 per prompt to sit far below
    assert abs(b["real videos"]["energy"]) < 0.5 * b["frozen first frame"]["energy"], b
    assert b["real videos"]["event_rate"] > 0.1  # real videos make the teleports that are due


def test_energy_distance_ranks_collapse_below_real_samples():
    """A generator that always paints the same (valid) video is a mode collapse: MSE 0, energy far from 0."""
    g = torch.Generator().manual_seed(4)
    scene = W.Scene("disc", "cyan", "drifting left", "grey")
    fitter = W.SceneFitter(real_videos=64)
    one = W.encode_rgb(W.sample_video(scene, g))
    collapsed = one.expand(8, -1, -1, -1, -1)
    real = W.encode_rgb(np.stack([W.sample_video(scene, g) for _ in range(8)]))
    assert fitter.fit_error(scene, collapsed[0]) < 1e-9
    assert fitter.energy_distance(scene, collapsed) > 5 * abs(fitter.energy_distance(scene, real))
    with pytest.raises(ValueError, match="at least 2"):
        fitter.energy_distance(scene, one)


def test_committed_toy_model_follows_its_prompts():
    """The bundled model learned the world's look: over the six demo prompts x 3 seeds (threshold 0.5) its
    frames are far closer to frames the prompt's scene can show (realism) than to the frames of the same
    scene on the other background, and its chunks are far closer to the world's allowed continuations than
    a video of pure noise."""
    from dsa_core.ar_sampler import sample_video
    from dsa_core.causal_wan import CausalWan
    from dsa_core.checkpoint import load_generator
    from dsa_core.confidence_head import load_head
    from dsa_core.policies import ConfidencePolicy
    from dsa_core.schedules import extended_ladder, self_forcing_ladder
    from dsa_core.toy.prompts import DEMO_SCENES

    assets = demo_assets()
    dit = load_generator(assets.model, dtype="fp32")
    head = load_head(assets.model, expected_dim=dit.config.dim)
    cw = CausalWan(dit, dit.config)
    fitter = W.SceneFitter()
    own, other_bg, cond, noise = [], [], [], []
    g = torch.Generator().manual_seed(0)
    for scene in DEMO_SCENES:
        text = cw.encode_text(W.prompt_embedding(scene)[None])
        flip = W.Scene(scene.shape, scene.colour, scene.motion, "grey" if scene.background == "black" else "black")
        for seed in (0, 1, 2):
            lat, _, _ = sample_video(
                cw,
                text,
                num_frames=W.NUM_FRAMES,
                latent_h=W.LATENT_H,
                latent_w=W.LATENT_W,
                chunk_frames=W.CHUNK_FRAMES,
                ladder=extended_ladder(self_forcing_ladder(), 6),
                policy=ConfidencePolicy(0.5, 1, 6),
                seed=seed,
                head=head,
            )
            sc = fitter.chunk_scores(scene, lat[0])
            own.append(sum(c.realism for c in sc) / len(sc))
            cond.append(sum(c.conditional for c in sc) / len(sc))
            other_bg.append(sum(c.realism for c in fitter.chunk_scores(flip, lat[0])) / len(sc))
            noise.append(fitter.fit_error(scene, torch.randn(lat[0].shape, generator=g)))
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    # committed model (a weak, briefly trained student, see results/toy_repro): own 0.034, other background
    # 0.139, cond 0.037, pure noise 0.132
    assert mean(own) < 0.06, own
    assert mean(own) < 0.4 * mean(other_bg), (mean(own), mean(other_bg))
    assert mean(cond) < 0.5 * mean(noise), (mean(cond), mean(noise))


def test_reproduction_runs_end_to_end_and_resumes(tmp_path):
    """The whole reproduction at tiny size: every stage, the report's keys, the README's sections; a rerun
    with --reuse takes the stages from --work and keeps the README's hand-written part."""
    import json

    from dsa_core.toy import reproduce

    out, work = tmp_path / "out", tmp_path / "work"
    args = ["--out", str(out), "--work", str(work), "--save-model", str(tmp_path / "model"), "--no-progress"]
    args += ["--teacher-steps", "2", "--dmd-steps", "1", "--calib-rollouts", "1", "--calib-epochs", "1"]
    args += ["--eval-per-motion", "1", "--eval-seeds", "2", "--thresholds", "0.5", "--heuristic-thresholds", "0.9"]
    args += ["--index-schedules", "2-1", "--motion-schedules", "2-4-1", "--perfect-seeds", "2"]
    args += ["--calibrate-prompts", "1", "--calibrate-seeds", "1"]
    assert reproduce.main(args) == 0
    rep = json.loads((out / "results.json").read_text())
    assert set(rep["summary"]) == {"perfect_model", "learned", "cond_secondary"}
    tr = rep["teacher_renders"]  # the teacher's own 50-step samples: can it render at all?
    assert tr["steps"] == 50 and tr["videos"] == len(rep["eval"]["prompts"]) * 2 and len(tr["frame_mse_quartiles"]) == 3
    assert 0.0 <= tr["sharp_frames"] <= 1.0 and tr["frame_mse_quartiles"][0] <= tr["frame_mse_quartiles"][2]
    assert {
        "nfe_ratio",
        "random_control_margin",
        "event_minus_continuation_steps",
        "beats_position_schedule",
        "beats_motion_schedule",
        "beats_heuristic",
    } <= set(rep["summary"]["perfect_model"])
    learned = rep["summary"]["learned"]
    assert {
        "fixed4_valid",
        "precondition_met",
        "nfe_ratio",
        "random_control_wins",
        "random_control_losses",
        "event_minus_continuation_steps",
        "spearman_conf_vs_gain",
        "beats_position_schedule",
        "beats_motion_schedule",
        "beats_heuristic",
    } <= set(learned)
    assert learned["precondition_met"] is False  # two teacher steps render nothing valid
    assert {"nfe_ratio_at_fixed4_quality", "beats_index_schedule"} <= set(rep["summary"]["cond_secondary"])
    assert any(r["kind"] == "motion" for r in rep["rows"]) and any(r["kind"] == "index" for r in rep["rows"])
    assert set(rep["target_ceiling"]) == {"x0_agreement", "teacher_gain", "current_error"}
    assert set(rep["step_cond_by_kind"]) >= {"first"} and len(rep["perfect_model"]["rows"]) == 6
    fixed1 = next(r for r in rep["rows"] if r["name"] == "fixed 1")["heldout"]
    assert len(fixed1["cond_by_chunk"]) == 4 and len(fixed1["realism_by_chunk"]) == 4
    text = (out / "README.md").read_text()
    for section in (
        "## What this shows, and what it does not",
        "Precondition not met",
        "## Perfect-model bound",
        "## Learned student + joint head: summary",
        "## Where more steps help",
    ):
        assert section in text
    assert (tmp_path / "model" / "dsa_toy_wan.safetensors").is_file()
    # the saved head carries its calibration table (presets by cost); the rows hold the budget runs and controls
    from dsa_core.confidence_head import load_head

    assert load_head(tmp_path / "model" / "dsa_toy_wan.safetensors").calibration is not None
    assert {"budget", "budget_random", "budget_schedule"} <= {r["kind"] for r in rep["rows"]}
    (out / "README.md").write_text(
        text + "\n<!-- hand-written below: kept when the script rewrites this file -->\nmy notes\n"
    )
    assert reproduce.main(args + ["--reuse", "--precondition-only"]) == 0  # the short evaluation path
    rep2 = json.loads((out / "results.json").read_text())
    assert rep2["summary"]["learned"]["precondition_met"] is False and rep2["summary"]["learned"]["nfe_ratio"] is None
    assert [r["name"] for r in rep2["rows"]] == [f"fixed {k}" for k in range(1, 7)]
    assert set(rep2["timings"]["reused_from_work"]) == {"teacher_s", "dmd_s", "calibration_s"}
    assert (out / "README.md").read_text().endswith("my notes\n")
