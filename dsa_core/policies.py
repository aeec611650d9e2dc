"""Step policies: after each denoising step of a chunk, stop or go on to the next ladder level.

One threshold scale, in [0, 1], used everywhere (nodes, GUI, records): a chunk stops once the
confidence of its least confident frame is >= threshold. Higher threshold = more steps = quality.
The numbers are never rescaled; THRESHOLD_PRESETS names a few of them.

- FixedSteps: exactly Self-Forcing's sampler (the first n levels, no early exit).
- ConfidencePolicy: DSA's rule with the learned head (reconstruction of the rule, see docs/method.md).
- HeuristicPolicy: a training-free stand-in that reads how much x0_hat changed between the last two
  steps. It is a HEURISTIC, not DSA's learned confidence; use it only when no head is available.
- BudgetPolicy: a mean number of steps per chunk; the confidence (head or heuristic) decides which chunks stop
  early and which spend what earlier chunks saved (the allowance, carried in the AR state across calls).

Presets are defined by cost where a head (or a generator, for the heuristic) carries a calibration table
(calibration.py): ``threshold_from_preset(name, table=...)``. Without one they keep THRESHOLD_PRESETS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .calibration import CalibrationTable
from .schedules import Ladder

# Reconstruction: uncalibrated starting points, not from the paper, used only for a head (or generator) without a
# calibration table; with one, presets are resolved by cost (calibration.PRESET_COST).
THRESHOLD_PRESETS = {
    "quality": 0.9,
    "balanced": 0.75,
    "fast": 0.5,
}

# The widget value that means "use the threshold number as given".
CUSTOM_PRESET = "custom"

CONFIDENCE_HEAD = "head"
CONFIDENCE_HEURISTIC = "heuristic"


def validate_threshold(threshold: float) -> float:
    """The user-facing check: a threshold is a number in [0, 1]."""
    t = float(threshold)
    if not (0.0 <= t <= 1.0):
        raise ValueError(f"confidence threshold must be in [0, 1], got {threshold}")
    return t


def threshold_from_preset(name_or_value, custom: float | None = None, table: CalibrationTable | None = None) -> float:
    """A preset name ('quality', 'balanced', 'fast') or a number in [0, 1]; 'custom' means ``custom``.
    With a calibration ``table`` a preset is the table's threshold of that cost, else THRESHOLD_PRESETS.
    The one place a preset is resolved (nodes, demo and CLIs call this)."""
    if isinstance(name_or_value, str):
        key = name_or_value.strip().lower()
        if key == CUSTOM_PRESET:
            if custom is None:
                raise ValueError("threshold preset 'custom' needs a threshold value")
            return validate_threshold(custom)
        if table is not None and key in table.presets:
            return table.presets[key]
        if key in THRESHOLD_PRESETS:
            return THRESHOLD_PRESETS[key]
        try:
            return validate_threshold(float(key))
        except ValueError:
            raise ValueError(
                f"unknown threshold preset {name_or_value!r}; choose one of "
                f"{sorted(THRESHOLD_PRESETS)} or a number in [0, 1]"
            ) from None
    return validate_threshold(name_or_value)


class StepPolicy:
    """Base class. ``confidence_source`` says what the sampler must compute after each step
    (None, 'head' or 'heuristic'); ``decide`` says whether the chunk stops after ``steps_done``.
    ``for_chunk`` / ``after_chunk`` let a policy with a running state (the budget) hand the sampler one plain
    policy per chunk; the state itself is the caller's (ARState.allowance), never the policy's."""

    name = "base"
    confidence_source: str | None = None
    cap_reason = "max_steps"  # the stop reason when a chunk reaches this policy's max_steps

    def for_chunk(self, ladder: Ladder, allowance: "BudgetAllowance", remaining: int) -> "StepPolicy":
        """The policy of the next chunk, given the lineage's allowance and the chunks left in this call."""
        return self

    def after_chunk(self, allowance: "BudgetAllowance", steps: int) -> "BudgetAllowance":
        """The allowance after a chunk of ``steps`` steps (unchanged for policies without a budget)."""
        return allowance

    def max_steps(self, ladder: Ladder) -> int:
        raise NotImplementedError

    def validate(self, ladder: Ladder) -> None:
        """Raise ValueError if this policy cannot run on ``ladder``."""
        self.max_steps(ladder)

    def decide(self, steps_done: int, confidence: float | None) -> str | None:
        """None to continue, else the stop reason ('fixed', 'confident', 'max_steps')."""
        raise NotImplementedError

    def to_dict(self) -> dict:
        d = {"name": self.name}
        d.update({k: v for k, v in vars(self).items() if not k.startswith("_")})
        return d


