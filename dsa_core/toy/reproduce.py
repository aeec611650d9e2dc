"""Toy-scale reproduction of DSA's claim on world v2 (quality vs NFE; does per-chunk step allocation beat
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
    measure of what the remaining steps would still improve) with the 'step_rank' label, which cannot
    collapse to the step index; the earlier targets and labels stay
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
from pathlib import Path

import torch

from ..checkpoint import load_generator, save_generator
from ..confidence_head import ConfidenceHead, HeadConfig, load_head, save_head
from ..policies import THRESHOLD_PRESETS
from ..training.calibrate import CalibConfig, HeadCalibrator
from ..training.dmd import DMDConfig, DMDTrainer
from ..training.export import save_generator_with_head
from ..training.targets import LABEL_NAMES, TARGET_NAMES
from . import world as W
from .evaluate import eval_scenes, run_all, trivial_baselines
from .ode_init import ode_regression, teacher_trajectories
from .plot import event_steps_chart, quality_vs_nfe
from .prompts import ToyPrompts, write_demo_prompts
from .teacher import TOY_CONFIG, TeacherConfig, train_teacher

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
        default="step_rank",
        help="the joint head's label: 'step_rank' ranks only among frames that exited at the same step "
        "(cannot collapse to the step index); 'rank' is the earlier pooled rank",
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
    ap.add_argument("--eval-per-motion", type=int, default=DEFAULTS["eval_per_motion"])
    ap.add_argument("--eval-seeds", type=int, default=DEFAULTS["eval_seeds"])
    ap.add_argument("--thresholds", default="0.3,0.5,0.6,0.75,0.9")
    ap.add_argument("--heuristic-thresholds", default="0.9,0.95,0.98")
    ap.add_argument(
        "--index-schedules",
        default="2-1,3-1,4-1,3-2,4-2,6-2",
        help="candidate per-chunk-index schedules 'first-rest' (chosen on the selection half)",
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
    ap.add_argument("--no-progress", action="store_true")
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
            steps=a.teacher_steps, lr=a.teacher_lr, seed=a.seed, causal_frac=a.teacher_causal_frac
        )
        teacher, teacher_losses = train_teacher(teacher_cfg, show_progress=show)
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
        return 0

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
    trainer = DMDTrainer(teacher, student, head, cfg, ToyPrompts())
    dpath = work / "dmd_state.safetensors"
    dmd_reused = False
    if a.reuse and dpath.is_file():
        trainer.load(dpath)
        dmd_reused = trainer.step >= a.dmd_steps
    trainer.train(a.dmd_steps, show_progress=show)
    trainer.save(dpath)
    student.eval().requires_grad_(False)
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
    student.eval().requires_grad_(False)
    stage_time("calibration_s", t0, cal_reused)
    ship_head = cal_head if a.model_head == "calibrated" else head
    if a.stop_after in ("dmd", "calibration"):
        return 0

    # 3c. what the shipped head's (and the heuristic's) thresholds cost: its presets by cost (calibrate_presets.py)
    tables = {}
    if a.calibrate_prompts > 0:
        from ..calibrate_presets import measure_tables
        from ..calibration import META_HEAD
        from .preset_rollouts import toy_rollouts

        rs = toy_rollouts(a.calibrate_prompts, list(range(5000, 5000 + a.calibrate_seeds)), scene_seed=2025)
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
        "index_candidates": ev["index_candidates"],
        "halves": ev["halves"],
        "world": {
            "event_p": W.EVENT_P,
            "event_kinds": W.EVENT_KINDS,
            "chunks": W.NUM_CHUNKS,
            "chunk_frames": W.CHUNK_FRAMES,
            "latent_hw": [W.LATENT_H, W.LATENT_W],
            "motions": W.MOTIONS,
        },
        "teacher_causal_frac": a.teacher_causal_frac,
        "dmd_config": cfg.to_dict(),
        "target": trainer.target.to_dict(),
        "calibration": cal_info,
        "shipped_head": a.model_head,
        "losses": {
            "teacher_first_last": _first_last(teacher_losses),
            "ode_first_last": _first_last(ode_losses),
            "critic_first_last": _first_last(trainer.history["critic_loss"]),
            "head_first_last": _first_last(trainer.history["head_loss"]),
            "gen_first_last": _first_last(trainer.history["gen_loss"]),
            "head_excess_first_last": _first_last(trainer.history["head_excess"]),
        },
        "eval": {"prompts": [s.prompt for s in scenes], "seeds": seeds},
        "platform": {"torch": torch.__version__, "python": platform.python_version(), "threads": a.threads},
    }
    (out / "results.json").write_text(json.dumps(report, indent=1))
    quality_vs_nfe(
        rows,
        title=f"toy DSA v2: {len(scenes)} prompts x {len(seeds)} seeds, held-out half "
        f"({len(ev['halves']['heldout'])} videos), 95% bootstrap CIs",
    ).save(out / "quality_vs_nfe.png")
    event_steps_chart(rows).save(out / "event_vs_continuation_steps.png")
    write_readme(out / "README.md", render_readme(report))
    if a.save_model:
        md = Path(a.save_model)
        md.mkdir(parents=True, exist_ok=True)
        use_cal = a.model_head == "calibrated"
        meta = {
            "dsa.training": f"toy reproduction (world v2): flow-matching teacher -> joint DMD + head "
            f"({trainer.target.name}, {trainer.target.label_name}) -> "
            + ("head-only calibrated head" if use_cal else "shipped head = the jointly trained one")
            + " (reconstruction)",
            "dsa.command": report["command"],
            "dsa.head": a.model_head,
            "dsa.target": "x0_agreement" if use_cal else trainer.target.name,
            "dsa.target_label": a.calib_label if use_cal else trainer.target.label_name,
            "dsa.toy.latent_hw": f"{W.LATENT_H}x{W.LATENT_W}",
            "dsa.toy.num_frames": str(W.NUM_FRAMES),
            "dsa.toy.chunk_frames": str(W.CHUNK_FRAMES),
            "dsa.toy.max_steps": "6",
            "dsa.toy.world": "v2",
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


SUMMARY_DOC = {
    "nfe_ratio_at_fixed4_quality": "NFE of the cheapest joint-head threshold whose cond error is not worse than "
    "fixed 4 steps' by more than half of fixed 4's 95% CI width, divided by fixed "
    "4's NFE",
    "random_control_wins": "threshold runs (joint + calibrated head) better than their matched-random control: the "
    "95% paired-bootstrap interval of (run - control) cond error lies below 0",
    "random_control_losses": "threshold runs worse than their control (interval above 0)",
    "event_minus_continuation_steps": "mean steps on event chunks minus on continuation chunks (chunks 2-4, classified "
    "by the nearest allowed continuation of the generated chunk) at the balanced "
    "preset (0.75) of the shipped head",
    "spearman_conf_vs_gain": "Spearman between the shipped head's chunk confidence after step k and the chunk's gain "
    "from further steps (cond error after step k minus after step 6, fixed-6 run), among "
    "chunks at the same k, averaged over k = 1..5 (negative = confident chunks have little "
    "left to gain; a step counter scores 0)",
    "beats_index_schedule": "the joint-head sweep, interpolated at the chosen index schedule's NFE, has a lower cond "
    "error than the schedule by more than half the schedule's CI width",
    "beats_heuristic": "the same against every heuristic-policy run inside the sweep's NFE range",
}


def render_readme(rep: dict) -> str:
    rows = rep["rows"]
    t = rep["timings"]
    sm = rep["summary"]
    n_held = len(rep["halves"]["heldout"])
    lines = [
        "# Toy-scale DSA reproduction (world v2): quality vs NFE",
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
        "![quality vs NFE](quality_vs_nfe.png)",
        "",
        "![steps on event vs continuation chunks](event_vs_continuation_steps.png)",
        "",
        "**World v2** (`dsa_core/toy/world.py`): one square or disc, 7 colours, 2 backgrounds, still or drifting "
        f"in 4 directions; 8x8 latent pixels x {rep['world']['chunks'] * rep['world']['chunk_frames']} latent "
        f"frames = {rep['world']['chunks']} chunks of {rep['world']['chunk_frames']}. The first chunk starts at a "
        "random position (uncertain); every later chunk is a continuation determined by the previous frame, "
        f"unless an event happens at its start (probability {rep['world']['event_p']} per boundary: half "
        "recolour to one of the 6 other colours, half a jump to a far position). The world enumerates every "
        "allowed continuation exactly.",
        "",
        "**Training.** Teacher: Wan DiT (dim "
        f"{rep['config']['dim']}, {rep['config']['num_heads']} heads of 128, "
        f"{rep['config']['num_layers']} layers) "
        "trained with flow matching, a share of its batches block-causally (`--teacher-causal-frac`, "
        f"{rep.get('teacher_causal_frac', 0.0)}; the rest bidirectional). Student: the same weights run causally "
        "through the KV cache, then "
        "Self-Forcing DMD with the confidence head trained jointly: target "
        f"`{rep['target']['name']}`, label `{rep['target']['label_kind']}` ({rep['target']['label']}). A second "
        f"head is calibrated head-only on the final student (label `{rep['calibration']['config']['label']}`). "
        "Ladder: Self-Forcing's 4 levels + 2 extended (s = 1, 0.9375, 0.833, 0.625, 0.417, 0.25).",
        "",
        "**Metrics** (`dsa_core/toy/evaluate.py`). `cond`: per chunk, MSE (RGB, [0, 1]) to the nearest "
        "continuation the world allows given the generated prefix, mean over the 4 chunks (lower is better). "
        "`realism`: per frame, MSE to the nearest frame the scene can show at all. `energy`: per prompt, the "
        "energy distance between its generated videos and the world's, averaged over prompts (catches a "
        "generator that never makes events). Event rate: fraction of chunks 2-4 whose nearest allowed "
        "continuation is an event (the world's rate is given beside it). NFE per chunk = steps + 1 cache "
        f"commit. {len(rep['eval']['prompts'])} prompts x {len(rep['eval']['seeds'])} seeds; per prompt half of "
        f"the seeds form the *selection* half, the other half ({n_held} videos) the *held-out* half on which "
        "every number below is measured; [low, high] = 95% bootstrap interval (pairs resampled; energy: "
        "prompts resampled). Each threshold run has a *matched-random control* (its own step counts shuffled "
        "across chunks); the verdict is a paired bootstrap of the cond difference.",
        "",
        "## Summary (held-out half)",
        "",
        "| key | value | definition |",
        "|---|---|---|",
    ]
    for k, doc in SUMMARY_DOC.items():
        v = sm.get(k)
        vs = f"{v:.3f}" if isinstance(v, float) else str(v)
        lines.append(f"| {k} | {vs} | {doc} |")
    lines.append(
        "| spearman_conf_vs_gain_per_step | "
        + ", ".join(f"k={k}: {v:.3f}" for k, v in sm["spearman_conf_vs_gain_per_step"].items())
        + " | |"
    )
    for name, c in rep.get("target_ceiling", {}).items():
        what = (
            "the same Spearman with the chunk's exact cond error after step k (negated) in place of the head's "
            "confidence: the ceiling of any estimate of how good the chunk already is"
            if name == "current_error"
            else "the same Spearman with the target's true distance (negated) in place of the head's confidence: "
            "the best a head trained on that target could score with this generator"
        )
        lines.append(
            f"| ceiling: {name} | {c['mean']:.3f} ("
            + ", ".join(f"k={k}: {v:.3f}" for k, v in c["per_step"].items())
            + f") | {what} |"
        )
    lines += [
        "",
        "## Table (held-out half)",
        "",
        "| sampler | NFE / chunk | cond error | energy distance | realism | event rate (world "
        f"{rep['world']['event_p']}) | steps event / continuation | steps by chunk 1/2/3/4 | cond by chunk 1/2/3/4 "
        "| vs random control |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        h = r["heldout"]
        ctl = h.get("vs_control")
        ctl_s = (
            f"{ctl['verdict']} ({ctl['diff'][0]:+.5f} [{ctl['diff'][1]:+.5f}, {ctl['diff'][2]:+.5f}])" if ctl else ""
        )
        if r["kind"] == "oracle":
            lines.append(
                f"| {r['name']} (upper bound) | {_ci(h['nfe_per_chunk'], 2)} | {_ci(h['cond'])} |" + " - |" * 6 + " |"
            )
            continue
        lines.append(
            f"| {r['name']} | {_ci(h['nfe_per_chunk'], 2)} | {_ci(h['cond'])} | {_ci(h['energy'], 4)} | "
            f"{_ci(h['realism'])} | {h['event_rate']:.2f} | {h['steps_event']:.2f} / "
            f"{h['steps_continuation']:.2f} | {' / '.join(f'{v:.2f}' for v in h['steps_by_chunk'])} | "
            f"{' / '.join(f'{v:.4f}' for v in h.get('cond_by_chunk', []))} | {ctl_s} |"
        )
    for k, b in rep.get("baselines", {}).items():
        lines.append(
            f"| reference: {k} | - | {b['cond']:.5f} | {b['energy']:.4f} | - | {b['event_rate']:.2f} | - | - | - | |"
        )
    by_kind = rep.get("step_cond_by_kind") or {}
    if by_kind:
        lines += [
            "",
            "## Where more steps help (fixed 6 steps, held-out half)",
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
            "## Reference: the same sampler with a perfect model (held-out half)",
            "",
            "`dsa_core/toy/exact_denoiser.py`: the world's exact denoiser E[x0 | x_s, prefix] (every allowed "
            "continuation enumerated with its probability) in place of the DiT, same ladder, noise draws and "
            f"{perfect['pairs']} pairs. Not a sampler of the product: it shows what the world and the ladder leave "
            "to allocate when the model is not the limit.",
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
    lines += [
        "",
        "## Presets on the shipped head (held-out half)",
        "",
        "| preset | threshold | NFE / chunk | cond error | steps event / continuation |",
        "|---|---|---|---|---|",
    ]
    for p in rep["presets"]:
        lines.append(
            f"| {p['preset']} | {p['threshold']} | {p['nfe_per_chunk']:.2f} | {p['cond']:.5f} | "
            f"{p['steps_event']:.2f} / {p['steps_continuation']:.2f} |"
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
