"""Toy-scale reproduction of DSA's claim on world v3 (quality vs NFE; does per-chunk step allocation beat
fixed steps, a per-chunk-index schedule, a heuristic and matched-random controls?), on a CPU. Everything is
this project's reconstruction at toy scale.

  python -m dsa_core.toy.reproduce --out results/toy_repro --save-model models/toy --threads 2

Stages (each prints a progress bar; ``--work DIR`` keeps intermediate weights so a rerun can skip stages
with ``--reuse``; ``--stop-after STAGE`` ends after a stage):
 1. teacher: a Wan DiT (toy size, config TOY_CONFIG) trained with flow matching on the toy world's
    code-made videos, half of its batches block-causally (teacher.py; --teacher-causal-frac);
 2. optional ODE warm start of the causal student from the teacher's Euler ODE samples (ode_init.py; off
    by default);
 3. joint Self-Forcing DMD + confidence head (training/dmd.py; default target 'teacher_gain' (the teacher's
    measure of what the remaining steps would still improve) with the absolute 'tolerance' label (c* = 1
    when they would improve it by at most a fixed tol: chunks with nothing left may stop at step 1;
    'step_rank' would force a fixed share of them to continue); the earlier targets and labels stay
    switchable with --target / --target-label), data-free: the student only sees prompts; then a second
    head calibrated head-only on the final student (--calib-label, default 'tolerance');
 4. evaluation (evaluate.py): prompts x seeds split into a selection and a held-out half; fixed 1..6
    steps, the threshold sweeps of both heads each with its matched-random control, the heuristic policy,
    the per-chunk-index schedule chosen on the selection half, an oracle allocation; per-chunk conditional
    error, energy distance and event rate with 95% bootstrap intervals; Spearman of confidence vs gain and
    each head target's ceiling (the same Spearman with the target's true value);
 5. outputs: ``quality_vs_nfe.png``, ``event_vs_continuation_steps.png``, ``results.json`` (with the
    "summary" object) and ``README.md`` in --out; with --save-model, the student + shipped head as
    ``dsa_toy_wan.safetensors`` (bf16 generator, float32 head) and the demo prompt embeddings under
    ``prompts/``.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..checkpoint import load_generator, save_generator
from ..confidence_head import ConfidenceHead, HeadConfig, load_head, save_head
from ..policies import THRESHOLD_PRESETS
from ..schedules import extended_ladder, self_forcing_ladder
from ..training.calibrate import CalibConfig, HeadCalibrator
from ..training.distributed import DistEnv
from ..training.dmd import DMDConfig, DMDTrainer
from ..training.export import save_generator_with_head
from ..training.targets import LABEL_NAMES, TARGET_NAMES
from . import world as W
from .evaluate import eval_scenes, run_all, trivial_baselines
from .ode_init import ode_regression, teacher_trajectories
from .plot import event_steps_chart, quality_vs_nfe
from .prompts import ToyPrompts, write_demo_prompts
from .teacher import TOY_CONFIG, TeacherConfig, train_teacher
from .teacher_check import teacher_validity

DEFAULTS = dict(
    teacher_steps=3000,
    ode_videos=256,
    ode_steps=0,
    dmd_steps=300,
    calib_rollouts=8,
    calib_epochs=60,
    eval_per_motion=2,
    eval_seeds=16,
)


def build_parser():
    ap = argparse.ArgumentParser(
        prog="python -m dsa_core.toy.reproduce",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--out", default="results/toy_repro")
    ap.add_argument("--work", default=None, help="folder for intermediate weights (default: <tmp>/dsa_toy_work)")
    ap.add_argument("--reuse", action="store_true", help="skip stages whose weights exist in --work")
    ap.add_argument("--save-model", default=None, help="folder to write dsa_toy_wan.safetensors and prompts/ into")
    ap.add_argument("--teacher-steps", type=int, default=DEFAULTS["teacher_steps"])
    ap.add_argument("--teacher-lr", type=float, default=1e-3)
    ap.add_argument("--teacher-batch", type=int, default=8)
    ap.add_argument(
        "--teacher-ema",
        type=float,
        default=0.999,
        help="the teacher is the moving average of its weights with this decay (0: the last weights)",
    )
    ap.add_argument(
        "--teacher-minutes", type=float, default=None, help="stop the teacher early after this long (a time box)"
    )
    ap.add_argument("--dmd-minutes", type=float, default=None, help="stop DMD + head early after this long")
    ap.add_argument(
        "--teacher-causal-frac",
        type=float,
        default=0.5,
        help="share of teacher batches trained block-causally (the student starts from these weights)",
    )
    ap.add_argument("--ode-videos", type=int, default=DEFAULTS["ode_videos"])
    ap.add_argument("--ode-steps", type=int, default=DEFAULTS["ode_steps"])
    ap.add_argument("--dmd-steps", type=int, default=DEFAULTS["dmd_steps"])
    ap.add_argument("--calib-rollouts", type=int, default=DEFAULTS["calib_rollouts"])
    ap.add_argument("--calib-epochs", type=int, default=DEFAULTS["calib_epochs"])
    ap.add_argument(
        "--target",
        choices=TARGET_NAMES,
        default="teacher_gain",
        help="the jointly trained head's target (dsa_core/training/targets.py)",
    )
    ap.add_argument(
        "--target-label",
        choices=LABEL_NAMES,
        default="tolerance",
        help="the joint head's label: 'tolerance' (default) is absolute, c* = 1 if the remaining steps would "
        "improve the frame by <= --target-tau (so most chunks may stop at step 1 when little is left); "
        "'step_rank' ranks only among frames that exited at the same step (it forces a fixed share of "
        "finished chunks to continue); 'rank' is the earlier pooled rank",
    )
    ap.add_argument(
        "--target-tau",
        type=float,
        default=None,
        help="fixed tau of the joint head's 'tolerance' / 'exp2' label (default: targets.DEFAULT_TOLERANCE "
        "for 'tolerance'; a label computed against a fixed number stays absolute)",
    )
    ap.add_argument(
        "--calib-label",
        choices=("exp2", "step_rank", "tolerance"),
        default="tolerance",
        help="the head-only calibrated head's label (tolerance: confidence = P(more steps change the "
        "frame by less than targets.DEFAULT_TOLERANCE))",
    )
    ap.add_argument(
        "--model-head",
        choices=("calibrated", "joint"),
        default="joint",
        help="which head goes into the saved toy model",
    )
    ap.add_argument("--gen-every", type=int, default=3)
    ap.add_argument("--gen-lr", type=float, default=3e-5)
    ap.add_argument("--critic-lr", type=float, default=6e-5)
    ap.add_argument(
        "--teacher-check-seeds",
        type=int,
        default=2,
        help="seeds per evaluation prompt of the teacher's own 50-step Euler samples (does the teacher render?)",
    )
    ap.add_argument("--eval-per-motion", type=int, default=DEFAULTS["eval_per_motion"])
    ap.add_argument("--eval-seeds", type=int, default=DEFAULTS["eval_seeds"])
    ap.add_argument(
        "--perfect-seeds",
        type=int,
        default=16,
        help="seeds per prompt of the perfect-model bound (the guarded configuration: 16, as the learned default)",
    )
    ap.add_argument(
        "--precondition-only",
        action="store_true",
        help="run the learned student at fixed 1..6 steps only, when fixed 4 renders < 0.8 valid videos "
        "(the allocation runs would claim nothing; the perfect-model bound is still computed)",
    )
    ap.add_argument("--thresholds", default="0.3,0.5,0.6,0.75,0.9")
    ap.add_argument("--heuristic-thresholds", default="0.9,0.95,0.98")
    ap.add_argument(
        "--index-schedules",
        default="2-1,3-1,4-1,3-2,4-2,6-2",
        help="candidate per-chunk-index schedules 'first-rest' (chosen on the selection half)",
    )
    ap.add_argument(
        "--motion-schedules",
        default="4-4-1,4-6-1,2-4-1,6-6-1,4-4-2,1-4-1",
        help="candidate motion-aware schedules 'first-event-continuation' (steps by the context's chunk kind; "
        "chosen on the selection half)",
    )
    ap.add_argument(
        "--calibrate-prompts",
        type=int,
        default=12,
        help="with --save-model: prompts of the saved model's calibration tables (dsa_core.calibrate_presets; 0: none)",
    )
    ap.add_argument("--calibrate-seeds", type=int, default=8, help="seeds per prompt of those tables")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--device",
        default="cpu",
        help="where the training stages run ('cpu' or 'cuda'; scripts/gpu_train_toy); the evaluation runs on the CPU",
    )
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument(
        "--export-weights",
        default=None,
        help="after training, write the weights (bf16 generators, heads, training.json) into this folder "
        "(scripts/gpu_train_toy: small enough to come back from a device run)",
    )
    ap.add_argument(
        "--model",
        default=None,
        help="skip training: evaluate this saved student + head (e.g. models/toy/dsa_toy_wan.safetensors; no "
        "teacher, no calibrated head)",
    )
    ap.add_argument(
        "--from-weights",
        default=None,
        help="skip training: evaluate (and --save-model) the weights an --export-weights run wrote",
    )
    ap.add_argument(
        "--stop-after",
        choices=("teacher", "dmd", "calibration"),
        default=None,
        help="end after this stage (its weights stay in --work for a later --reuse run)",
    )
    return ap


def command_line(argv) -> str:
    """The command that reproduces this run from scratch (--reuse and --work only skip identical stages)."""
    out, skip = [], False
    for v in argv:
        if skip:
            skip = False
        elif v == "--reuse" or v.startswith("--work=") or v.startswith("--stop-after="):
            continue
        elif v in ("--work", "--stop-after"):
            skip = True
        else:
            out.append(v)
    return "python -m dsa_core.toy.reproduce " + " ".join(out)


@dataclass
class Trained:
    """What the training stages leave for the evaluation (``info``: losses, target, configs)."""

    teacher: object
    student: object
    head: object
    cal_head: object
    info: dict


EXPORT_FILES = ("teacher.safetensors", "dsa_toy_wan.safetensors", "calibrated_head.safetensors", "training.json")


def export_weights(t: Trained, folder: Path, timings: dict) -> None:
    """The trained weights in files small enough to come back from a device run (bf16 generators, float32
    heads; no optimizer state): ``--from-weights`` evaluates them on another machine."""
    folder.mkdir(parents=True, exist_ok=True)
    save_generator(t.teacher, folder / EXPORT_FILES[0], dtype="bf16")
    save_generator_with_head(t.student, t.head, folder / EXPORT_FILES[1], "bf16", {"dsa.toy.world": "v3"})
    save_head(t.cal_head, folder / EXPORT_FILES[2])
    (folder / EXPORT_FILES[3]).write_text(json.dumps({**t.info, "timings": timings}))


def load_exported(folder: Path) -> tuple[Trained, dict]:
    teacher = load_generator(folder / EXPORT_FILES[0], dtype="fp32").eval().requires_grad_(False)
    student = load_generator(folder / EXPORT_FILES[1], dtype="fp32").eval().requires_grad_(False)
    head = load_head(folder / EXPORT_FILES[1], expected_dim=student.config.dim).eval().requires_grad_(False)
    cal_head = load_head(folder / EXPORT_FILES[2], expected_dim=student.config.dim).eval().requires_grad_(False)
    info = json.loads((folder / EXPORT_FILES[3]).read_text())
    return Trained(teacher, student, head, cal_head, info), info.pop("timings", {})


def load_model_only(path: Path) -> Trained:
    """A saved student + head (``--save-model``'s file) for evaluation only: no teacher (no teacher_gain
    ceiling), no calibrated head; its training metadata from the file's header."""
    from ..checkpoint_header import read_header

    _, meta = read_header(path)
    student = load_generator(path, dtype="fp32").eval().requires_grad_(False)
    head = load_head(path, expected_dim=student.config.dim).eval().requires_grad_(False)
    info = {
        "teacher_losses": [],
        "ode_losses": [],
        "history": {k: [] for k in ("critic_loss", "head_loss", "gen_loss", "head_excess")},
        "target": {"name": meta.get("dsa.target"), "label_kind": meta.get("dsa.target_label"), "label": "", "tau": ""},
        "target_name": meta.get("dsa.target"),
        "label_name": meta.get("dsa.target_label"),
        "calibration": {"config": {"label": "-"}},
        "dmd_config": {},
        "model_file": str(path),
        "model_meta": {k: v for k, v in meta.items() if k.startswith("dsa.")},
        "reused": [],
    }
    return Trained(None, student, head, None, info)