@dataclass
class FixedSteps(StepPolicy):
    """Self-Forcing's sampler: every chunk takes ``steps`` levels (default: the ladder's base_steps)."""

    steps: int | None = None
    name = "fixed"
    confidence_source = None

    def max_steps(self, ladder: Ladder) -> int:
        n = ladder.base_steps if self.steps is None else int(self.steps)
        if not 1 <= n <= len(ladder):
            raise ValueError(f"fixed steps {n} must be between 1 and the ladder length {len(ladder)}")
        return n

    def decide(self, steps_done, confidence):
        return None  # the sampler stops at max_steps

    def to_dict(self):
        return {"name": self.name, "steps": self.steps}


class ConfidencePolicy(StepPolicy):
    """DSA's rule (reconstruction of the abstract's "simple frames terminate early, complex frames
    receive additional refinement"): after step k, c = min confidence over the chunk's frames (and the
    batch: all of a chunk moves together); stop when k >= min_steps and c >= threshold; never go past
    max_steps (capped by the ladder length).

    ``threshold`` is on the [0, 1] scale. Values above 1 are accepted here and mean "never stop early"
    (a confidence never exceeds 1), so threshold > 1 with max_steps = 4 is the fixed 4-step sampler;
    user-facing code validates with ``validate_threshold``. A confidence of exactly 1.0 meets a
    threshold of 1.0.
    """

    name = "confidence"
    confidence_source = CONFIDENCE_HEAD

    def __init__(
        self, threshold: float = THRESHOLD_PRESETS["balanced"], min_steps: int = 1, max_steps: int | None = None
    ):
        t = float(threshold)
        if math.isnan(t) or t < 0:
            raise ValueError(f"confidence threshold must be >= 0 (on the [0, 1] scale), got {threshold}")
        if int(min_steps) < 1:
            raise ValueError(f"min_steps must be >= 1, got {min_steps}")
        if max_steps is not None and int(max_steps) < int(min_steps):
            raise ValueError(f"max_steps ({max_steps}) must be >= min_steps ({min_steps})")
        self.threshold = t
        self.min_steps = int(min_steps)
        self.max_steps_ = None if max_steps is None else int(max_steps)

    def max_steps(self, ladder: Ladder) -> int:
        n = len(ladder) if self.max_steps_ is None else self.max_steps_
        if n > len(ladder):
            raise ValueError(
                f"max_steps {n} exceeds the ladder's {len(ladder)} levels; "
                "use an extended ladder (schedules.extended_ladder)"
            )
        if self.min_steps > n:
            raise ValueError(f"min_steps {self.min_steps} exceeds max_steps {n}")
        return n

    def __repr__(self):
        return (
            f"{type(self).__name__}(threshold={self.threshold}, min_steps={self.min_steps}, "
            f"max_steps={self.max_steps_})"
        )

    def __eq__(self, other):
        return type(self) is type(other) and self.to_dict() == other.to_dict()

    def decide(self, steps_done, confidence):
        if confidence is not None and steps_done >= self.min_steps and confidence >= self.threshold:
            return "confident"
        return None

    def to_dict(self):
        return {
            "name": self.name,
            "threshold": self.threshold,
            "min_steps": self.min_steps,
            "max_steps": self.max_steps_,
        }


