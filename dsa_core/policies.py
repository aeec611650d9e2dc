"""Step policies: after each denoising step of a chunk, stop or go on to the next ladder level.

One threshold scale, in [0, 1], used everywhere (nodes, GUI, records): a chunk stops once the
confidence of its least confident frame is >= threshold. Higher threshold = more steps = quality.
The numbers are never rescaled; THRESHOLD_PRESETS names a few of them.

- FixedSteps: exactly Self-Forcing's sampler (the first n levels, no early exit).
- ConfidencePolicy: DSA's rule with the learned head (reconstruction of the rule, see docs/method.md).
- HeuristicPolicy: a training-free stand-in that reads how much x0_hat changed between the last two
  steps. It is a HEURISTIC, not DSA's learned confidence; use it only when no head is available.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .schedules import Ladder

# Reconstruction: uncalibrated starting points, not from the paper (a trained head's scale decides
# what they mean in practice).
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


def threshold_from_preset(name_or_value, custom: float | None = None) -> float:
    """A preset name ('quality', 'balanced', 'fast') or a number in [0, 1]; 'custom' means ``custom``.
    The one place a preset is resolved (nodes, demo and CLIs call this)."""
    if isinstance(name_or_value, str):
        key = name_or_value.strip().lower()
        if key == CUSTOM_PRESET:
            if custom is None:
                raise ValueError("threshold preset 'custom' needs a threshold value")
            return validate_threshold(custom)
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
    (None, 'head' or 'heuristic'); ``decide`` says whether the chunk stops after ``steps_done``."""

    name = "base"
    confidence_source: str | None = None

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
) -> StepPolicy:
    """One entry point for nodes: kind in {'fixed', 'confidence', 'heuristic'}; threshold may be a
    preset name, 'custom' (then ``custom_threshold`` is used) or a number in [0, 1]."""
    if kind == "fixed":
        return FixedSteps(steps)
    thr = threshold_from_preset(threshold, custom_threshold)
    if kind == "confidence":
        return ConfidencePolicy(thr, min_steps, max_steps)
    if kind == "heuristic":
        return HeuristicPolicy(thr, min_steps, max_steps)
    raise ValueError(f"unknown policy {kind!r}; choose 'fixed', 'confidence' or 'heuristic'")
