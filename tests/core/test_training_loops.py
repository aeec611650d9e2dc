"""Training loops at tiny scale: losses fall, checkpoints round-trip, resume is exact, gradients flow
through the KV-cache rollout, and the CLIs run end to end."""

import copy
import os

import pytest
import torch

from dsa_core.causal_wan import CausalWan
from dsa_core.checkpoint import load_generator, save_generator
from dsa_core.confidence_head import ConfidenceHead, HeadConfig, load_head
from dsa_core.config import TINY
from dsa_core.schedules import self_forcing_ladder
from dsa_core.training import distributed as D
from dsa_core.training.calibrate import CalibConfig, HeadCalibrator
from dsa_core.training.checkpointing import load_training_state, save_training_state
from dsa_core.training.dmd import DMDConfig, DMDTrainer
from dsa_core.training.prompts import RandomPrompts
from dsa_core.training.rollout import randn_fn, rollout
from dsa_core.training.targets import HeadTarget, confidence_label
from dsa_core.wan_model import WanDiT, init_random_weights

SMALL = dict(num_frames=6, chunk_frames=3, latent_h=4, latent_w=4)


pytestmark = pytest.mark.usefixtures("one_thread")


def _first_last(v, k):
    return sum(v[:k]) / k, sum(v[-k:]) / k


@pytest.fixture(scope="module")
def small_teacher():
    """A tiny random teacher (deterministic weights)."""
    torch.manual_seed(0)
    return init_random_weights(WanDiT(TINY), seed=3).eval()


def _dmd_trainer(teacher, seed=0, critic=None, **over):
    kw = dict(batch=2, max_steps=4, gen_every=2, gen_lr=1e-4, critic_lr=3e-4, head_lr=3e-3, seed=seed, **SMALL)
    kw.update(over)
    cfg = DMDConfig(**kw)
    torch.manual_seed(seed)
    head = ConfidenceHead(HeadConfig(dim=TINY.dim, hidden_dim=32))
    return DMDTrainer(
        teacher,
        copy.deepcopy(teacher),
        head,
        cfg,
        RandomPrompts(4),
        critic=critic if critic is not None else copy.deepcopy(teacher),
    )


