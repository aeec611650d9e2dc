"""Measure what thresholds cost on a head (and the heuristic on its generator) and store the table in the files.

  python -m dsa_core.calibrate_presets --model models/toy/dsa_toy_wan.safetensors
  python -m dsa_core.calibrate_presets --model self_forcing_dmd.safetensors --head my_head.safetensors \\
      --prompts my_prompt_embeddings/ --latent-h 60 --latent-w 104 --frames 21

Rollouts: the generator samples videos from prompts it was not trained on, through the product sampler
(ar_sampler.sample_video, one video per prompt and seed), once per threshold of a grid; then, per preset of
calibration.PRESET_COST, thresholds are bisected until the measured NFE ratio is within ``--tolerance`` of the
preset's cost (or the threshold interval is below 1e-3). The toy model (metadata 'dsa.toy.*') uses the toy
world's prompts and adds the world's quality measure with a 95 % bootstrap interval (dsa_core/toy/preset_rollouts.py);
other models need ``--prompts`` (prompt embedding files, dsa_core.prompt_files format).

The head's table is written into the head file's metadata (the generator file's, when the head is embedded
there) under calibration.META_HEAD; the heuristic's into the generator file under calibration.META_HEURISTIC.
The tensors are rewritten unchanged. ``--dry-run`` only prints.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .ar_sampler import sample_video
from .calibration import (
    META_HEAD,
    META_HEURISTIC,
    PRESET_COST,
    CalibrationRow,
    CalibrationTable,
    nfe_ratio,
    presets_from_rows,
)
from .causal_wan import CausalWan
from .checkpoint import load_generator
from .checkpoint_keys import head_keys
from .confidence_head import load_head
from .policies import CONFIDENCE_HEAD, CONFIDENCE_HEURISTIC, ConfidencePolicy, HeuristicPolicy
from .schedules import extended_ladder, self_forcing_ladder

DEFAULT_GRID = tuple(round(0.1 * i, 1) for i in range(11))


@dataclass
class RolloutSet:
    """The prompts and seeds a table is measured on, the video geometry, and optionally a quality measure
    (``quality(video index, latent [1, C, T, H, W]) -> float``, lower is better) with its name."""

    contexts: list  # [1, L, D] per prompt
    seeds: list
    num_frames: int
    chunk_frames: int
    latent_h: int
    latent_w: int
    prompts: list = field(default_factory=list)  # the prompts' texts (recorded in the table)
    quality: Callable | None = None
    quality_name: str | None = None

    @property
    def videos(self) -> list:
        return [(p, s) for p in range(len(self.contexts)) for s in self.seeds]

    def describe(self) -> dict:
        return {
            "videos": len(self.videos),
            "chunks": len(self.videos) * (self.num_frames // self.chunk_frames),
            "seeds": list(self.seeds),
            "prompts": list(self.prompts),
            "num_frames": self.num_frames,
            "chunk_frames": self.chunk_frames,
            "latent_hw": [self.latent_h, self.latent_w],
        }


def make_policy(source: str, threshold: float, min_steps: int, max_steps: int):
    kind = HeuristicPolicy if source == CONFIDENCE_HEURISTIC else ConfidencePolicy
    return kind(threshold, min_steps, max_steps)


@torch.no_grad()
def measure(cw, rs: RolloutSet, ladder, source: str, threshold: float, head, min_steps: int, max_steps: int):
    """One row: every video of ``rs`` sampled at ``threshold``; (CalibrationRow, per-video latents)."""
    steps, quality = [], []
    texts = {}
    for p, seed in rs.videos:
        if p not in texts:
            texts[p] = cw.encode_text(rs.contexts[p])
        lat, _, rec = sample_video(
            cw,
            texts[p],
            num_frames=rs.num_frames,
            latent_h=rs.latent_h,
            latent_w=rs.latent_w,
            chunk_frames=rs.chunk_frames,
            ladder=ladder,
            policy=make_policy(source, threshold, min_steps, max_steps),
            seed=seed,
            head=head if source == CONFIDENCE_HEAD else None,
            record_confidence=False,
        )
        steps += [c.steps for c in rec.chunks]
        if rs.quality is not None:
            quality.append(rs.quality(len(quality), lat))
    mean = sum(steps) / len(steps)
    q = None
    if quality:
        from .toy.stats import bootstrap_ci

        q = tuple(bootstrap_ci(quality))
    return CalibrationRow(float(threshold), mean, nfe_ratio(mean, ladder.base_steps), q)


def calibrate(
    cw,
    rs: RolloutSet,
    ladder,
    source: str,
    head=None,
    *,
    min_steps: int = 1,
    max_steps: int | None = None,
    grid=DEFAULT_GRID,
    tolerance: float = 0.01,
    max_bisections: int = 10,
    log=print,
) -> CalibrationTable:
    """The table of one confidence source ('head' or 'heuristic') on ``rs``: the grid, then per preset a
    bisection between the two measured thresholds whose NFE ratios bracket its cost."""
    max_steps = len(ladder) if max_steps is None else max_steps
    log = log or (lambda _msg: None)
    rows: dict[float, CalibrationRow] = {}

    def saturated(t):
        """A measured row that decides ``t`` exactly: if every chunk took max_steps at a lower threshold, each
        chunk's confidence stayed below it at every earlier step, so with the same noise and (by induction) the
        same earlier chunks it stays below ``t`` too: the same videos. Likewise every chunk at min_steps above."""
        for r in rows.values():
            if (r.threshold <= t and r.mean_steps == max_steps) or (r.threshold >= t and r.mean_steps == min_steps):
                return r
        return None

    def row(t):
        t = round(float(t), 6)
        if t not in rows and (same := saturated(t)) is not None:
            rows[t] = CalibrationRow(t, same.mean_steps, same.nfe_ratio, same.quality)
        if t not in rows:
            t0 = time.perf_counter()
            rows[t] = measure(cw, rs, ladder, source, t, head, min_steps, max_steps)
            r = rows[t]
            log(
                f"{source} thr {t:.4f}: {r.mean_steps:.3f} steps/chunk, NFE x{r.nfe_ratio:.3f} of fixed "
                f"{ladder.base_steps} ({time.perf_counter() - t0:.1f} s)"
            )
        return rows[t]

    for t in grid:
        row(t)
    for cost in PRESET_COST.values():
        for _ in range(max_bisections):
            ordered = sorted(rows.values(), key=lambda r: r.threshold)
            if min(abs(r.nfe_ratio - cost) for r in ordered) <= tolerance:
                break
            below = [r for r in ordered if r.nfe_ratio < cost]
            above = [r for r in ordered if r.nfe_ratio >= cost]
            if not below or not above:
                break  # the cost is outside what this source can spend at any threshold
            lo = max(below, key=lambda r: r.threshold)
            hi = min((r for r in above if r.threshold > lo.threshold), key=lambda r: r.threshold, default=None)
            if hi is None or hi.threshold - lo.threshold < 1e-3:
                break
            row((lo.threshold + hi.threshold) / 2)
    measured = tuple(rows.values())
    presets, reached = presets_from_rows(measured, ladder.base_steps)
    return CalibrationTable(
        source=source,
        base_steps=ladder.base_steps,
        min_steps=min_steps,
        max_steps=max_steps,
        ladder=ladder.name,
        rows=measured,
        presets=presets,
        reached=reached,
        quality_name=rs.quality_name,
        rollouts=rs.describe(),
    )


def measure_tables(
    dit, head, rs: RolloutSet, ladder, sources=(CONFIDENCE_HEAD, CONFIDENCE_HEURISTIC), on_table=None, **kw
) -> dict:
    """{metadata key: table} for ``sources`` ('head' needs ``head``); ``on_table(key, table)`` as each is done;
    ``kw`` go to ``calibrate``."""
    cw = CausalWan(dit, dit.config)
    out = {}
    for source in sources:
        if source == CONFIDENCE_HEAD and head is None:
            continue
        key = META_HEAD if source == CONFIDENCE_HEAD else META_HEURISTIC
        out[key] = calibrate(cw, rs, ladder, source, head, **kw)
        if on_table is not None:
            on_table(key, out[key])
    return out


def write_metadata(path, updates: dict) -> None:
    """Rewrite a safetensors file with ``updates`` merged into its metadata; tensors unchanged (atomic replace)."""
    path = Path(path)
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta.update(updates)
    fd, tmp = tempfile.mkstemp(suffix=".safetensors", dir=str(path.parent))
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def table_report(table: CalibrationTable) -> str:
    lines = [
        f"{table.source}: base {table.base_steps} steps, {table.min_steps}-{table.max_steps} steps per chunk, "
        f"{table.rollouts.get('videos')} videos"
    ]
    for r in table.rows:
        q = (
            ""
            if r.quality is None
            else f"  {table.quality_name} {r.quality[0]:.5f} [{r.quality[1]:.5f}, {r.quality[2]:.5f}]"
        )
        lines.append(f"  thr {r.threshold:.4f}: {r.mean_steps:.3f} steps/chunk, NFE x{r.nfe_ratio:.3f}{q}")
    for name, t in table.presets.items():
        lines.append(f"  preset {name}: thr {t:.4f} (NFE x{table.reached[name]:.3f}, target x{PRESET_COST[name]})")
    return "\n".join(lines)


def rollout_set(args, meta: dict) -> RolloutSet:
    if "dsa.toy.num_frames" in meta:
        from .toy.preset_rollouts import toy_rollouts

        return toy_rollouts(
            args.num_prompts, list(range(args.seed, args.seed + args.seeds)), scene_seed=args.scene_seed
        )
    if not args.prompts:
        raise SystemExit(
            "calibrate_presets: this is not the toy model; give --prompts (prompt embedding files the generator was "
            "not trained on) and the video size (--frames, --latent-h, --latent-w)"
        )
    from .training.prompts import FilePrompts

    fp = FilePrompts(args.prompts)
    n = min(len(fp), args.num_prompts)
    return RolloutSet(
        [fp.contexts[i : i + 1] for i in range(n)],
        list(range(args.seed, args.seed + args.seeds)),
        args.frames,
        args.chunk_frames,
        args.latent_h,
        args.latent_w,
        prompts=fp.texts[:n],
    )


def build_parser():
    ap = argparse.ArgumentParser(
        prog="python -m dsa_core.calibrate_presets",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--model", required=True, help="the generator (.safetensors; a generator+head file works)")
    ap.add_argument("--head", default=None, help="head file (default: the head embedded in --model, if any)")
    ap.add_argument("--sources", default="head,heuristic", help="which tables: head, heuristic or both")
    ap.add_argument("--prompts", nargs="*", default=None, help="prompt embedding files or folders (not the toy)")
    ap.add_argument("--num-prompts", type=int, default=12)
    ap.add_argument("--seeds", type=int, default=8, help="seeds per prompt")
    ap.add_argument("--seed", type=int, default=5000, help="first seed")
    ap.add_argument("--scene-seed", type=int, default=2025, help="toy: the seed that draws the calibration scenes")
    ap.add_argument("--frames", type=int, default=21, help="latent frames per video (toy: from the model)")
    ap.add_argument("--chunk-frames", type=int, default=3)
    ap.add_argument("--latent-h", type=int, default=60)
    ap.add_argument("--latent-w", type=int, default=104)
    ap.add_argument("--min-steps", type=int, default=1)
    ap.add_argument("--max-steps", type=int, default=6, help="ladder levels: Self-Forcing's 4 + extended ones")
    ap.add_argument("--tolerance", type=float, default=0.01, help="NFE ratio a preset's threshold must reach")
    ap.add_argument("--grid", default=",".join(f"{t:g}" for t in DEFAULT_GRID), help="thresholds measured first")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dry-run", action="store_true", help="measure and print, write nothing")
    return ap


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    torch.set_num_threads(a.threads)
    sources = [s.strip() for s in a.sources.split(",") if s.strip()]
    for s in sources:
        if s not in (CONFIDENCE_HEAD, CONFIDENCE_HEURISTIC):
            raise SystemExit(f"--sources: unknown {s!r}; use head, heuristic or head,heuristic")
    with safe_open(a.model, framework="pt") as f:
        meta = dict(f.metadata() or {})
        embedded = bool(head_keys(list(f.keys())))
    dit = load_generator(a.model, dtype="fp32")
    head_path = a.head or (a.model if embedded else None)
    head = load_head(head_path, expected_dim=dit.config.dim) if head_path else None
    if CONFIDENCE_HEAD in sources and head is None:
        print("no confidence head given or embedded: only the heuristic's table is measured")
        sources = [s for s in sources if s != CONFIDENCE_HEAD]
    rs = rollout_set(a, meta)
    ladder = extended_ladder(self_forcing_ladder(), a.max_steps)

    def done(key, table):  # each table is written as soon as it is measured
        print(table_report(table))
        path = head_path if key == META_HEAD else a.model
        if not a.dry_run:
            write_metadata(path, {key: table.to_json()})
            print(f"wrote {key} into {path}")

    grid = tuple(float(v) for v in a.grid.split(","))
    measure_tables(
        dit,
        head,
        rs,
        ladder,
        sources,
        on_table=done,
        min_steps=a.min_steps,
        max_steps=a.max_steps,
        tolerance=a.tolerance,
        grid=grid,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