def train_stages(a, work: Path, show: bool, g: torch.Generator, timings: dict) -> Trained | None:
    """Stages 1-3b (teacher, optional ODE warm start, joint DMD + head, head calibration), each reused from
    ``work`` with --reuse; None when --stop-after ends earlier than the calibration."""
    # 1. teacher
    t0 = time.time()
    tpath = work / "teacher.safetensors"
    lpath = work / "teacher_losses.json"
    teacher_reused = a.reuse and tpath.is_file()
    if teacher_reused:
        teacher = load_generator(tpath)
        teacher_losses = json.loads(lpath.read_text()) if lpath.is_file() else []
    else:
        teacher_cfg = TeacherConfig(
            steps=a.teacher_steps,
            batch=a.teacher_batch,
            lr=a.teacher_lr,
            seed=a.seed,
            causal_frac=a.teacher_causal_frac,
            time_limit_s=None if a.teacher_minutes is None else 60.0 * a.teacher_minutes,
            ema=a.teacher_ema,
        )
        teacher, teacher_losses = train_teacher(teacher_cfg, show_progress=show, device=a.device)
        save_generator(teacher, tpath)
        lpath.write_text(json.dumps(teacher_losses))
    teacher.eval().requires_grad_(False)
    stage_file = work / "stage_times.json"
    stored = json.loads(stage_file.read_text()) if stage_file.is_file() else {}
    reused = []

    def stage_time(key, t_begin, was_reused):
        """Seconds a stage took; for a stage reused from --work, the time stored when it really ran."""
        if was_reused:
            reused.append(key)
            timings[key] = stored.get(key, time.time() - t_begin)
        else:
            timings[key] = stored[key] = time.time() - t_begin
            stage_file.write_text(json.dumps(stored))

    stage_time("teacher_s", t0, teacher_reused)
    if a.stop_after == "teacher":
        return None

    # 2. ODE warm start of the causal student
    t0 = time.time()
    cfg = DMDConfig(
        num_frames=W.NUM_FRAMES,
        chunk_frames=W.CHUNK_FRAMES,
        latent_h=W.LATENT_H,
        latent_w=W.LATENT_W,
        batch=4,
        max_steps=6,
        gen_every=a.gen_every,
        gen_lr=a.gen_lr,
        critic_lr=a.critic_lr,
        target=a.target,
        target_label=a.target_label,
        target_tau=a.target_tau,
        seed=a.seed,
    )
    ladder = cfg.ladder()
    spath = work / "student_ode.safetensors"
    ode_losses = []
    if a.reuse and spath.is_file():
        student = load_generator(spath)
    else:
        student = copy.deepcopy(teacher)
        if a.ode_steps > 0:
            ctx = ToyPrompts()(a.ode_videos, g)
            states, finals = teacher_trajectories(teacher, ctx, ladder, g, show_progress=show)
            ode_losses = ode_regression(student, ctx, states, finals, ladder, a.ode_steps, g=g, show_progress=show)
        save_generator(student, spath)
    timings["ode_init_s"] = time.time() - t0

    # 3. joint DMD + head
    t0 = time.time()
    head = ConfidenceHead(HeadConfig(dim=student.config.dim, hidden_dim=128))
    env = DistEnv(device=torch.device(a.device))
    trainer = DMDTrainer(teacher, student, head, cfg, ToyPrompts(), env=env)
    dpath = work / "dmd_state.safetensors"
    dmd_reused = False
    done_file = work / "dmd_done.json"  # a time-boxed run ends before --dmd-steps: it still counts as done
    if a.reuse and dpath.is_file():
        trainer.load(dpath)
        done = json.loads(done_file.read_text()).get("steps") if done_file.is_file() else None
        dmd_reused = trainer.step >= a.dmd_steps or done == trainer.step
    if not dmd_reused:
        trainer.train(
            a.dmd_steps, show_progress=show, time_limit_s=None if a.dmd_minutes is None else 60.0 * a.dmd_minutes
        )
        trainer.save(dpath)
        done_file.write_text(json.dumps({"steps": trainer.step}))
    teacher.cpu()
    student.cpu().eval().requires_grad_(False)
    head.cpu()
    head.eval().requires_grad_(False)
    stage_time("dmd_s", t0, dmd_reused)

    # 3b. head-only calibration of a second head on the final student (x0_agreement)
    t0 = time.time()
    cal = HeadCalibrator(
        student,
        CalibConfig(
            num_frames=W.NUM_FRAMES,
            chunk_frames=W.CHUNK_FRAMES,
            latent_h=W.LATENT_H,
            latent_w=W.LATENT_W,
            batch=4,
            rollouts=a.calib_rollouts,
            max_steps=6,
            epochs=a.calib_epochs,
            hidden_dim=128,
            seed=a.seed,
            label=a.calib_label,
        ),
        ToyPrompts(),
        env=env,
    )
    cpath = work / "calibrated_head.safetensors"
    cal_reused = a.reuse and cpath.is_file()
    if cal_reused:
        cal_head = load_head(cpath, expected_dim=student.config.dim)
        cal_info = json.loads((work / "calibration.json").read_text())
    else:
        cal.train(show_progress=show)
        cal_head = cal.head.eval().requires_grad_(False)
        cal_info = {
            "config": cal.cfg.to_dict(),
            "tau": cal.tau,
            "loss_first_last": _first_last(cal.history["head_loss"]),
        }
        save_head(cal_head, cpath)
        (work / "calibration.json").write_text(json.dumps(cal_info))
    student.cpu().eval().requires_grad_(False)
    cal_head.cpu()
    stage_time("calibration_s", t0, cal_reused)
    trained = Trained(
        teacher,
        student,
        head,
        cal_head,
        {
            "teacher_losses": teacher_losses,
            "ode_losses": ode_losses,
            "history": {k: list(trainer.history[k]) for k in ("critic_loss", "head_loss", "gen_loss", "head_excess")},
            "target": trainer.target.to_dict(),
            "target_name": trainer.target.name,
            "label_name": trainer.target.label_name,
            "calibration": cal_info,
            "dmd_config": cfg.to_dict(),
            "dmd_steps_done": trainer.step,
            "reused": reused,
        },
    )
    if a.export_weights:
        export_weights(trained, Path(a.export_weights), dict(timings))
    return trained


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    a = build_parser().parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)  # module constructors draw from the global RNG; explicit generators do the rest
    show = not a.no_progress
    out = Path(a.out)
    work = Path(a.work) if a.work else Path(tempfile.gettempdir()) / "dsa_toy_work"
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    timings = {}
    g = torch.Generator().manual_seed(a.seed)

    if a.model:
        trained = load_model_only(Path(a.model))
        timings.update(teacher_s=0.0, dmd_s=0.0, calibration_s=0.0)
    elif a.from_weights:
        trained, stored_times = load_exported(Path(a.from_weights))
        timings.update({k: v for k, v in stored_times.items() if k.endswith("_s")})
        trained.info["reused"] = ["teacher_s", "dmd_s", "calibration_s"]
    else:
        trained = train_stages(a, work, show, g, timings)
    if trained is None or a.stop_after is not None:
        return 0
    teacher, student, head, cal_head, info = (
        trained.teacher,
        trained.student,
        trained.head,
        trained.cal_head,
        trained.info,
    )
    reused = info["reused"]
    ship_head = cal_head if a.model_head == "calibrated" else head

    # 3c. what the shipped head's (and the heuristic's) thresholds cost: its presets by cost (calibrate_presets.py)
    tables = {}
    if a.calibrate_prompts > 0:
        from ..calibrate_presets import measure_tables
        from ..calibration import META_HEAD
        from .preset_rollouts import toy_rollouts

        rs = toy_rollouts(a.calibrate_prompts, list(range(5000, 5000 + a.calibrate_seeds)), scene_seed=2025)
        ladder = extended_ladder(self_forcing_ladder(), 6)  # the evaluation's (evaluate.Evaluator)
        tables = measure_tables(student, ship_head, rs, ladder, log=None)
        ship_head.calibration = tables.get(META_HEAD)

    # 4. evaluation
    t0 = time.time()
    scenes = eval_scenes(a.eval_per_motion)
    seeds = list(range(1000, 1000 + a.eval_seeds))
    thresholds = tuple(float(v) for v in a.thresholds.split(","))
    heur = tuple(float(v) for v in a.heuristic_thresholds.split(","))
    index_cands = [[int(x) for x in c.split("-")] for c in a.index_schedules.split(",")]
    log_path = out / "evaluation.log"
    log_file = log_path.open("w")

    def log(msg):
        print(msg, file=log_file, flush=True)

    ev = run_all(
        student,
        ship_head,
        cal_head if a.model_head == "joint" else head,
        scenes,
        seeds,
        thresholds,
        heur,
        index_cands,
        show_progress=show,
        log=log,
        teacher=teacher,
        perfect_seeds=list(range(1000, 1000 + a.perfect_seeds)),
        precondition_only=a.precondition_only,
        motion_candidates=[tuple(int(x) for x in c.split("-")) for c in a.motion_schedules.split(",")],
    )
    # can the teacher itself render? (the student is distilled from it: it caps every student)
    teacher_renders = (
        None if teacher is None else teacher_validity(teacher, scenes, seeds[: a.teacher_check_seeds], steps=50)
    )
    baselines = trivial_baselines(scenes, n_per_prompt=max(2, a.eval_seeds // 2), fitter=ev["evaluator"].fitter)
    presets = preset_table(ev["rows"], "joint")
    timings["eval_s"] = time.time() - t0
    timings["total_s"] = sum(v for k, v in timings.items() if k.endswith("_s"))
    timings["reused_from_work"] = reused

    # 5. outputs
    rows = [r.to_dict() for r in ev["rows"]]
    report = {
        "command": command_line(argv),
        "summary": ev["summary"],
        "timings": timings,
        "baselines": baselines,
        "config": json.loads(TOY_CONFIG.to_json()),
        "rows": rows,
        "presets": presets,
        "spearman": ev["spearman"],
        "target_ceiling": ev["target_ceiling"],
        "step_cond_by_kind": ev["step_cond_by_kind"],
        "perfect_model": ev["perfect_model"],
        "perfect_model_bound": ev["perfect_model_bound"],
        "index_candidates": ev["index_candidates"],
        "halves": ev["halves"],
        "world": {
            "version": "v3 (wall teleport)",
            "event_due_share_by_chunk": list(W.event_due_share()),
            "event_kinds": W.EVENT_KINDS,
            "valid_tol": W.VALID_TOL,
            "chunks": W.NUM_CHUNKS,
            "chunk_frames": W.CHUNK_FRAMES,
            "latent_hw": [W.LATENT_H, W.LATENT_W],
            "motions": W.MOTIONS,
        },
        "teacher_renders": teacher_renders,
        "teacher_causal_frac": a.teacher_causal_frac,
        "dmd_config": info["dmd_config"],
        "dmd_steps_done": info.get("dmd_steps_done"),
        "evaluated_model": info.get("model_file"),
        "evaluated_model_meta": info.get("model_meta"),
        "target": info["target"],
        "calibration": info["calibration"],
        "shipped_head": a.model_head,
        "losses": {
            "teacher_first_last": _first_last(info["teacher_losses"]),
            "ode_first_last": _first_last(info["ode_losses"]),
            "critic_first_last": _first_last(info["history"]["critic_loss"]),
            "head_first_last": _first_last(info["history"]["head_loss"]),
            "gen_first_last": _first_last(info["history"]["gen_loss"]),
            "head_excess_first_last": _first_last(info["history"]["head_excess"]),
        },
        "eval": {"prompts": [s.prompt for s in scenes], "seeds": seeds},
        "platform": {"torch": torch.__version__, "python": platform.python_version(), "threads": a.threads},
    }
    (out / "results.json").write_text(json.dumps(report, indent=1))
    quality_vs_nfe(
        rows,
        title=f"toy DSA v3, learned student: {len(scenes)} prompts x {len(seeds)} seeds, held-out half "
        f"({len(ev['halves']['heldout'])} videos), 95% bootstrap CIs",
        metric="valid",
    ).save(out / "quality_vs_nfe.png")
    bound = ev["perfect_model_bound"]
    if bound:
        quality_vs_nfe(
            [{"kind": r["kind"], "value": r["value"], "heldout": r} for r in bound["rows"]],
            title=f"toy DSA v3, PERFECT MODEL (exact denoiser, not learned): {bound['summary']['pairs_heldout']} "
            "held-out videos, 95% bootstrap CIs",
            metric="valid",
        ).save(out / "perfect_model_valid_vs_nfe.png")
    if any(r["kind"] == "joint" for r in rows):
        event_steps_chart(rows).save(out / "event_vs_continuation_steps.png")
    write_readme(out / "README.md", render_readme(report))
    if a.save_model:
        md = Path(a.save_model)
        md.mkdir(parents=True, exist_ok=True)
        use_cal = a.model_head == "calibrated"
        meta = {
            "dsa.training": f"toy reproduction (world v3): flow-matching teacher -> joint DMD + head "
            f"({info['target_name']}, {info['label_name']}) -> "
            + ("head-only calibrated head" if use_cal else "shipped head = the jointly trained one")
            + " (reconstruction)",
            "dsa.command": report["command"],
            "dsa.head": a.model_head,
            "dsa.target": "x0_agreement" if use_cal else info["target_name"],
            "dsa.target_label": a.calib_label if use_cal else info["label_name"],
            "dsa.toy.latent_hw": f"{W.LATENT_H}x{W.LATENT_W}",
            "dsa.toy.num_frames": str(W.NUM_FRAMES),
            "dsa.toy.chunk_frames": str(W.CHUNK_FRAMES),
            "dsa.toy.max_steps": "6",
            "dsa.toy.world": "v3",
        }
        save_generator_with_head(student, ship_head, md / "dsa_toy_wan.safetensors", "bf16", meta)
        for old in (md / "prompts").glob("*.safetensors") if (md / "prompts").is_dir() else []:
            old.unlink()
        write_demo_prompts(md / "prompts")
        print(f"wrote {md / 'dsa_toy_wan.safetensors'} and {md / 'prompts'}")
        if tables:
            from ..calibrate_presets import write_metadata

            write_metadata(md / "dsa_toy_wan.safetensors", {k: t.to_json() for k, t in tables.items()})
    print(f"wrote {out / 'quality_vs_nfe.png'}, {out / 'README.md'} ({timings['total_s']:.0f} s)")
    return 0


def preset_table(rows, kind: str) -> list[dict]:
    """What each preset means on the shipped head, measured on the held-out half: the presets by cost of its
    calibration table (evaluate_budget.py's 'preset' rows) when it has one, else the uncalibrated numbers."""
    calibrated = [r for r in rows if r.kind == "preset"]
    out = []
    for name, t in THRESHOLD_PRESETS.items():
        r = next((r for r in rows if r.kind == kind and abs(float(r.value) - t) < 1e-9), None)
        r = next((c for c in calibrated if c.name.startswith(f"preset {name} ")), r)
        t = float(r.value) if r is not None else t
        if r is not None:
            h = r.heldout
            out.append(
                {
                    "preset": name,
                    "threshold": t,
                    "nfe_per_chunk": h["nfe_per_chunk"][0],
                    "cond": h["cond"][0],
                    "valid": h["valid"][0],
                    "steps_event": h["steps_event"],
                    "steps_continuation": h["steps_continuation"],
                }
            )
    return out


HAND_MARK = "<!-- hand-written below: kept when the script rewrites this file -->"


def write_readme(path: Path, text: str) -> None:
    """Write the generated part, keeping any hand-written reading after HAND_MARK."""
    keep = ""
    if path.is_file():
        old = path.read_text()
        if HAND_MARK in old:
            keep = old[old.index(HAND_MARK) :]
    path.write_text(text + ("\n" + keep if keep else ""))


def _first_last(v, k=20):
    if not v:
        return None
    k = min(k, max(1, len(v) // 4))
    return [sum(v[:k]) / k, sum(v[-k:]) / k]


def _by_kind_table(by_kind: dict) -> list[str]:
    """Markdown rows: per chunk kind, the cond error after each step and the change from the first step."""
    n_steps = len(next(iter(by_kind.values()))["cond_by_step"])
    out = [
        "| chunks | n | " + " | ".join(f"after step {k + 1}" for k in range(n_steps)) + " | last - first | improved |",
        "|---|---|" + "---|" * n_steps + "---|---|",
    ]
    for kind, d in by_kind.items():
        lf = d["last_minus_first"]
        out.append(
            f"| {kind} | {d['chunks']} | "
            + " | ".join(_ci(v) for v in d["cond_by_step"])
            + f" | {lf[0]:+.5f} [{lf[1]:+.5f}, {lf[2]:+.5f}] | {d['share_improved']:.2f} |"
        )
    return out


def _ci(t, digits=5):
    m, lo, hi = t
    if m != m:  # nan
        return "-"
    return f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


PERFECT_DOC = {
    "nfe_ratio": "NFE of the cheapest threshold run whose valid share reaches fixed 4's (paired 95% CI of the "
    "difference above -0.05), divided by fixed 4's NFE (bound: <= 0.62)",
    "random_control_margin": "smallest (run - matched-random control) valid share over the threshold runs "
    "(bound: >= +0.15 for every run)",
    "event_minus_continuation_steps": "mean steps on chunks with an event due minus on continuations, at that "
    "run (bound: >= +2.0)",
    "beats_position_schedule": "valid share >= +0.05 over the best per-chunk-position schedule no dearer on the "
    "selection half",
    "beats_motion_schedule": "the same over the best motion-aware schedule (steps by first / event due / "
    "continuation, read from the context)",
    "beats_heuristic": "the x0-change heuristic needs more NFE to reach fixed 4's validity (or never does)",
}

LEARNED_DOC = {
    "fixed4_valid": "valid share of the learned student at fixed 4 steps (precondition: >= 0.8)",
    "precondition_met": "fixed4_valid >= 0.8; without it the targets below are not claimed",
    "nfe_ratio": "as for the perfect model, joint-head sweep (target <= 0.70)",
    "random_control_wins": "threshold runs whose paired 95% CI of (run - control) valid share is above 0 (target >= 3)",
    "random_control_losses": "... below 0 (target 0)",
    "event_minus_continuation_steps": "at the balanced preset 0.75 of the joint head (target >= +1.5)",
    "spearman_conf_vs_gain": "within-step Spearman of the head's confidence vs the chunk's remaining cond gain "
    "(target |.| >= 0.5)",
    "beats_position_schedule": "joint sweep's valid share at the schedule's NFE beats it by more than max(half its "
    "CI, 0.05)",
    "beats_motion_schedule": "the same against the motion-aware schedule",
    "beats_heuristic": "the same against every heuristic run in the sweep's NFE range",
}


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, (list, tuple)) and len(v) == 3 and all(isinstance(x, float) for x in v):
        return f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]"
    return str(v)


def _shown_lines(rep: dict) -> list[str]:
    """The plain-words lead: what the run shows and what it does not."""
    pm, le = rep["summary"].get("perfect_model"), rep["summary"]["learned"]
    out = ["## What this shows, and what it does not", ""]
    if pm:
        ok = (
            pm["nfe_ratio"] <= 0.62
            and pm["random_control_margin"] >= 0.15
            and pm["event_minus_continuation_steps"] >= 2.0
            and pm["beats_position_schedule"]
            and pm["beats_motion_schedule"]
            and pm["beats_heuristic"]
        )
        out.append(
            "- **Shown, with a perfect model (labelled: not a learned model).** The world's exact denoiser, run "
            "through the product's sampler, ladder, noise and ConfidencePolicy with the posterior's top weight as "
            f"the confidence (threshold {pm['threshold']}), keeps fixed 4's validity ({_fmt(pm['valid'])} vs "
            f"{_fmt(pm['fixed4_valid'])}) at {pm['nfe_ratio']:.2f} of its NFE; chunks with an event due get "
            f"{pm['event_minus_continuation_steps']:+.2f} steps over continuations; every threshold run beats its "
            f"matched-random control by at least {pm['random_control_margin']:+.2f} valid share; at equal NFE it "
            "beats the best per-position schedule by "
            f"{_fmt(pm['position_schedule']['margin'])} and the best motion-aware schedule by "
            f"{_fmt(pm['motion_schedule']['margin'])}; the x0-change heuristic needs "
            + (f"{pm['heuristic_nfe_ratio']:.2f}" if pm["heuristic_nfe_ratio"] else "more than the sweep's")
            + " of fixed 4's NFE. "
            + ("All the world's bounds hold." if ok else "NOT every bound of the world holds (see the table).")
        )
    if le["precondition_met"]:
        out.append(
            f"- **The learned student renders** (fixed 4: {_fmt(le['fixed4_valid'])} valid videos), so its "
            "numbers below are claims about learned DSA at toy scale."
        )
    else:
        out.append(
            "- **Not shown: learned DSA. Precondition not met.** The learned student at fixed 4 steps renders "
            f"{_fmt(le['fixed4_valid'])} valid videos (needed: >= 0.8); by fixed steps 1..6: "
            + ", ".join(f"{k}: {v[0]:.2f}" for k, v in le["valid_by_fixed_steps"].items())
            + ". Its allocation numbers are reported but claim nothing; the perfect model carries the claim."
        )
    tr = rep.get("teacher_renders")
    if tr:
        out.append(
            f"- The teacher it was distilled from, sampled with {tr['steps']} Euler steps, renders "
            f"{_fmt(tr['valid'])} valid videos; {tr['sharp_frames']:.2f} of its frames are sharp (frame MSE to "
            f"the nearest clean render, quartiles {tr['frame_mse_quartiles']}; sharp: <= {W.VALID_TOL})."
        )
    out += [
        "- Not shown at all: anything about Wan 2.1 at real scale, or the paper's own numbers (the paper "
        "publishes only its abstract); this is this project's reconstruction at toy scale.",
        "",
    ]
    return out


def _perfect_lines(bound: dict) -> list[str]:
    s = bound["summary"]
    out = [
        "## Perfect-model bound (held-out half)",
        "",
        "`dsa_core/toy/perfect_model.py`: the world's exact denoiser (`exact_denoiser.ExactWorldModel`) in the "
        "product's sampler (`ar_sampler.denoise_chunk`), ladder, SeededNoise and policies; confidence = the "
        f"posterior's top weight. {s['pairs_heldout']} held-out videos; schedules chosen on the selection half. "
        "Guarded by tests/core/test_toy_perfect_model.py.",
        "",
        "| key | value | definition |",
        "|---|---|---|",
    ]
    for k, doc in PERFECT_DOC.items():
        out.append(f"| {k} | {_fmt(s[k])} | {doc} |")
    out += [
        "",
        "| run | valid videos | NFE / chunk | valid first / event / continuation | steps first / event / "
        "continuation | vs random control (valid) |",
        "|---|---|---|---|---|---|",
    ]
    for r in bound["rows"]:
        bk = r["by_kind"]
        vc = r.get("vs_control")
        out.append(
            f"| {r['name']} | {_fmt(r['valid'])} | {r['nfe_per_chunk'][0]:.2f} | "
            + " / ".join(f"{bk[k]['valid'][0]:.2f}" if bk[k]["valid"] else "-" for k in W.CHUNK_KINDS)
            + " | "
            + " / ".join(f"{bk[k]['steps']:.2f}" for k in W.CHUNK_KINDS)
            + f" | {_fmt(vc) if vc else ''} |"
        )
    return out + [""]


def _training_paragraph(rep: dict) -> str:
    return (
        "**Training.** Teacher: Wan DiT (dim "
        f"{rep['config']['dim']}, {rep['config']['num_heads']} heads of 128, "
        f"{rep['config']['num_layers']} layers) "
        "trained with flow matching, a share of its batches block-causally (`--teacher-causal-frac`, "
        f"{rep.get('teacher_causal_frac', 0.0)}; the rest bidirectional). Student: the same weights run causally "
        "through the KV cache, then "
        "Self-Forcing DMD with the confidence head trained jointly: target "
        f"`{rep['target']['name']}`, label `{rep['target']['label_kind']}` ({rep['target']['label']}, tau "
        f"{rep['target']['tau']}). A second "
        f"head is calibrated head-only on the final student (label `{rep['calibration']['config']['label']}`). "
        "Ladder: Self-Forcing's 4 levels + 2 extended (s = 1, 0.9375, 0.833, 0.625, 0.417, 0.25)."
    )


def render_readme(rep: dict) -> str:
    rows = rep["rows"]
    t = rep["timings"]
    le = rep["summary"]["learned"]
    sm = rep["summary"].get("cond_secondary")
    n_held = len(rep["halves"]["heldout"])
    w = rep["world"]
    lines = [
        "# Toy-scale DSA reproduction (world v3, wall teleport): validity vs NFE",
        "",
        "Generated by",
        "",
        "```bash",
        rep["command"],
        "```",
        "",
        f"on CPU ({rep['platform']['threads']} thread(s), torch {rep['platform']['torch']}) in "
        f"{t['total_s'] / 60:.1f} min (teacher {t['teacher_s']:.0f} s, DMD + head {t['dmd_s']:.0f} s, head "
        f"calibration {t['calibration_s']:.0f} s, evaluation {t['eval_s']:.0f} s"
        + (
            f"; stages {', '.join(k[:-2] for k in t.get('reused_from_work', []))} were reused from "
            "--work, their times are those of the run that made them"
            if t.get("reused_from_work")
            else ""
        )
        + "). Everything here is this project's reconstruction at toy scale (the paper publishes only its "
        "abstract); see `dsa_core/toy/` and `dsa_core/training/`.",
        "",
        *(
            [
                f"**Evaluated model:** `{rep['evaluated_model']}` (no training in this run; trained by: "
                f"{(rep.get('evaluated_model_meta') or {}).get('dsa.training', '?')}; world "
                f"{(rep.get('evaluated_model_meta') or {}).get('dsa.toy.world', '?')}).",
                "",
            ]
            if rep.get("evaluated_model")
            else []
        ),
        *_shown_lines(rep),
        "**World v3** (`dsa_core/toy/world.py`): one square or disc, 7 colours, 2 backgrounds, still or drifting "
        f"in 4 directions; 8x8 latent pixels x {w['chunks'] * w['chunk_frames']} latent frames = {w['chunks']} "
        f"chunks of {w['chunk_frames']}. The first chunk starts at one of 36 whole-pixel positions; a drifting "
        "shape that reaches the wall it moves towards teleports at the next chunk boundary to one of ~30 "
        "whole-pixel positions at least 2 px away and keeps its motion; nothing else happens. A chunk's kind "
        "(first / event due / continuation) is read from its context. Share of chunks with an event due by "
        "chunk position: " + " / ".join(f"{v:.3f}" for v in w["event_due_share_by_chunk"]) + " (exact; flat, so "
        "a per-position schedule cannot exploit timing).",
        "",
        *(
            ["**Training.** None in this run (the evaluated model's own training is named above).", ""]
            if rep.get("evaluated_model")
            else [_training_paragraph(rep), ""]
        ),
        "**Metrics** (`dsa_core/toy/world.py`, `evaluate.py`). Primary: **validity**. A chunk is valid when it "
        f"is sharp (every frame within RGB MSE {w['valid_tol']:g} of a clean render) and consistent (the fitted "
        "per-frame states are an allowed continuation of the fitted prefix); a video is valid when all its "
        "chunks are. Reported per video and per chunk kind. `teleport coverage`: of the chunks with an event "
        "due, the share that are valid teleports (rate) and their distinct destinations relative to the "
        "world's with as many draws (a generator that always teleports to one spot scores ~1/n, one that never "
        "moves 0). `energy`: per prompt, the energy distance between generated and world videos. Secondary: "
        "`cond`, MSE to the nearest allowed continuation; it is **blur-tolerant** (the conditional mean of a "
        "chunk scores well while rendering no allowed chunk), so it is no quality claim. NFE per chunk = steps + "
        f"1 cache commit. {len(rep['eval']['prompts'])} prompts x {len(rep['eval']['seeds'])} seeds; per prompt "
        f"half of the seeds form the *selection* half, the other half ({n_held} videos) the *held-out* half on "
        "which every number is measured; [low, high] = 95% bootstrap interval. Each threshold run has a "
        "*matched-random control* (its own step counts shuffled across chunks); verdicts are paired bootstraps.",
        "",
    ]
    if rep.get("perfect_model_bound"):
        lines += ["![perfect model: validity vs NFE](perfect_model_valid_vs_nfe.png)", ""]
        lines += _perfect_lines(rep["perfect_model_bound"])
    lines += ["![learned student: validity vs NFE](quality_vs_nfe.png)", ""]
    lines += [
        "## Learned student + joint head: summary (held-out half)",
        "",
        "| key | value | definition |",
        "|---|---|---|",
    ]
    for k, doc in LEARNED_DOC.items():
        lines.append(f"| {k} | {_fmt(le.get(k))} | {doc} |")
    lines += [
        "",
        "Secondary (cond, blur-tolerant): "
        if sm
        else "The allocation runs were not made: the precondition is not met, so they would claim nothing.",
    ]
    if sm:
        lines[-1] += (
            ", ".join(
                f"{k} {_fmt(sm.get(k))}"
                for k in (
                    "nfe_ratio_at_fixed4_quality",
                    "random_control_wins",
                    "random_control_losses",
                    "event_minus_continuation_steps",
                    "spearman_conf_vs_gain",
                )
            )
            + "; within-step Spearman per step: "
            + ", ".join(f"k={k}: {v:.3f}" for k, v in sm["spearman_conf_vs_gain_per_step"].items())
            + "."
        )
    for name, c in rep.get("target_ceiling", {}).items():
        lines.append(
            f"Ceiling {name}: {c['mean']:.3f} (" + ", ".join(f"k={k}: {v:.3f}" for k, v in c["per_step"].items()) + ")."
        )
    lines += [
        "",
        "## Table (held-out half)",
        "",
        "| sampler | NFE / chunk | valid videos | valid first / event / continuation | teleport rate / coverage | "
        "cond error (secondary) | energy distance | steps event / continuation | steps by chunk 1/2/3/4 | vs random "
        "control (valid) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        h = r["heldout"]
        ctl = h.get("vs_control_valid")
        ctl_s = (
            f"{ctl['verdict']} ({ctl['diff'][0]:+.3f} [{ctl['diff'][1]:+.3f}, {ctl['diff'][2]:+.3f}])" if ctl else ""
        )
        if r["kind"] == "oracle":
            continue
        bk = h["valid_by_kind"]
        tc = h["teleport_coverage"]
        lines.append(
            f"| {r['name']} | {_ci(h['nfe_per_chunk'], 2)} | {_ci(h['valid'], 3)} | "
            + " / ".join(f"{bk[k][0]:.2f}" if bk.get(k) else "-" for k in W.CHUNK_KINDS)
            + f" | {tc['rate']:.2f} / {tc['coverage']:.2f} | {_ci(h['cond'])} | {_ci(h['energy'], 4)} | "
            f"{h['steps_event']:.2f} / {h['steps_continuation']:.2f} | "
            f"{' / '.join(f'{v:.2f}' for v in h['steps_by_chunk'])} | {ctl_s} |"
        )
    for k, b in rep.get("baselines", {}).items():
        lines.append(f"| reference: {k} | - | - | - | - | {b['cond']:.5f} | {b['energy']:.4f} | - | - | |")
    by_kind = rep.get("step_cond_by_kind") or {}
    if by_kind:
        lines += [
            "",
            "## Where more steps help (learned student, fixed 6 steps, held-out half)",
            "",
            "Cond error of the chunk's x0 estimate after each step (prefixes as generated by fixed 6), by chunk kind "
            "(later chunks typed by the final output); the last columns: the change from step 1 to the last step "
            "per chunk (negative = the later steps improve such chunks) and the share improved. Intervals: 95% "
            "bootstrap over chunks.",
            "",
            *_by_kind_table(by_kind),
        ]
    perfect = rep.get("perfect_model")
    if perfect:
        lines += [
            "",
            "## Perfect model, fixed steps, cond (secondary)",
            "",
            "`dsa_core/toy/exact_denoiser.py`: the world's exact denoiser E[x0 | x_s, prefix] (every allowed "
            "continuation enumerated with its probability) in the product's sampler, same ladder, noise draws and "
            f"{perfect['pairs']} pairs: the cond error (secondary) and how many steps each kind of chunk needs.",
            "",
            "| fixed steps | NFE / chunk | cond error | realism | event rate |",
            "|---|---|---|---|---|",
            *(
                f"| {r['steps']} | {r['nfe_per_chunk']} | {_ci(r['cond'])} | {_ci(r['realism'])} | "
                f"{r['event_rate']:.2f} |"
                for r in perfect["rows"]
            ),
            "",
            "Per chunk kind, its fixed-6 run:",
            "",
            *_by_kind_table(perfect["step_cond_by_kind"]),
            "",
            "Steps until a chunk is an exact render (cond error <= "
            f"{perfect['exact_render_mse']:g}), mean over the chunks that get there: "
            + "; ".join(
                f"{kind} {d['steps_to_exact']:.2f} ({100 * d['share_exact']:.0f}% get there)"
                for kind, d in perfect["step_cond_by_kind"].items()
            )
            + ". A perfect head on this perfect model (every chunk stops at its first exact step) would spend "
            f"{perfect['steps_to_exact_nfe_ratio_vs_fixed4']:.2f} of fixed 4's NFE.",
        ]
    if not rep["presets"]:
        return "\n".join(lines) + "\n"
    lines += [
        "",
        "## Presets on the shipped head (held-out half)",
        "",
        "| preset | threshold | NFE / chunk | valid videos | cond error | steps event / continuation |",
        "|---|---|---|---|---|---|",
    ]
    for p in rep["presets"]:
        lines.append(
            f"| {p['preset']} | {p['threshold']} | {p['nfe_per_chunk']:.2f} | {p.get('valid', float('nan')):.3f} | "
            f"{p['cond']:.5f} | {p['steps_event']:.2f} / {p['steps_continuation']:.2f} |"
        )
    lines += [
        "",
        "Index-schedule candidates (selection half; 'a-b' = a steps for the first chunk, b for the others): "
        + "; ".join(
            f"{'-'.join(map(str, c['schedule']))}: NFE {c['selection']['nfe_per_chunk'][0]:.2f}, cond "
            f"{c['selection']['cond'][0]:.5f}"
            for c in rep["index_candidates"]
        )
        + ".",
    ]
    lo = rep["losses"]
    lines += [
        "",
        "Training losses (mean of first / last iterations): "
        + ", ".join(f"{k.replace('_first_last', '')} {v[0]:.4f} -> {v[1]:.4f}" for k, v in lo.items() if v),
        "",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
