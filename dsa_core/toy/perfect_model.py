"""The perfect-model bound: what DSA's allocation buys in the toy world when the model is not the limit.

The world's exact denoiser (exact_denoiser.ExactWorldModel) runs through the product's sampler
(ar_sampler.denoise_chunk: ladder, SeededNoise, re-noising) and the product's step policies
(ConfidencePolicy on the posterior's top weight, HeuristicPolicy on the x0 change, FixedSteps), scored by
validity (world.ChunkScore.valid). Compared at equal NFE with everything a content-free allocator could do:
matched-random controls (the run's own step counts shuffled across chunks), the best per-chunk-position
schedule and the best *motion-aware* schedule (steps by the chunk's kind read from the context: first /
event due / continuation; the strongest simple baseline), both chosen on the selection half.

Why one trajectory per chunk is enough: a chunk's x0_hat after step k does not depend on how many steps
it will take, and the exact model reads only the fitted state of the last committed frame. So each
(prompt, seed, chunk, prefix state) is denoised ONCE for max_steps steps (product sampler, memoised) and
any policy is a choice of the step to stop at; ``PerfectModelRuns.run`` replays a policy's decisions on
those trajectories (tested equal to running the policy in the product sampler directly).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product

import torch

from ..ar_sampler import denoise_chunk, prepare_state
from ..noise import SeededNoise
from ..policies import ConfidencePolicy, FixedSteps, HeuristicPolicy, heuristic_confidence
from . import world as W
from .exact_denoiser import ExactWorldModel, PosteriorTopWeight
from .stats import bootstrap_ci, paired_diff_ci

NONINFERIOR_MARGIN = 0.05  # a run "reaches fixed 4's validity" when (run - fixed 4) valid share's CI low >= -this
THRESHOLDS = (0.5, 0.75, 0.9, 0.99)
HEURISTIC_THRESHOLDS = (0.9, 0.95, 0.98, 0.99, 0.995)


@dataclass
class StepOutcome:
    """Chunk after stopping at one step: its score and the state the next chunk starts from."""

    valid: bool
    cond: float
    next_state: W.State
    destination: int


@dataclass
class Trajectory:
    """One chunk denoised for max_steps steps: per step the top-weight confidence, the heuristic
    confidence (None after step 1) and the outcome of stopping there."""

    kind: str
    conf: list
    heur: list
    outcomes: list


@dataclass
class VideoRun:
    prompt: int
    seed: int
    steps: list
    kinds: list
    valid: list
    cond: list
    destinations: list = field(default_factory=list)

    @property
    def video_valid(self) -> bool:
        return all(self.valid)

    @property
    def nfe(self) -> float:
        return sum(s + 1 for s in self.steps) / len(self.steps)


class PerfectModelRuns:
    """Memoised chunk trajectories of the exact model in the product sampler, and policy replays on them."""

    def __init__(self, scenes: list, ladder, max_steps: int = 6):
        self.scenes, self.ladder, self.max_steps = scenes, ladder, max_steps
        self.fitter = W.SceneFitter()
        self.models = {}
        self._memo: dict = {}

    def model(self, p: int) -> ExactWorldModel:
        if p not in self.models:
            self.models[p] = ExactWorldModel(self.scenes[p], self.fitter)
        return self.models[p]

    def trajectory(self, p: int, seed: int, chunk: int, prev: W.State | None) -> Trajectory:
        key = (p, seed, chunk, prev)
        if key not in self._memo:
            with torch.no_grad():
                self._memo[key] = self._trajectory(p, seed, chunk, prev)
        return self._memo[key]

    def _trajectory(self, p: int, seed: int, chunk: int, prev: W.State | None) -> Trajectory:
        m, scene, f = self.model(p), self.scenes[p], W.CHUNK_FRAMES
        fs = chunk * f
        work, _ = prepare_state(
            m,
            m.encode_text(batch=1),
            num_frames=fs + f,
            latent_h=W.LATENT_H,
            latent_w=W.LATENT_W,
            chunk_frames=f,
            noise=SeededNoise(seed),
            dtype=torch.float32,
        )
        # the video the chunk is scored in: [the prefix's last frame (in a chunk of its own), the chunk]
        short = 0 if prev is None else 1
        prefix = torch.zeros(W.LATENT_CHANNELS, (short + 1) * f, W.LATENT_H, W.LATENT_W)
        if prev is not None:  # the only thing of the past the exact model (and the metric) reads
            last = W.encode_rgb(W.render_states(scene, [[prev.iy * W.NPOS + prev.ix]], [[prev.colour]]))[0]
            prefix[:, f - 1 : f] = last
            work.cache.frames[:, :, fs - 1 : fs] = last
            work.cache.frames_written = fs
            work.cache.fitted[(0, fs - 1)] = prev
        steps = []
        denoise_chunk(
            m,
            work,
            self.ladder,
            FixedSteps(self.max_steps),
            head=PosteriorTopWeight(),
            callback=lambda info: steps.append((info.x0[0].clone(), float(info.confidence.amin()))),
        )
        conf, heur, outcomes, x_prev = [], [], [], None
        for x0, c in steps:
            conf.append(c)
            h = heuristic_confidence(x_prev, x0[None])
            heur.append(None if h is None else float(h.amin()))
            x_prev = x0[None]
            v = prefix.clone()
            v[:, short * f :] = x0
            sc = self.fitter.chunk_scores(scene, v, chunks=[short])[0]
            last_rgb = W.latent_to_rgb_small(x0[None, :, -1:])[0, 0]
            outcomes.append(
                StepOutcome(sc.valid, sc.conditional, self.fitter.fit_state(scene, last_rgb)[0], sc.destination)
            )
        return Trajectory(W.context_kind(scene, prev), conf, heur, outcomes)

    def run(self, p: int, seed: int, stop) -> VideoRun:
        """``stop(chunk, trajectory) -> steps`` (1..max_steps) per chunk, chunk by chunk."""
        r = VideoRun(p, seed, [], [], [], [])
        prev = None
        for c in range(W.NUM_CHUNKS):
            t = self.trajectory(p, seed, c, prev)
            k = int(stop(c, t))
            o = t.outcomes[k - 1]
            r.steps.append(k)
            r.kinds.append(t.kind)
            r.valid.append(o.valid)
            r.cond.append(o.cond)
            r.destinations.append(o.destination)
            prev = o.next_state
        return r

    def runs(self, pairs: list, stop) -> list:
        return [self.run(p, s, stop) for p, s in pairs]


# ---- stop rules: the product's policies (and content-free schedules) on a trajectory ----------------
def policy_stop(policy, signal: str):
    """The step at which ``policy`` (a product StepPolicy) stops, fed the trajectory's ``signal``
    ('conf': the posterior top weight, 'heur': the heuristic)."""
    cap = policy.max_steps_

    def stop(c, t):
        vals = t.conf if signal == "conf" else t.heur
        for k in range(1, cap + 1):
            if policy.decide(k, vals[k - 1]) is not None:
                return k
        return cap

    return stop


def confidence_stop(threshold: float, max_steps: int = 6):
    return policy_stop(ConfidencePolicy(threshold, max_steps=max_steps), "conf")


def heuristic_stop(threshold: float, max_steps: int = 6):
    return policy_stop(HeuristicPolicy(threshold, max_steps=max_steps), "heur")


def fixed_stop(k: int):
    return lambda c, t: k


def position_stop(schedule):
    return lambda c, t: schedule[min(c, len(schedule) - 1)]


def motion_stop(first: int, event: int, continuation: int):
    steps = {"first": first, "event": event, "continuation": continuation}
    return lambda c, t: steps[t.kind]


def random_stop(counts: list, seed: int):
    """Matched-random control: ``counts`` (the run's step counts, one per chunk in order) shuffled."""
    g = torch.Generator().manual_seed(seed)
    queue = [counts[int(i)] for i in torch.randperm(len(counts), generator=g)]
    it = iter(queue)
    return lambda c, t: next(it)


# ---- rows and the summary -------------------------------------------------------------------------
def row(name: str, runs: list, **extra) -> dict:
    valid = [float(r.video_valid) for r in runs]
    later = [(k, s) for r in runs for k, s in zip(r.kinds[1:], r.steps[1:])]
    by_kind = {}
    for kind in W.CHUNK_KINDS:
        v = [float(ok) for r in runs for k, ok in zip(r.kinds, r.valid) if k == kind]
        st = [s for r in runs for k, s in zip(r.kinds, r.steps) if k == kind]
        by_kind[kind] = {
            "n": len(v),
            "valid": bootstrap_ci(v) if v else None,
            "steps": sum(st) / len(st) if st else float("nan"),
        }
    ev = [s for k, s in later if k == "event"]
    co = [s for k, s in later if k == "continuation"]
    return {
        "name": name,
        "valid": bootstrap_ci(valid),
        "nfe_per_chunk": bootstrap_ci([r.nfe for r in runs]),
        "cond": bootstrap_ci([sum(r.cond) / len(r.cond) for r in runs]),
        "by_kind": by_kind,
        "event_minus_continuation_steps": (sum(ev) / len(ev) - sum(co) / len(co)) if ev and co else float("nan"),
        "per_pair_valid": valid,
        **extra,
    }


def _best_schedule(pm: PerfectModelRuns, halves: dict, candidates: list, make, budget: float):
    """The candidate with the best selection-half valid share among those whose selection NFE <= budget."""
    best = None
    for cand in candidates:
        runs = pm.runs(halves["selection"], make(*cand))
        nfe = sum(r.nfe for r in runs) / len(runs)
        if nfe > budget + 1e-9:
            continue
        v = sum(r.video_valid for r in runs) / len(runs)
        if best is None or (v, -nfe) > (best[1], -best[2]):
            best = (cand, v, nfe)
    return best


def evaluate(
    scenes: list,
    halves: dict,
    ladder,
    max_steps: int = 6,
    thresholds=THRESHOLDS,
    heuristic_thresholds=HEURISTIC_THRESHOLDS,
    log=print,
) -> dict:  # noqa: E501
    """Every run on both halves; numbers on the held-out half. Returns {'rows', 'summary', ...}."""
    pm = PerfectModelRuns(scenes, ladder, max_steps)
    held, sel = halves["heldout"], halves["selection"]
    rows = []
    fixed = {}
    for k in range(1, max_steps + 1):
        fixed[k] = pm.runs(held, fixed_stop(k))
        rows.append(row(f"fixed {k}", fixed[k], kind="fixed", value=k))
    f4 = rows[3]
    f4_nfe = f4["nfe_per_chunk"][0]
    conf_rows = []
    for i, t in enumerate(thresholds):
        runs = pm.runs(held, confidence_stop(t, max_steps))
        counts = [s for r in runs for s in r.steps]
        ctrl = pm.runs(held, random_stop(counts, seed=100 + i))
        r = row(f"confidence {t}", runs, kind="confidence", value=t)
        c = row(f"confidence {t} random control", ctrl, kind="confidence_random", value=t, control_of=r["name"])
        r["vs_control"] = paired_diff_ci(r["per_pair_valid"], c["per_pair_valid"])
        r["vs_fixed4"] = paired_diff_ci(r["per_pair_valid"], f4["per_pair_valid"])
        rows += [r, c]
        conf_rows.append(r)
        log(f"perfect model: threshold {t}: valid {r['valid'][0]:.3f} NFE {r['nfe_per_chunk'][0]:.2f}")
    heur_rows = []
    for t in heuristic_thresholds:
        r = row(f"heuristic {t}", pm.runs(held, heuristic_stop(t, max_steps)), kind="heuristic", value=t)
        r["vs_fixed4"] = paired_diff_ci(r["per_pair_valid"], f4["per_pair_valid"])
        rows.append(r)
        heur_rows.append(r)

    def reaches(r):
        return r["vs_fixed4"][1] >= -NONINFERIOR_MARGIN

    ok = [r for r in conf_rows if reaches(r)]
    chosen = min(ok, key=lambda r: r["nfe_per_chunk"][0]) if ok else max(conf_rows, key=lambda r: r["valid"][0])
    heur_ok = [r for r in heur_rows if reaches(r)]
    heur_best = min(heur_ok, key=lambda r: r["nfe_per_chunk"][0]) if heur_ok else None

    # content-free schedules at the chosen run's NFE, chosen on the selection half
    sel_nfe = sum(r.nfe for r in pm.runs(sel, confidence_stop(chosen["value"], max_steps))) / len(sel)
    steps = range(1, max_steps + 1)
    pos = _best_schedule(pm, halves, list(product(steps, repeat=W.NUM_CHUNKS)), lambda *s: position_stop(s), sel_nfe)
    mot = _best_schedule(pm, halves, list(product(steps, repeat=3)), motion_stop, sel_nfe)
    baselines = {}
    for name, best, make in (("position", pos, lambda *s: position_stop(s)), ("motion", mot, motion_stop)):
        if best is None:
            baselines[name] = None
            continue
        r = row(f"{name} schedule {'-'.join(map(str, best[0]))} (chosen on selection)", pm.runs(held, make(*best[0])))
        r.update(kind=f"{name}_schedule", value=list(best[0]))
        r["chosen_vs"] = paired_diff_ci(chosen["per_pair_valid"], r["per_pair_valid"])
        rows.append(r)
        baselines[name] = r
    log(f"perfect model: chosen threshold {chosen['value']}, schedules {pos and pos[0]} / {mot and mot[0]}")

    def beats(b):
        return bool(b is not None and chosen["valid"][0] - b["valid"][0] >= 0.05) if b is not None else True

    summary = {
        "label": "perfect model (the world's exact denoiser + its posterior top weight), not a learned model",
        "threshold": chosen["value"],
        "nfe_ratio": chosen["nfe_per_chunk"][0] / f4_nfe,
        "valid": chosen["valid"],
        "nfe_per_chunk": chosen["nfe_per_chunk"],
        "fixed4_valid": f4["valid"],
        "random_control_margin": min(r["vs_control"][0] for r in conf_rows),
        "random_control_margin_by_threshold": {str(r["value"]): r["vs_control"] for r in conf_rows},
        "event_minus_continuation_steps": chosen["event_minus_continuation_steps"],
        "position_schedule": baselines["position"]
        and {
            "schedule": baselines["position"]["value"],
            "valid": baselines["position"]["valid"],
            "nfe_per_chunk": baselines["position"]["nfe_per_chunk"],
            "margin": baselines["position"]["chosen_vs"],
        },
        "motion_schedule": baselines["motion"]
        and {
            "schedule (first, event, continuation)": baselines["motion"]["value"],
            "valid": baselines["motion"]["valid"],
            "nfe_per_chunk": baselines["motion"]["nfe_per_chunk"],
            "margin": baselines["motion"]["chosen_vs"],
        },
        "beats_position_schedule": beats(baselines["position"]),
        "beats_motion_schedule": beats(baselines["motion"]),
        "heuristic_nfe_ratio": heur_best["nfe_per_chunk"][0] / f4_nfe if heur_best else None,
        "beats_heuristic": heur_best is None or heur_best["nfe_per_chunk"][0] > chosen["nfe_per_chunk"][0],
        "noninferior_margin": NONINFERIOR_MARGIN,
        "pairs_heldout": len(held),
    }
    for r in rows:
        r.pop("per_pair_valid", None)
    return {"rows": rows, "summary": summary, "trajectories": len(pm._memo)}
