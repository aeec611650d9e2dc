"""The toy evaluation of the presets defined by cost and of the step budget, beside the threshold runs.

  python -m dsa_core.toy.evaluate_budget --model models/toy/dsa_toy_wan.safetensors --out results/toy_budget

On the same prompts, seeds and halves as evaluate.py (selection / held-out): the shipped head's presets resolved
from its calibration table (calibration.py), the budget policy (policies.BudgetPolicy) at several budgets, each
with its matched-random control (its own step counts shuffled across chunks, content ignored) and, at the same
NFE, the best per-chunk-index schedule of the same total steps chosen on the selection half, plus fixed 1..6 steps
for reference. Every number on the held-out half with 95 % bootstrap intervals (evaluate.row_stats).

``budget_rows`` is what evaluate.run_all calls (the reproduction then carries these rows too); ``main`` runs them
alone on a committed model, without retraining.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from ..policies import BudgetAllowance, BudgetPolicy, StepPolicy
from . import world as W
from .evaluate import (
    IndexSchedule,
    Row,
    confidence_policy,
    eval_scenes,
    evaluate_run,
    fixed_policy,
    row_stats,
    split_pairs,
)

BUDGETS = (1.5, 2.5, 4.0)  # the presets' costs: 50 / 70 / 100 % of fixed 4's NFE (steps + 1 per chunk)


class BatchedBudget(StepPolicy):
    """A BudgetPolicy for evaluate.batched_sample, which samples many videos at once: one allowance per video,
    each chunk run under the budget's own per-chunk policy (``for_chunk``), so the rule is sample_video's."""

    name = "budget"

    def __init__(self, budget: BudgetPolicy, ladder):
        self.budget, self.ladder = budget, ladder
        self.confidence_source = budget.confidence_source

    def max_steps(self, ladder) -> int:
        return self.budget.max_steps(ladder)

    def stop_rule(self, n_videos: int, n_chunks: int):
        """(video, chunk, steps done, confidence) -> stop?, with each video's allowance carried chunk to chunk.
        batched_sample does not ask at a chunk's last possible step, so a chunk that never stopped took max."""
        top = self.max_steps(self.ladder)
        allowance = [BudgetAllowance() for _ in range(n_videos)]
        current: dict = {}  # video -> (chunk, its policy, last steps asked, stopped)

        def rule(i, c, k, conf):
            cur = current.get(i)
            if cur is None or cur[0] != c:
                if cur is not None:
                    allowance[i] = self.budget.after_chunk(allowance[i], cur[2] if cur[3] else top)
                cur = (c, self.budget.for_chunk(self.ladder, allowance[i], n_chunks - c), k, False)
            pol = cur[1]
            stop = k >= pol.max_steps(self.ladder) or pol.decide(k, conf) is not None
            current[i] = (c, pol, k, stop)
            return stop

        return rule

    def to_dict(self):
        return self.budget.to_dict()


def budget_policy(b: float, head, ladder, max_steps: int = 6):
    table = getattr(head, "calibration", None)
    return lambda: BatchedBudget(BudgetPolicy(b, 1, max_steps, table=table), ladder)


def schedule_candidates(total: int, chunks: int, max_steps: int = 6) -> list:
    """Per-chunk-index schedules of exactly ``total`` steps, every chunk 1..max_steps: the first chunk (no context)
    given a different count than the rest ('a-r-r-r', as evaluate.py's candidates), and the most even
    non-increasing spread."""
    out = []
    for r in range(1, max_steps + 1):
        a = total - r * (chunks - 1)
        if r <= a <= max_steps:
            out.append([a] + [r] * (chunks - 1))
    q, extra = divmod(total, chunks)
    even = [q + 1] * extra + [q] * (chunks - extra)
    if 1 <= even[-1] and even[0] <= max_steps and even not in out:
        out.append(even)
    return out


def budget_rows(ev, halves: dict, head, budgets=BUDGETS, log=print) -> list:
    """Rows of the presets (from the head's calibration table) and of the budgets, with their controls and the
    equal-NFE index schedules (kind 'preset', 'budget', '*_random', 'budget_schedule')."""
    rows = []
    table = getattr(head, "calibration", None)
    if table is None:
        log("the head has no calibration table: no preset rows (python -m dsa_core.calibrate_presets)")
    for name, t in table.presets.items() if table is not None else []:
        label = f"preset {name} (thr {t:.4f})"
        r, _ = evaluate_run(
            ev, label, "preset", t, confidence_policy(t), halves, head=head, control=True, control_seed=31 + len(rows)
        )
        rows += r
        _log(log, r)
    for b in budgets:
        r, _ = evaluate_run(
            ev,
            f"budget {b:g}",
            "budget",
            b,
            budget_policy(b, head, ev.ladder, ev.max_steps),
            halves,
            head=head,
            control=True,
            control_seed=int(100 * b) + 5,
        )
        rows += r
        _log(log, r)
        rows.append(_schedule_row(ev, halves, b))
        _log(log, rows[-1:])
    return rows