def test_rollout_gradients_reach_every_generator_parameter(tiny_dit):
    dit = copy.deepcopy(tiny_dit).requires_grad_(True)
    cw = CausalWan(dit, TINY)
    g = torch.Generator().manual_seed(0)
    text = cw.encode_text(torch.randn(2, 4, 4096, generator=g))
    ro = rollout(
        cw, text, batch=2, ladder=self_forcing_ladder(), exit_steps=[2, 0], noise=randn_fn(g, "cpu"), grad=True, **SMALL
    )
    assert ro.video.shape == (2, 16, 6, 4, 4) and ro.video.requires_grad
    assert ro.exit_hidden.shape == (2, 6, TINY.dim) and not ro.exit_hidden.requires_grad
    ro.video.pow(2).mean().backward()  # later chunks' cache writes must not break the saved graph
    missing = [n for n, p in dit.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_rollout_without_grad_matches_sampler_fixed_steps(tiny_cw):
    """The training rollout at a fixed exit equals the inference sampler's fixed schedule (same noise)."""
    from dsa_core.ar_sampler import sample_video

    class Recorder:
        def __init__(self, seed):
            self.g = torch.Generator().manual_seed(seed)

        def sample(self, chunk_key, step_index, shape, device=None, dtype=None):
            return torch.randn(tuple(shape), generator=self.g).to(dtype or torch.float32)

    ctx = torch.randn(1, 4, 4096, generator=torch.Generator().manual_seed(1))
    text = tiny_cw.encode_text(ctx)
    ref, _, _ = sample_video(tiny_cw, text, num_frames=6, latent_h=4, latent_w=4, chunk_frames=3, noise=Recorder(5))
    g = torch.Generator().manual_seed(5)
    ro = rollout(
        tiny_cw, text, batch=1, ladder=self_forcing_ladder(), exit_steps=[3, 3], noise=randn_fn(g, "cpu"), **SMALL
    )
    assert torch.equal(ro.video, ref)  # one step maths (flow_step.py): bit for bit, not merely close


def test_targets_are_switchable_and_bounded():
    d = torch.tensor([[0.0, 1.0, 2.0, 4.0]])
    for name in ("teacher_residual", "dmd_grad", "x0_agreement"):
        t = HeadTarget(name, label="exp2")
        lab = t.label(d)
        assert t.scale.tau == pytest.approx(2.0)  # median of the positive distances
        assert torch.allclose(lab, torch.tensor([[1.0, 2**-0.5, 0.5, 0.25]]))
    with pytest.raises(ValueError, match="unknown head target"):
        HeadTarget("nope")
    with pytest.raises(ValueError, match="unknown head label"):
        HeadTarget("dmd_grad", label="linear")
    with pytest.raises(ValueError, match="exp2"):
        HeadTarget("dmd_grad", tau=1.0, label="rank")
    assert float(confidence_label(torch.tensor(3.0), 3.0)) == pytest.approx(0.5)


def test_rank_label_spreads_over_the_unit_interval():
    """1 - empirical CDF of the window: the smallest distance gets ~1, the largest ~0, whatever the scale
    (a narrow spread of d around its median still gives labels from 0 to 1, unlike 2^(-d/tau))."""
    t = HeadTarget("teacher_residual", label="rank")
    d = 0.05 + 0.001 * torch.arange(10.0)[None]  # narrow spread
    lab = t.label(d)
    assert lab.shape == d.shape
    assert float(lab.max()) == pytest.approx(0.95) and float(lab.min()) == pytest.approx(0.05)
    assert bool((lab[0, 1:] < lab[0, :-1]).all())  # decreasing in d
    exp2 = HeadTarget("teacher_residual", label="exp2").label(d)
    assert float(exp2.max() - exp2.min()) < 0.15 < float(lab.max() - lab.min())
    assert HeadTarget("dmd_grad", label="rank").label(torch.ones(1, 2), update=False).eq(0.5).all()  # empty window


def test_teacher_residual_is_larger_for_an_off_manifold_video(small_teacher):
    """The default joint target: the frozen teacher moves a noise-like 'video' further than its own sample."""
    from dsa_core.training.flow import x0_prediction
    from dsa_core.training.targets import teacher_residual_distance

    cw = CausalWan(small_teacher, small_teacher.config)
    ctx = RandomPrompts(4)(2, torch.Generator().manual_seed(2))
    text = cw.encode_text(ctx)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        x = torch.randn(2, 16, 6, 4, 4, generator=g)
        for s in (1.0, 0.75, 0.5, 0.25):  # a crude teacher sample (re-noising x0 predictions)
            x0 = x0_prediction(cw, x, torch.full((2,), s), text)
            x = (1 - s / 2) * x0 + (s / 2) * torch.randn(x0.shape, generator=g)
        x0 = x0_prediction(cw, x, torch.full((2,), 0.1), text)
        rough = x0 + 0.5 * torch.randn(x0.shape, generator=g)
        eps = torch.randn(x0.shape, generator=g)
        d = {}
        for name, v in (("sample", x0), ("rough", rough)):
            s = torch.full((2,), 0.15)
            pr = x0_prediction(cw, 0.85 * v + 0.15 * eps, s, text)
            d[name] = teacher_residual_distance(v, pr)
    assert d["sample"].shape == (2, 6)
    assert float(d["rough"].mean()) > float(d["sample"].mean())
    # teacher_gain: refining the rough video into the sample is a gain, the reverse a loss, no change none
    from dsa_core.training.targets import teacher_gain_distance

    with torch.no_grad():
        s = torch.full((2,), 0.15)
        pr = {n: x0_prediction(cw, 0.85 * v + 0.15 * eps, s, text) for n, v in (("sample", x0), ("rough", rough))}
    gain = teacher_gain_distance(rough, pr["rough"], x0, pr["sample"])
    assert float(gain.mean()) > 0
    assert torch.allclose(teacher_gain_distance(x0, pr["sample"], rough, pr["rough"]), -gain)
    assert torch.equal(teacher_gain_distance(x0, pr["sample"], x0, pr["sample"]), torch.zeros(2, 6))
    with pytest.raises(ValueError, match="fixed re-noising level.*head_sigma"):
        DMDConfig(target="teacher_gain", head_sigma=None)


def test_teacher_gain_target_in_joint_training(small_teacher):
    """The teacher_gain head target trains, and a chunk that exits at the last step (nothing left to gain)
    is labelled fully confident."""
    tr = _dmd_trainer(small_teacher, target="teacher_gain", target_label="step_rank")
    tr._exit_steps = lambda: [3, 0]  # second chunk exits at step 1 of 4, first at the last step
    seen = {}
    orig = tr.target.label

    def spy(distance, update=True, steps=None):
        seen["d"], seen["steps"] = distance.detach().clone(), steps
        seen["label"] = orig(distance, update=update, steps=steps)
        return seen["label"]

    tr.target.label = spy
    out = tr.train_step()
    assert out["head_loss"] > 0
    assert torch.equal(seen["d"][:, :3], torch.zeros(2, 3))  # exit at the last step: x0_k is x0_final
    assert bool((seen["label"][:, :3] == 1).all())
    assert bool(((seen["label"] >= 0) & (seen["label"] <= 1)).all())


def test_teacher_flow_matching_loss_falls():
    from dsa_core.toy.teacher import TeacherConfig, train_teacher

    _, losses = train_teacher(
        TeacherConfig(steps=30, batch=2, lr=1e-3, warmup=5, seed=0),
        model=init_random_weights(WanDiT(TINY), seed=0),
        show_progress=False,
    )
    first, last = _first_last(losses, 8)
    assert last < 0.7 * first, (first, last)


def test_teacher_ema_returns_the_moving_average_of_the_weights():
    """With ``ema`` the teacher returned is the average the callback saw grow, not the last weights."""
    from dsa_core.toy.teacher import TeacherConfig, ema_update, train_teacher

    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    want = 0.75 * a.weight.detach() + 0.25 * b.weight.detach()
    ema_update(a, b, 0.75)
    assert torch.allclose(a.weight, want)

    seen = []
    cfg = dict(steps=6, batch=2, lr=1e-3, warmup=2, seed=0)
    raw, _ = train_teacher(TeacherConfig(**cfg), model=init_random_weights(WanDiT(TINY), seed=0), show_progress=False)
    avg, _ = train_teacher(
        TeacherConfig(**cfg, ema=0.999),
        model=init_random_weights(WanDiT(TINY), seed=0),
        show_progress=False,
        on_step=lambda i, m: seen.append(m),
    )
    assert len(seen) == 6 and all(m is seen[0] for m in seen)  # one averaged copy, updated in place
    diff = [(p - q).abs().max().item() for p, q in zip(raw.parameters(), avg.parameters())]
    assert max(diff) > 0  # the same draws, yet not the last weights


def test_block_causal_flow_loss_sees_no_future_and_skips_clean_frames(small_teacher):
    """The teacher's block-causal objective: a chunk's loss does not change when later frames change (it is
    the KV-cache sampler's view), it differs from the bidirectional loss, and clean context frames (s = 0)
    carry no loss (their target eps - x0 is unpredictable from x0)."""
    from dsa_core.training.flow import FlowMatchObjective

    obj = FlowMatchObjective(small_teacher)
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(2, 16, 6, 4, 4, generator=g)
    eps = torch.randn(x0.shape, generator=g)
    ctx = torch.randn(2, 8, TINY.text_dim, generator=g)
    s = torch.tensor([[0.0] * 3 + [0.6] * 3, [0.3] * 3 + [0.8] * 3])
    with torch.no_grad():
        causal = obj(x0, ctx, s, eps, causal_chunk=3)
        bidir = obj(x0, ctx, s, eps)
        # only the first chunk is scored: later frames must not matter in the causal loss
        s_first = torch.tensor([[0.5] * 3 + [0.0] * 3] * 2)
        a = obj(x0, ctx, s_first, eps, causal_chunk=3)
        x0b = x0.clone()
        x0b[:, :, 3:] += 3.0
        b = obj(x0b, ctx, s_first, eps, causal_chunk=3)
        c = obj(x0b, ctx, s_first, eps)
        # a clean first chunk: changing its noise (which cannot be predicted) leaves the loss unchanged
        eps2 = eps.clone()
        eps2[:, :, :3] = torch.randn(2, 16, 3, 4, 4, generator=g)
        d = obj(x0, ctx, torch.tensor([[0.0] * 3 + [0.6] * 3] * 2), eps, causal_chunk=3)
        e = obj(x0, ctx, torch.tensor([[0.0] * 3 + [0.6] * 3] * 2), eps2, causal_chunk=3)
    assert abs(float(causal) - float(bidir)) > 1e-4
    assert torch.allclose(a, b, atol=1e-6), (float(a), float(b))
    assert not torch.allclose(a, c, atol=1e-4)  # the bidirectional loss does see the later frames
    assert torch.allclose(d, e, atol=1e-6)


def test_causal_teacher_sigmas_keep_the_last_chunk_noisy():
    from dsa_core.toy.teacher import sample_causal_sigmas

    g = torch.Generator().manual_seed(0)
    s = sample_causal_sigmas(256, 12, 3, g, shift=3.0, clean=0.6)
    per_chunk = s.view(256, 4, 3)
    assert torch.equal(per_chunk, per_chunk[..., :1].expand_as(per_chunk))  # one level per chunk
    assert bool((per_chunk[:, -1, 0] > 0).all())  # the chunk being generated is never clean
    clean = (per_chunk[:, :-1, 0] == 0).float().mean()
    assert 0.5 < float(clean) < 0.7, float(clean)


def test_teacher_with_block_causal_batches_learns():
    from dsa_core.toy.teacher import TeacherConfig, train_teacher

    _, losses = train_teacher(
        TeacherConfig(steps=30, batch=2, lr=1e-3, warmup=5, seed=0, causal_frac=0.5),
        model=init_random_weights(WanDiT(TINY), seed=0),
        show_progress=False,
    )
    first, last = _first_last(losses, 8)
    assert last < 0.7 * first, (first, last)


def test_dmd_joint_training_losses_fall(small_teacher):
    tr = _dmd_trainer(small_teacher)
    before = {k: v.clone() for k, v in tr.student.state_dict().items()}
    tr.train(24, show_progress=False)
    h = tr.history
    c0, c1 = _first_last(h["critic_loss"], 6)
    assert c1 < c0, ("critic (fake score) loss did not fall", c0, c1)
    h0, h1 = _first_last(h["head_excess"], 6)
    assert h1 < h0, ("head BCE (minus the labels' entropy) did not fall", h0, h1)
    assert min(h["head_excess"]) > -1e-4
    assert len(h["gen_loss"]) == 12 and all(v == v for v in h["gen_loss"])
    changed = sum(not torch.equal(before[k], v) for k, v in tr.student.state_dict().items())
    assert changed == len(before)  # every generator tensor moved
    # the teacher is frozen
    assert all(not p.requires_grad for p in tr.teacher.parameters())


def test_dmd_generator_step_reduces_the_dmd_gap(small_teacher):
    """With critic and teacher fixed, one generator update along the DMD gradient lowers
    E||pred_fake - pred_real|| surrogate: the distance of the generated video to sg(x - grad) shrinks."""
    critic = init_random_weights(WanDiT(TINY), seed=7)  # a fake score that differs from the real one
    tr = _dmd_trainer(small_teacher, critic=critic, gen_every=1)
    obj = tr.gen_obj
    ctx = RandomPrompts(4)(2, torch.Generator().manual_seed(9))
    s = torch.full((2,), 0.6)

    def run():
        g = torch.Generator().manual_seed(11)
        return obj(ctx, [1, 1], randn_fn(g, "cpu"), s, randn_fn(g, "cpu"), True)

    loss, ro, pf, pr = run()
    target = (ro.video - (pf - pr) / (ro.video - pr).abs().mean()).detach()
    opt = torch.optim.SGD(tr.student.parameters(), lr=0.01)
    opt.zero_grad()
    loss.backward()
    opt.step()
    with torch.no_grad():
        _, ro2, _, _ = run()
    assert (ro2.video - target).pow(2).mean() < (ro.video.detach() - target).pow(2).mean()


def test_dmd_resume_is_exact(small_teacher, tmp_path):
    a = _dmd_trainer(small_teacher, seed=4)
    a.train(6, show_progress=False)
    b = _dmd_trainer(small_teacher, seed=4)
    b.train(3, ckpt_dir=tmp_path, show_progress=False)
    c = _dmd_trainer(small_teacher, seed=99)  # different seed: everything must come from the checkpoint
    c.load(tmp_path / "latest.safetensors")
    assert c.step == 3
    c.train(6, show_progress=False)
    for name in ("student", "critic", "head"):
        sa, sc = getattr(a, name).state_dict(), getattr(c, name).state_dict()
        for k in sa:
            assert torch.equal(sa[k], sc[k]), (name, k)
    assert a.history["critic_loss"] == c.history["critic_loss"]


@pytest.mark.parametrize(
    "target,label",
    [
        ("x0_agreement", "exp2"),
        ("dmd_grad", "rank"),
        ("teacher_residual", "exp2"),
        ("x0_agreement", "step_rank"),
        ("x0_agreement", "tolerance"),
    ],
)
def test_other_targets_in_joint_training(small_teacher, target, label):
    tr = _dmd_trainer(small_teacher, target=target, target_label=label)
    out = tr.train_step()
    assert 0 < out["tau"] and out["head_loss"] > 0 and out["dmd_grad_rms"] > 0


def test_checkpoint_roundtrip_plain_tensors(tmp_path):
    m = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(m.parameters(), lr=0.1)
    m(torch.randn(4, 3)).sum().backward()
    opt.step()
    g = torch.Generator().manual_seed(3)
    p = save_training_state(
        tmp_path / "s.safetensors",
        step=7,
        modules={"m": m},
        optimizers={"o": opt},
        generators={"g": g},
        info={"x": [1, 2]},
    )
    st = load_training_state(p)
    m2 = torch.nn.Linear(3, 2)
    opt2 = torch.optim.AdamW(m2.parameters(), lr=0.5)
    st.load_module("m", m2)
    st.load_optimizer("o", opt2)
    g2 = torch.Generator()
    st.load_generator("g", g2)
    assert st.step == 7 and st.info == {"x": [1, 2]}
    assert torch.equal(m.weight, m2.weight) and opt2.param_groups[0]["lr"] == 0.1
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert all(torch.equal(s1[i][k], s2[i][k]) for i in s1 for k in s1[i])
    assert torch.equal(torch.rand(3, generator=g), torch.rand(3, generator=g2))
    with pytest.raises(ValueError):
        plain = tmp_path / "plain.safetensors"
        from safetensors.torch import save_file

        save_file({"a": torch.zeros(1)}, str(plain))
        load_training_state(plain)


def test_head_calibration_loss_falls_and_writes_a_loadable_head(tiny_dit, tmp_path):
    cfg = CalibConfig(batch=2, rollouts=2, max_steps=5, epochs=30, minibatch=64, lr=3e-3, hidden_dim=32, **SMALL)
    cal = HeadCalibrator(copy.deepcopy(tiny_dit), cfg, RandomPrompts(4))
    cal.train(show_progress=False)
    h0, h1 = _first_last(cal.history["head_loss"], 5)
    assert h1 < h0
    # the last step's label is 1 (agrees with itself); earlier steps lower
    assert torch.allclose(cal.labels()[cal.data.step == 4], torch.ones(1))
    path = tmp_path / "head.safetensors"
    cal.save_head(path)
    head = load_head(path, expected_dim=TINY.dim)
    x = torch.randn(1, 3, TINY.dim)
    torch.testing.assert_close(head(x, x), cal.head(x, x))
    # resumable state: more epochs from a saved state equal more epochs straight through
    cal.save_state(tmp_path / "cal.safetensors")
    cal2 = HeadCalibrator(copy.deepcopy(tiny_dit), cfg, RandomPrompts(4))
    cal2.load_state(tmp_path / "cal.safetensors")
    cal.train(epochs=33, show_progress=False)
    cal2.train(epochs=33, show_progress=False)
    assert all(torch.equal(a, b) for a, b in zip(cal.head.state_dict().values(), cal2.head.state_dict().values()))


def test_head_calibration_start_does_not_depend_on_the_global_rng(tiny_dit):
    """The calibrated head starts from its config's seed: consuming the global RNG in between (as a
    pipeline's earlier stages do) must not change it, so a reproduction run is repeatable."""
    cfg = CalibConfig(batch=1, rollouts=1, max_steps=4, hidden_dim=16, seed=5, **SMALL)
    a = HeadCalibrator(copy.deepcopy(tiny_dit), cfg, RandomPrompts(4)).head.state_dict()
    torch.randn(1000)
    b = HeadCalibrator(copy.deepcopy(tiny_dit), cfg, RandomPrompts(4)).head.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = HeadCalibrator(
        copy.deepcopy(tiny_dit),
        CalibConfig(batch=1, rollouts=1, max_steps=4, hidden_dim=16, seed=6, **SMALL),
        RandomPrompts(4),
    ).head.state_dict()
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_distributed_world_size_one_gloo(small_teacher, tmp_path):
    """The torchrun path (process group + DDP) in one process: init via a FileStore, gloo on CPU."""
    import torch.distributed as dist

    if not dist.is_available():
        pytest.skip("torch.distributed not available")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        env = D.setup("cpu")
        assert env.distributed and env.is_main
        cfg = DMDConfig(batch=2, max_steps=4, gen_every=1, **SMALL)
        tr = DMDTrainer(
            small_teacher,
            copy.deepcopy(small_teacher),
            ConfidenceHead(HeadConfig(dim=TINY.dim, hidden_dim=16)),
            cfg,
            RandomPrompts(4),
            env=env,
        )
        from torch.nn.parallel import DistributedDataParallel

        assert isinstance(tr.gen_obj, DistributedDataParallel)
        tr.train(2, ckpt_dir=tmp_path, show_progress=False)
        assert (tmp_path / "latest.safetensors").is_file()
    finally:
        dist.destroy_process_group()


def test_cli_train_dmd_and_calibrate_head(small_teacher, tmp_path):
    from dsa_core.prompt_files import save_prompt_embedding
    from dsa_core.training import calibrate_head, train_dmd

    teacher = tmp_path / "teacher.safetensors"
    save_generator(small_teacher, teacher)
    pdir = tmp_path / "prompts"
    pdir.mkdir()
    for i in range(2):
        save_prompt_embedding(pdir / f"p{i}.safetensors", torch.randn(3 + i, 4096), f"prompt {i}")
    common = [
        "--frames",
        "6",
        "--latent-h",
        "4",
        "--latent-w",
        "4",
        "--batch",
        "2",
        "--max-steps",
        "4",
        "--prompts",
        str(pdir),
        "--no-progress",
        "--threads",
        "1",
    ]
    out = tmp_path / "run"
    assert (
        train_dmd.main(
            ["--teacher", str(teacher), "--out", str(out), "--steps", "2", "--ckpt-every", "1", "--head-hidden", "16"]
            + common
        )
        == 0
    )
    assert (
        train_dmd.main(
            ["--teacher", str(teacher), "--out", str(out), "--steps", "3", "--resume", "auto", "--head-hidden", "16"]
            + common
        )
        == 0
    )
    assert load_training_state(out / "latest.safetensors").step == 3
    combined = out / "generator_with_head.safetensors"
    gen = load_generator(combined)
    assert gen.config.dim == TINY.dim
    load_head(combined, expected_dim=TINY.dim)
    head_out = tmp_path / "cal_head.safetensors"
    assert (
        calibrate_head.main(
            [
                "--generator",
                str(combined),
                "--out",
                str(head_out),
                "--rollouts",
                "1",
                "--epochs",
                "2",
                "--head-hidden",
                "16",
            ]
            + common
        )
        == 0
    )
    assert load_head(head_out, expected_dim=TINY.dim).config.hidden_dim == 16


def test_torchrun_two_ranks_gloo(small_teacher, tmp_path):
    """The real multi-process path: torchrun starts 2 CPU ranks (gloo), DDP syncs the gradients, the head
    target's window gathers both ranks' distances, rank 0 alone writes the checkpoint."""
    import subprocess
    import sys
    from pathlib import Path

    teacher = tmp_path / "teacher.safetensors"
    save_generator(small_teacher, teacher)
    out = tmp_path / "run"
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "dsa_core.training.train_dmd",
        "--teacher",
        str(teacher),
        "--out",
        str(out),
        "--steps",
        "2",
        "--ckpt-every",
        "1",
        "--head-hidden",
        "16",
        "--frames",
        "6",
        "--latent-h",
        "4",
        "--latent-w",
        "4",
        "--batch",
        "1",
        "--max-steps",
        "4",
        "--gen-every",
        "1",
        "--no-progress",
        "--threads",
        "1",
        "--device",
        "cpu",
    ]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    st = load_training_state(out / "latest.safetensors")
    assert st.step == 2
    window = st.extra("target_window")
    assert window.numel() == 2 * 2 * 1 * 6  # steps x ranks x batch x frames: both ranks' frames were gathered


