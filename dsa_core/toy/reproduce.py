"""Toy-scale reproduction of DSA's claim (quality vs NFE, fixed steps vs confidence-allocated steps),
on a CPU in about 25 minutes (2 threads). Everything is this project's reconstruction at toy scale.

  python -m dsa_core.toy.reproduce --out results/toy_repro --save-model models/toy

Stages (each prints a progress bar; ``--work DIR`` keeps intermediate weights so a rerun can skip stages
with ``--reuse``):
 1. teacher: a bidirectional Wan DiT (toy size, config TOY_CONFIG) trained with flow matching on the toy
    world's code-made videos (teacher.py);
 2. ODE warm start of the causal student from the teacher's Euler ODE samples (ode_init.py);
 3. joint Self-Forcing DMD + confidence head (training/dmd.py; target 'teacher_residual' with rank
    labels, ``--target dmd_grad`` for the literal DMD-gradient target), data-free: the student only sees
    prompts;
 4. evaluation on a fixed stratified prompt set (2 prompts per motion) x seeds, for fixed 1..6 steps and a
    sweep of confidence thresholds, each threshold with a matched-random control (the same step counts
    shuffled across chunks), plus the teacher's samples for scale (evaluate.py; main metric: energy
    distance to the prompt's real videos, lower is better; nearest-real-video MSE/PSNR reported beside it);
 5. outputs: ``quality_vs_nfe.png``, ``results.json`` and ``README.md`` (table, command, automatic
    observations) in --out; with --save-model, the student + head as ``dsa_toy_wan.safetensors`` (bf16
    generator, float32 head) and the demo prompt embeddings under ``prompts/``.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from ..checkpoint import load_generator, save_generator
from ..confidence_head import ConfidenceHead, HeadConfig
from ..training.calibrate import CalibConfig, HeadCalibrator
from ..training.dmd import DMDConfig, DMDTrainer
from ..training.export import save_generator_with_head
from ..training.targets import TARGET_NAMES
from . import world as W
from .evaluate import eval_scenes, sweep, trivial_baselines
from .ode_init import ode_regression, teacher_trajectories
from .plot import quality_vs_nfe
from .prompts import ToyPrompts, write_demo_prompts
from .teacher import TOY_CONFIG, TeacherConfig, teacher_sample, teacher_sample_renoise, train_teacher

DEFAULTS = dict(teacher_steps=6000, ode_videos=256, ode_steps=0, dmd_steps=600, calib_rollouts=12, calib_epochs=60,
                eval_per_motion=2, eval_seeds=4)


def build_parser():
    ap = argparse.ArgumentParser(prog="python -m dsa_core.toy.reproduce", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="results/toy_repro")
    ap.add_argument("--work", default=None, help="folder for intermediate weights (default: <tmp>/dsa_toy_work)")
    ap.add_argument("--reuse", action="store_true", help="skip stages whose weights exist in --work")
    ap.add_argument("--save-model", default=None, help="folder to write dsa_toy_wan.safetensors and prompts/ into")
    ap.add_argument("--teacher-steps", type=int, default=DEFAULTS["teacher_steps"])
    ap.add_argument("--teacher-lr", type=float, default=1e-3)
    ap.add_argument("--ode-videos", type=int, default=DEFAULTS["ode_videos"])
    ap.add_argument("--ode-steps", type=int, default=DEFAULTS["ode_steps"])
    ap.add_argument("--dmd-steps", type=int, default=DEFAULTS["dmd_steps"])
    ap.add_argument("--calib-rollouts", type=int, default=DEFAULTS["calib_rollouts"])
    ap.add_argument("--calib-epochs", type=int, default=DEFAULTS["calib_epochs"])
    ap.add_argument("--target", choices=TARGET_NAMES, default="teacher_residual",
                    help="the jointly trained head's target (dsa_core/training/targets.py)")
    ap.add_argument("--model-head", choices=("calibrated", "joint"), default="joint",
                    help="which head goes into the saved toy model")
    ap.add_argument("--ship-median-label", type=float, default=0.75,
                    help="with --model-head calibrated: the shipped head labels a median x0 disagreement this "
                         "high, so the 'balanced' preset (0.75) falls inside its range; evaluated as 'DSA-ship'")
    ap.add_argument("--gen-every", type=int, default=3)
    ap.add_argument("--gen-lr", type=float, default=3e-5)
    ap.add_argument("--critic-lr", type=float, default=6e-5)
    ap.add_argument("--eval-per-motion", type=int, default=DEFAULTS["eval_per_motion"])
    ap.add_argument("--eval-seeds", type=int, default=DEFAULTS["eval_seeds"])
    ap.add_argument("--thresholds", default="0.2,0.3,0.4,0.5,0.6,0.7,0.75,0.8,0.9")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-progress", action="store_true")
    return ap


def command_line(argv) -> str:
    """The command that reproduces this run from scratch (--reuse and --work only skip identical stages)."""
    out, skip = [], False
    for v in argv:
        if skip:
            skip = False
        elif v == "--reuse" or v.startswith("--work="):
            continue
        elif v == "--work":
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
        teacher_cfg = TeacherConfig(steps=a.teacher_steps, lr=a.teacher_lr, seed=a.seed)
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

    # 2. ODE warm start of the causal student
    t0 = time.time()
    cfg = DMDConfig(num_frames=W.NUM_FRAMES, chunk_frames=W.CHUNK_FRAMES, latent_h=W.LATENT_H, latent_w=W.LATENT_W,
                    batch=4, max_steps=6, gen_every=a.gen_every, gen_lr=a.gen_lr, critic_lr=a.critic_lr,
                    target=a.target, seed=a.seed)
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
    cal = HeadCalibrator(student, CalibConfig(num_frames=W.NUM_FRAMES, chunk_frames=W.CHUNK_FRAMES,
                                              latent_h=W.LATENT_H, latent_w=W.LATENT_W, batch=4,
                                              rollouts=a.calib_rollouts, max_steps=6, epochs=a.calib_epochs,
                                              hidden_dim=128, seed=a.seed), ToyPrompts())
    cal.train(show_progress=show)
    cal_head = cal.head.eval().requires_grad_(False)
    use_cal = a.model_head == "calibrated"
    ship = ship_head = None
    if use_cal:
        ship = HeadCalibrator(student, CalibConfig(**{**cal.cfg.to_dict(), "median_label": a.ship_median_label}),
                              ToyPrompts())
        ship.data, ship.scale = cal.data, cal.scale  # same rollouts, labels with a different temperature
        ship.train(show_progress=show)
        ship_head = ship.head.eval().requires_grad_(False)
    student.eval().requires_grad_(False)
    timings["calibration_s"] = time.time() - t0

    # 4. evaluation
    t0 = time.time()
    scenes = eval_scenes(a.eval_per_motion)
    seeds = list(range(1000, 1000 + a.eval_seeds))
    thresholds = tuple(float(v) for v in a.thresholds.split(","))
    results = sweep(student, head, scenes, seeds, thresholds=thresholds, show_progress=show, matched_random=True)
    results += sweep(student, cal_head, scenes, seeds, fixed_steps=(), thresholds=thresholds, show_progress=show,
                     kind_name="calibrated", matched_random=True)
    if ship_head is not None:
        results += sweep(student, ship_head, scenes, seeds, fixed_steps=(), thresholds=thresholds,
                         show_progress=show, kind_name="shipped")
    ctx = torch.stack([W.prompt_embedding(s) for s in scenes])
    fitter = W.SceneFitter()
    teacher_rows = {}
    teacher_samplers = (("re-noising 8 steps", teacher_sample_renoise, 8), ("Euler ODE 24 steps", teacher_sample, 24))
    for label, fn, nfe in teacher_samplers:
        t_err, per_seed = [], []
        for sd in seeds:
            xs = fn(teacher, ctx, steps=nfe, seed=sd)
            per_seed.append(xs)
            t_err += [fitter.fit_error(s, xs[i]) for i, s in enumerate(scenes)]
        mse = sum(t_err) / len(t_err)
        energy = sum(fitter.energy_distance(s, torch.stack([xs[i] for xs in per_seed])) for i, s in enumerate(scenes))
        teacher_rows[label] = {"mse": mse, "psnr": 10 * math.log10(1 / mse), "nfe": nfe, "energy": energy / len(scenes)}
    best_name = min(teacher_rows, key=lambda k: teacher_rows[k]["energy"])
    best_teacher = teacher_rows[best_name]
    baselines = trivial_baselines(scenes)
    timings["eval_s"] = time.time() - t0
    timings["total_s"] = sum(v for k, v in timings.items() if k.endswith("_s"))
    timings["reused_from_work"] = reused

    # 5. outputs
    res = [r.to_dict() for r in results]
    report = {"command": command_line(argv), "timings": timings, "teacher": best_teacher, "teachers": teacher_rows,
              "baselines": baselines, "config": json.loads(TOY_CONFIG.to_json()),
              "results": res, "dmd_config": cfg.to_dict(), "target": trainer.target.to_dict(),
              "calibration": {"config": cal.cfg.to_dict(), "tau": cal.tau, "shipped_tau": ship.tau if ship else None,
                              "shipped_median_label": a.ship_median_label if ship else None},
              "shipped_head": a.model_head,
              "losses": {"teacher_first_last": _first_last(teacher_losses), "ode_first_last": _first_last(ode_losses),
                         "critic_first_last": _first_last(trainer.history["critic_loss"]),
                         "head_first_last": _first_last(trainer.history["head_loss"]),
                         "gen_first_last": _first_last(trainer.history["gen_loss"]),
                         "calibration_first_last": _first_last(cal.history["head_loss"]),
                         "head_excess_first_last": _first_last(trainer.history["head_excess"]),
                         "shipped_calibration_first_last": _first_last(ship.history["head_loss"]) if ship else None},
              "eval": {"prompts": [s.prompt for s in scenes], "seeds": seeds},
              "platform": {"torch": torch.__version__, "python": platform.python_version(), "threads": a.threads}}
    (out / "results.json").write_text(json.dumps(report, indent=1))
    img = quality_vs_nfe(res, best_teacher["energy"], best_teacher["nfe"], target=trainer.target.name,
                         reference={k: v["energy"] for k, v in baselines.items() if k != "background only"},
                         teacher_label=best_name,
                         title=f"toy DSA reproduction: {len(scenes)} prompts x {len(seeds)} seeds, "
                               "3 chunks of 3 latent frames")
    img.save(out / "quality_vs_nfe.png")
    write_readme(out / "README.md", render_readme(report))
    if a.save_model:
        md = Path(a.save_model)
        md.mkdir(parents=True, exist_ok=True)
        meta = {"dsa.training": "toy reproduction: flow-matching teacher -> joint DMD + head "
                                f"({trainer.target.name}) -> "
                                + ("head-only calibration (x0_agreement) of the shipped head" if use_cal else
                                   "shipped head = the jointly trained one") + " (reconstruction)",
                "dsa.command": report["command"], "dsa.head": a.model_head,
                "dsa.target": "x0_agreement" if use_cal else trainer.target.name,
                "dsa.target_label": "exp2" if use_cal else trainer.target.label_name,
                "dsa.target_tau": f"{(ship.tau if use_cal else trainer.target.scale.tau):.6g}",
                "dsa.toy.latent_hw": f"{W.LATENT_H}x{W.LATENT_W}", "dsa.toy.num_frames": str(W.NUM_FRAMES),
                "dsa.toy.chunk_frames": str(W.CHUNK_FRAMES), "dsa.toy.max_steps": "6"}
        save_generator_with_head(student, ship_head if use_cal else head, md / "dsa_toy_wan.safetensors", "bf16", meta)
        write_demo_prompts(md / "prompts")
        print(f"wrote {md / 'dsa_toy_wan.safetensors'} and {md / 'prompts'}")
    print(f"wrote {out / 'quality_vs_nfe.png'}, {out / 'README.md'} ({timings['total_s']:.0f} s)")
    return 0


HAND_MARK = "<!-- hand-written below: kept when the script rewrites this file -->"


def write_readme(path: Path, text: str) -> None:
    """Write the generated part, keeping any hand-written reading after HAND_MARK."""
    keep = ""
    if path.is_file():
        old = path.read_text()
        if HAND_MARK in old:
            keep = old[old.index(HAND_MARK):]
    path.write_text(text + ("\n" + keep if keep else ""))


def _first_last(v, k=20):
    if not v:
        return None
    k = min(k, max(1, len(v) // 4))
    return [sum(v[:k]) / k, sum(v[-k:]) / k]


def render_readme(rep: dict) -> str:
    res = rep["results"]
    fixed = {int(r["value"]): r for r in res if r["kind"] == "fixed"}
    conf = [r for r in res if r["kind"] in ("confidence", "calibrated", "shipped")]
    lines = ["# Toy-scale DSA reproduction: quality vs NFE", "",
             "Generated by", "", "```bash", rep["command"], "```", "",
             f"on CPU ({rep['platform']['threads']} thread(s), torch {rep['platform']['torch']}) in "
             f"{rep['timings']['total_s'] / 60:.1f} min (teacher {rep['timings']['teacher_s']:.0f} s, ODE warm start "
             f"{rep['timings']['ode_init_s']:.0f} s, DMD + head {rep['timings']['dmd_s']:.0f} s, head calibration "
             f"{rep['timings']['calibration_s']:.0f} s, evaluation "
             f"{rep['timings']['eval_s']:.0f} s"
             + (f"; stages {', '.join(k[:-2] for k in rep['timings'].get('reused_from_work', []))} were reused from "
                "--work, their times are those of the run that made them"
                if rep["timings"].get("reused_from_work") else "")
             + "). Everything here is this project's reconstruction at toy scale "
             "(the paper publishes only its abstract); see `dsa_core/toy/` and `dsa_core/training/`.", "",
             "![quality vs NFE](quality_vs_nfe.png)", "",
             "**Setup.** Synthetic world (`dsa_core/toy/world.py`): one square or disc, 7 colours, 2 backgrounds, 11 "
             "motions (still, drifting x4, fast x4, bouncing, appearing), 8x8 latent pixels x 9 latent frames = 3 "
             "chunks of 3, a fixed linear 3->16 channel toy codec. Teacher: bidirectional Wan DiT (dim "
             f"{rep['config']['dim']}, {rep['config']['num_heads']} heads of 128, "
             f"{rep['config']['num_layers']} layers) "
             "trained with flow matching on the code-made videos. Student: the same architecture run "
             "causally through the KV cache, initialised from the teacher (the optional ODE warm start is off by "
             "default), then Self-Forcing DMD with the confidence head trained jointly (target "
             f"`{rep['target']['name']}`, label `{rep['target'].get('label_kind', 'exp2')}`: {rep['target']['label']}; "
             f"read at the fixed re-noising level {rep['dmd_config'].get('head_sigma')}). A second head is calibrated "
             "head-only on the final student (target `x0_agreement`, the recipe for public checkpoints); both are "
             "evaluated on the same generator. Ladder: Self-Forcing's 4 levels + 2 extended "
             "(s = 1, 0.9375, 0.833, 0.625, 0.417, 0.25); fixed 5 and 6 use the extended levels.", "",
             "**Metrics.** Main: the *energy distance* between the videos generated for a prompt (one per seed) and "
             "every clean video the prompt allows (all start positions, bounce directions and appearing frames "
             "enumerated exactly), averaged over prompts; lower is better, 0 = the same distribution; it penalises "
             "blur, mode collapse and off-prompt videos (`world.SceneFitter.energy_distance`). Beside it: the mean "
             "squared RGB error of each video to its *nearest* allowed video, and its PSNR; this one rewards blur "
             "(a blurred hedge sits close to every real video), so it is never read alone. NFE per chunk = denoising "
             "steps + the t = 0 cache-commit pass. Not a distance to the teacher's sample from the same noise "
             "(a stochastic AR sampler and an ODE sampler give different valid videos). Each threshold run whose "
             "chunks did not all stop at the same step is followed by its *random control*: the same per-chunk "
             "step counts shuffled across chunks, content ignored.", "",
             f"Evaluation: {len(rep['eval']['prompts'])} prompts (2 per motion) x seeds {rep['eval']['seeds']}.", "",
             "| sampler | NFE / chunk | steps / chunk | energy distance (lower is better) | nearest-video MSE | "
             "PSNR (dB) | chunks stopping after 1/2/3/4/5/6 steps | mean steps chunk 0 / 1 / 2 |",
             "|---|---|---|---|---|---|---|---|"]
    for r in res:
        hist = "/".join(str(r["steps_hist"].get(str(k), r["steps_hist"].get(k, 0))) for k in range(1, 7))
        bc = " / ".join(f"{v:.2f}" for v in r["steps_by_chunk"])
        lines.append(f"| {r['name']} | {r['nfe_per_chunk']:.2f} | {r['steps_per_chunk']:.2f} | {r['energy']:.4f} | "
                     f"{r['mse']:.5f} | {r['psnr']:.2f} | {hist} | {bc} |")
    for name, t in rep["teachers"].items():
        lines.append(f"| teacher, bidirectional, {name} | {t['nfe']} (whole video) | - | {t['energy']:.4f} | "
                     f"{t['mse']:.5f} | "
                     f"{t['psnr']:.2f} | - | - |")
    for k, b in rep.get("baselines", {}).items():
        kind = "data" if k == "real videos" else "no model"
        lines.append(f"| reference ({kind}): {k} | 0 | - | {b['energy']:.4f} | {b['mse']:.5f} | "
                     f"{min(b['psnr'], 99):.2f} | - | - |")
    lines += ["", "## Automatic observations", ""]
    real = rep.get("baselines", {}).get("real videos")
    floor = max(abs(real["energy"]), 0.002) if real else None
    lines += observations(fixed, conf, floor)
    lines += control_observations(res, floor)
    lines += ["", "Steps per chunk by motion at each threshold (where the confidence policy spends its steps):", "",
              "| threshold | " + " | ".join(W.MOTIONS) + " |", "|---|" + "---|" * len(W.MOTIONS)]
    for r in conf:
        lines.append(f"| {r['name']} | " + " | ".join(f"{r['steps_by_motion'].get(m, float('nan')):.2f}"
                                                   for m in W.MOTIONS) + " |")
    lo = rep["losses"]
    lines += ["", "Training losses (mean of first / last iterations): "
              + ", ".join(f"{k.replace('_first_last', '')} {v[0]:.4f} -> {v[1]:.4f}" for k, v in lo.items() if v), ""]
    return "\n".join(lines) + "\n"


def control_observations(res: list, noise_floor: float | None) -> list[str]:
    """Each confidence run against its matched-random control (same step histogram, content ignored)."""
    by_name = {r["name"]: r for r in res}
    out, wins, losses, ties = [], 0, 0, 0
    for r in res:
        c = by_name.get(r["name"] + " random control")
        if c is None:
            continue
        tol = noise_floor if noise_floor is not None else 0.02 * abs(c["energy"])
        if r["energy"] < c["energy"] - tol:
            wins += 1
        elif r["energy"] > c["energy"] + tol:
            losses += 1
        else:
            ties += 1
        out.append(f"- {r['name']} vs its random control (NFE {r['nfe_per_chunk']:.2f} / {c['nfe_per_chunk']:.2f}): "
                   f"energy {r['energy']:.4f} vs {c['energy']:.4f}.")
    if out:
        out.insert(0, f"- Against matched-random controls (the run's own per-chunk step counts shuffled across "
                      f"chunks, content ignored): {wins} better, {ties} within noise ({noise_floor:.4f}), "
                      f"{losses} worse.")
    return out


def observations(fixed: dict, conf: list, noise_floor: float | None = None) -> list[str]:
    """Plain statements from the numbers; differences within ``noise_floor`` (|energy of real videos|, the
    sampling noise at this many videos per prompt) are called noise."""
    out = []
    if 4 in fixed:
        f4 = fixed[4]
        better = [r for r in conf if r["energy"] <= f4["energy"]]
        if better:
            best = min(better, key=lambda r: r["nfe_per_chunk"])
            ratio = f4["nfe_per_chunk"] / best["nfe_per_chunk"]
            out.append(f"- The cheapest confidence run at least as good as fixed 4 steps (energy {f4['energy']:.4f}, "
                       f"NFE {f4['nfe_per_chunk']:.2f}) is {best['name']}: energy {best['energy']:.4f} at NFE "
                       f"{best['nfe_per_chunk']:.2f} ({ratio:.2f}x fewer forwards).")
        else:
            out.append(f"- No threshold reached the quality of fixed 4 steps (energy {f4['energy']:.4f}).")
    for r in conf:
        # compare with the fixed curve interpolated at the same NFE
        ks = sorted(fixed)
        x = r["nfe_per_chunk"]
        lo = max([k for k in ks if fixed[k]["nfe_per_chunk"] <= x], default=None)
        hi = min([k for k in ks if fixed[k]["nfe_per_chunk"] >= x], default=None)
        if lo is None or hi is None:
            continue
        if lo == hi:
            ref = fixed[lo]["energy"]
        else:
            a, b = fixed[lo], fixed[hi]
            w = (x - a["nfe_per_chunk"]) / (b["nfe_per_chunk"] - a["nfe_per_chunk"])
            ref = a["energy"] + w * (b["energy"] - a["energy"])
        tol = noise_floor if noise_floor is not None else 0.02 * abs(ref)
        verdict = ("better than" if r["energy"] < ref - tol else "worse than" if r["energy"] > ref + tol
                   else "within noise of")
        out.append(f"- {r['name']}: NFE {x:.2f}, energy {r['energy']:.4f}, {verdict} the fixed-step curve at "
                   f"the same NFE (interpolated {ref:.4f}).")
    return out


if __name__ == "__main__":
    sys.exit(main())