class HeuristicPolicy(ConfidencePolicy):
    """HEURISTIC fallback, not DSA: confidence = 1 - relative change of x0_hat between the last two
    steps, per frame, clipped to [0, 1] (see ``heuristic_confidence``). After the first step there is
    nothing to compare with, so it never stops after step 1. Training-free; never the default when a
    trained head is present."""

    name = "heuristic"
    confidence_source = CONFIDENCE_HEURISTIC

    def to_dict(self):
        d = super().to_dict()
        d["label"] = "heuristic (training-free, not the learned DSA confidence)"
        return d


BUDGET_TOLERANCE = 0.1  # steps: how far below the budget a call's mean may end when whole steps allow


@dataclass(frozen=True)
class BudgetAllowance:
    """What the budget chunks of one AR lineage have spent, carried explicitly in ARState.allowance so that a
    continuation (the extender) keeps the mean. ``granted``: the sum of their per-chunk budgets."""

    chunks: int = 0
    granted: float = 0.0
    steps: int = 0

    @property
    def saved(self) -> float:
        """Steps earlier chunks left unspent: what a later chunk may spend beyond the budget."""
        return self.granted - self.steps

    @property
    def mean_steps(self) -> float:
        return self.steps / self.chunks if self.chunks else 0.0

    def spend(self, budget: float, steps: int) -> "BudgetAllowance":
        return BudgetAllowance(self.chunks + 1, self.granted + float(budget), self.steps + int(steps))

    def to_dict(self) -> dict:
        return {"chunks": self.chunks, "granted": self.granted, "steps": self.steps, "saved": self.saved}


class BudgetPolicy(StepPolicy):
    """A mean of ``mean_steps`` steps per chunk (reconstruction, docs/method.md). Per chunk:
    - cap = floor(budget + saved): a chunk goes past the budget only with allowance earlier chunks saved, so the
      lineage's mean never exceeds the budget;
    - floor: min_steps, raised near the end of a call only as far as needed for the call to end no more than
      BUDGET_TOLERANCE below the budget (when whole steps allow it);
    - between the two the confidence decides: the chunk stops once it reaches a threshold, the one the
      calibration table expects to spend budget + saved / remaining steps per chunk (without a table: the given
      ``threshold``). ``confidence``: 'head' or 'heuristic'.
    The allowance is the caller's: ``for_chunk`` reads it, ``after_chunk`` returns the next one."""

    name = "budget"

    def __init__(
        self,
        mean_steps: float,
        min_steps: int = 1,
        max_steps: int | None = None,
        *,
        confidence: str = CONFIDENCE_HEAD,
        threshold: float = THRESHOLD_PRESETS["balanced"],
        table: CalibrationTable | None = None,
    ):
        b = float(mean_steps)
        if math.isnan(b) or b < int(min_steps):
            raise ValueError(
                f"mean_steps {mean_steps} is below min_steps {min_steps}: raise mean_steps or lower min_steps"
            )
        if max_steps is not None and b > int(max_steps):
            raise ValueError(f"mean_steps {mean_steps} is above max_steps {max_steps}: lower it or raise max_steps")
        if confidence not in (CONFIDENCE_HEAD, CONFIDENCE_HEURISTIC):
            raise ValueError(f"a budget's confidence is 'head' or 'heuristic', got {confidence!r}")
        self.mean_steps = b
        self.min_steps = int(min_steps)
        self.max_steps_ = None if max_steps is None else int(max_steps)
        self.confidence_source = confidence
        self.threshold = validate_threshold(threshold)
        self.table = table

    def max_steps(self, ladder: Ladder) -> int:
        n = len(ladder) if self.max_steps_ is None else self.max_steps_
        if n > len(ladder):
            raise ValueError(f"max_steps {n} exceeds the ladder's {len(ladder)} levels")
        if self.mean_steps > n:
            raise ValueError(f"mean_steps {self.mean_steps} is above the {n} steps a chunk can take")
        return n

    def decide(self, steps_done, confidence):
        raise TypeError("a budget decides chunk by chunk: run the policy that for_chunk returns")

    def for_chunk(self, ladder, allowance, remaining):
        allowance = allowance or BudgetAllowance()
        n, b, eps = self.max_steps(ladder), self.mean_steps, 1e-9
        remaining = max(1, int(remaining))
        cap = min(n, math.floor(b + allowance.saved + eps))
        chunks_end = allowance.chunks + remaining
        low_total = allowance.granted + b * remaining - BUDGET_TOLERANCE * chunks_end
        need = low_total - allowance.steps - (remaining - 1) * n
        floor = min(cap, max(self.min_steps, math.ceil(need - eps)))
        target = min(cap, max(floor, b + allowance.saved / remaining))
        thr = self.threshold if self.table is None else self.table.threshold_for_mean_steps(target)
        kind = HeuristicPolicy if self.confidence_source == CONFIDENCE_HEURISTIC else ConfidencePolicy
        chunk = kind(thr, floor, cap)
        if cap < n:
            chunk.cap_reason = "budget"
        return chunk

    def after_chunk(self, allowance, steps):
        return (allowance or BudgetAllowance()).spend(self.mean_steps, steps)

    def to_dict(self):
        return {
            "name": self.name,
            "mean_steps": self.mean_steps,
            "min_steps": self.min_steps,
            "max_steps": self.max_steps_,
            "confidence": self.confidence_source,
            "threshold": None if self.table is not None else self.threshold,
            "calibrated": self.table is not None,
        }