def test_head_calibration_labels_step_rank_and_tolerance(tiny_dit):
    """The calibration's other labels: 'step_rank' has mean 1/2 at every step but the last (label 1: the
    last step agrees with itself); 'tolerance' is 1 exactly where the distance is within tolerance."""
    from dsa_core.training.targets import DEFAULT_TOLERANCE

    cfg = CalibConfig(batch=2, rollouts=2, max_steps=4, epochs=1, hidden_dim=16, label="step_rank", **SMALL)
    cal = HeadCalibrator(copy.deepcopy(tiny_dit), cfg, RandomPrompts(4))
    cal.collect(show_progress=False)
    lab = cal.labels()
    for k in range(3):
        assert float(lab[cal.data.step == k].mean()) == pytest.approx(0.5, abs=0.02)
    assert bool((lab[cal.data.step == 3] == 1).all())
    tol = HeadCalibrator(
        copy.deepcopy(tiny_dit), CalibConfig(**{**cfg.to_dict(), "label": "tolerance"}), RandomPrompts(4)
    )
    tol.data = cal.data
    assert tol.tau == DEFAULT_TOLERANCE
    assert torch.equal(tol.labels(), (cal.data.distance <= DEFAULT_TOLERANCE).float())
    bad = HeadCalibrator(copy.deepcopy(tiny_dit), CalibConfig(**{**cfg.to_dict(), "label": "linear"}), RandomPrompts(4))
    bad.data = cal.data
    with pytest.raises(ValueError, match="unknown calibration label"):
        bad.labels()