def _schedule_row(ev, halves, b: float) -> Row:
    """The best index schedule with the budget's total steps per video, chosen on the selection half."""
    total = round(b * W.NUM_CHUNKS)
    best = None
    for sched in schedule_candidates(total, W.NUM_CHUNKS, ev.max_steps):
        name = f"index {'-'.join(map(str, sched))} (budget {b:g})"
        st = row_stats(ev, name, ev.run(name, IndexSchedule(sched), halves["selection"]))
        if best is None or st["cond"][0] < best[1]["cond"][0]:
            best = (sched, st)
    name = f"index {'-'.join(map(str, best[0]))} at budget {b:g} NFE (chosen on selection)"
    res = ev.run(name, IndexSchedule(best[0]), halves["heldout"])
    return Row(name, "budget_schedule", list(best[0]), row_stats(ev, name, res), best[1])


def _log(log, rows):
    for r in rows:
        h = r.heldout
        ctl = f" vs control {h['vs_control']['verdict']}" if "vs_control" in h else ""
        log(f"{r.name}: NFE {h['nfe_per_chunk'][0]:.2f} cond {h['cond'][0]:.5f} steps {h['steps_per_chunk']:.2f}{ctl}")


def _ci(t, digits=5):
    m, lo, hi = t
    return "-" if m != m else f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def render_readme(rep: dict) -> str:
    lines = [
        "# Toy presets by cost and the step budget (held-out half)",
        "",
        "Generated by",
        "",
        "```bash",
        rep["command"],
        "```",
        "",
        f"in {rep['seconds'] / 60:.1f} min on CPU. Same prompts, seeds and selection / held-out halves as "
        "results/toy_repro (`dsa_core/toy/evaluate.py`); every number on the held-out half "
        f"({rep['heldout_videos']} videos), [low, high] = 95% bootstrap interval over videos (energy: over prompts). "
        "Presets: the shipped head's calibration table (`python -m dsa_core.calibrate_presets`), defined by cost "
        "(fast / balanced / quality = 50 / 70 / 100 % of fixed 4's NFE). Budgets: `policy budget`, mean steps per "
        "chunk 1.5 / 2.5 / 4.0 (the same three costs). Each preset and budget run has a matched-random control (its "
        "own step counts shuffled across chunks); each budget has the best per-chunk-index schedule of the same total "
        "steps, chosen on the selection half. NFE per chunk = steps + 1 cache commit. `cond`: MSE to the nearest "
        "continuation the world allows (lower is better).",
        "",
        "![quality vs NFE](quality_vs_nfe.png)",
        "",
        "| sampler | NFE / chunk | mean steps | cond error | energy distance | event rate | steps event / "
        "continuation | steps by chunk 1/2/3/4 | vs random control |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rep["rows"]:
        h = r["heldout"]
        ctl = h.get("vs_control")
        ctl_s = f"{ctl['verdict']} ({_ci(ctl['diff'])})" if ctl else ""
        lines.append(
            f"| {r['name']} | {_ci(h['nfe_per_chunk'], 2)} | {h['steps_per_chunk']:.2f} | {_ci(h['cond'])} | "
            f"{_ci(h['energy'], 4)} | {h['event_rate']:.2f} | {h['steps_event']:.2f} / {h['steps_continuation']:.2f} "
            f"| {' / '.join(f'{v:.2f}' for v in h['steps_by_chunk'])} | {ctl_s} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from ..checkpoint import load_generator
    from ..confidence_head import load_head
    from .evaluate import Evaluator

    ap = argparse.ArgumentParser(prog="python -m dsa_core.toy.evaluate_budget", description=__doc__)
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", default="results/toy_budget")
    ap.add_argument("--eval-per-motion", type=int, default=2)
    ap.add_argument("--eval-seeds", type=int, default=16)
    ap.add_argument("--fixed", default="1,2,3,4,5,6", help="fixed step counts run for reference")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    t0 = time.time()
    dit = load_generator(a.model, dtype="fp32")
    head = load_head(a.model, expected_dim=dit.config.dim)
    scenes = eval_scenes(a.eval_per_motion)
    seeds = list(range(1000, 1000 + a.eval_seeds))
    ev = Evaluator(dit, scenes)
    halves = split_pairs(len(scenes), seeds)
    rows = []
    for k in (int(v) for v in a.fixed.split(",")):
        r, _ = evaluate_run(ev, f"fixed {k}", "fixed", k, fixed_policy(k), halves)
        rows += r
        _log(print, r)
    rows += budget_rows(ev, halves, head)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rep = {
        "command": "python -m dsa_core.toy.evaluate_budget " + " ".join(sys.argv[1:] if argv is None else argv),
        "seconds": time.time() - t0,
        "heldout_videos": len(halves["heldout"]),
        "calibration": head.calibration.to_dict() if head.calibration is not None else None,
        "rows": [r.to_dict() for r in rows],
        "halves": {k: [list(p) for p in v] for k, v in halves.items()},
    }
    (out / "results.json").write_text(json.dumps(rep, indent=1))
    from .plot import quality_vs_nfe
    from .reproduce import write_readme

    quality_vs_nfe(rep["rows"], title="toy presets by cost and step budget: held-out half, 95% bootstrap CIs").save(
        out / "quality_vs_nfe.png"
    )
    write_readme(out / "README.md", render_readme(rep))  # a hand-written reading below HAND_MARK is kept
    print(f"wrote {out / 'results.json'} and {out / 'README.md'} ({rep['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