def heuristic_confidence(x0_prev: torch.Tensor | None, x0: torch.Tensor) -> torch.Tensor | None:
    """Per-frame [B, T] heuristic confidence from two successive x0_hat [B, C, T, H, W]:
    1 - ||x0 - x0_prev|| / ||x0|| per frame, clipped to [0, 1]. None when there is no previous step.
    (Heuristic; reconstruction of "how much x0_hat changed between the last two steps".)"""
    if x0_prev is None:
        return None
    a = x0.float()
    d = (a - x0_prev.float()).pow(2).sum(dim=(1, 3, 4)).sqrt()
    n = a.pow(2).sum(dim=(1, 3, 4)).sqrt().clamp_min(1e-8)
    return (1.0 - d / n).clamp(0.0, 1.0)


def make_policy(
    kind: str,
    *,
    threshold=THRESHOLD_PRESETS["balanced"],
    min_steps: int = 1,
    max_steps: int | None = None,
    steps: int | None = None,
    custom_threshold: float | None = None,
    table: CalibrationTable | None = None,
    mean_steps: float | None = None,
    budget_confidence: str = CONFIDENCE_HEAD,
) -> StepPolicy:
    """One entry point for nodes: kind in {'fixed', 'confidence', 'heuristic', 'budget'}; threshold may be a
    preset name (resolved with ``table`` when given), 'custom' (then ``custom_threshold`` is used) or a number in
    [0, 1]. 'budget' needs ``mean_steps``; its confidence is ``budget_confidence`` ('head' or 'heuristic')."""
    if kind == "fixed":
        return FixedSteps(steps)
    thr = threshold_from_preset(threshold, custom_threshold, table)
    if kind == "confidence":
        return ConfidencePolicy(thr, min_steps, max_steps)
    if kind == "heuristic":
        return HeuristicPolicy(thr, min_steps, max_steps)
    if kind == "budget":
        if mean_steps is None:
            raise ValueError("the budget policy needs mean_steps (the mean steps per chunk to spend)")
        return BudgetPolicy(mean_steps, min_steps, max_steps, confidence=budget_confidence, threshold=thr, table=table)
    raise ValueError(f"unknown policy {kind!r}; choose 'fixed', 'confidence', 'heuristic' or 'budget'")
