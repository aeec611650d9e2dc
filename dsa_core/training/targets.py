"""The confidence head's training targets (reconstruction: the paper says only that the head is trained
jointly under the DMD objective; the exact target is this project's choice). Switchable by name.

Every target is a per-frame distance d >= 0 (small = reliable), turned into a soft label in [0, 1] by one
of two labels, both relative to a running window of recent distances (``RunningScale``), so the units of
d never matter and one threshold scale in [0, 1] applies:

  ``rank`` (default for joint training): c* = 1 - F(d), F the empirical CDF of the window. c* = 0.75
      reads "this frame is better than 75% of the frames the generator makes at random exit steps".
      Labels spread over the whole [0, 1] range whatever the spread of d.
  ``exp2`` (default for head-only calibration): c* = 2 ** (-d / tau), tau the window's median: d = 0
      gives 1, d = tau gives 0.5. When d varies little around its median, labels bunch near 0.5.
  ``step_rank`` (reconstruction; default of the toy reproduction): c* = 1 - F_k(d), F_k the empirical
      CDF of recent distances of frames that exited at the SAME step k (one window per step). The labels
      have mean 1/2 at every step, so a head cannot fit them by counting steps: all it can learn is which
      frames, among those at step k, are more settled than the others. c* = 0.75 after step k reads "more
      settled than 75% of the chunks the generator makes at step k". d = 0 (nothing left to change, e.g.
      x0_agreement at the last step) is labelled 1.
  ``tolerance`` (reconstruction): c* = 1 if d <= tol else 0, tol fixed (``tau``, default
      DEFAULT_TOLERANCE). Under BCE the head estimates P(d <= tol): with x0_agreement, "the probability
      that more steps would change this frame by less than tol". The presets then are quality levels:
      balanced 0.75 = stop once the chunk's least settled frame is within tolerance with probability 0.75.

Targets
  ``teacher_residual`` (default for joint training): d = per-frame RMS of x - x_real, where x_real is the
      frozen teacher's x0 prediction on the generated video re-noised to a fixed low level (DMDConfig.
      head_sigma, default 0.15): the "real score" half of the DMD gradient, i.e. how far the frozen teacher
      would move this frame. Measured on the toy reproduction (teacher + student at exit step 1..6, 40
      iterations): mean d falls monotonically 0.060 -> 0.034 from exit step 1 to 6 (per-frame std ~0.007).
  ``dmd_grad``: d = per-frame RMS of the full DMD gradient direction (x_fake - x_real) = critic's minus the
      frozen teacher's x0 prediction on the re-noised generated video. It is the paper abstract's literal
      signal, but per frame it did not depend on the exit step in the toy reproduction (mean d 0.037-0.042
      for every exit step 1..6, at re-noising levels 0.15, 0.5 and 0.85): the critic models the generator's
      whole output mixture, so x_fake - x_real measures the mixture's mismatch, not one frame's; heads
      trained on it learned a constant. Kept switchable for comparison.
  ``x0_agreement`` (default for head-only calibration, needs no teacher or critic): d = per-frame RMS of
      (x0_hat after step k) - (x0_hat after the last step, max_steps). How close the estimate after step k
      already is to what more steps would give. At the last step d = 0 by construction (label 1); those
      zeros are kept out of tau.
  ``teacher_gain`` (reconstruction): d = teacher_residual(x0_hat after step k) - teacher_residual(x0_hat
      after the last step), both read with the same re-noising draw at ``head_sigma``: the measured benefit
      of the remaining steps as the frozen teacher judges it (how much its correction shrinks). d <= 0
      (more steps would not help) is labelled 1 by ``step_rank``; so is the last step. Unlike
      x0_agreement it does not count a change as a gain: for a student whose extra steps only resample or
      drift, "still changing" and "still improving" disagree. Costs the rollout's continuation to the last
      step plus two no-grad teacher forwards per iteration. The teacher reads the whole video, so other
      chunks' changes leak slightly into a frame's value; a frame that exited at the last step gets d = 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

TARGET_NAMES = ("teacher_residual", "dmd_grad", "x0_agreement", "teacher_gain")
LABEL_NAMES = ("rank", "exp2", "step_rank", "tolerance")
# x0_agreement RMS in latent units (per channel and pixel); 0.1 is ~0.029 RMS in RGB for the toy codec, a
# change one barely sees (reconstruction: a toy choice, real latents need their own)
DEFAULT_TOLERANCE = 0.1


def frame_rms(diff: Tensor) -> Tensor:
    """Per-frame RMS over channels and space: [B, C, T, H, W] -> [B, T] (float32)."""
    return diff.float().pow(2).mean(dim=(1, 3, 4)).sqrt()


def dmd_grad_distance(pred_fake: Tensor, pred_real: Tensor) -> Tensor:
    return frame_rms(pred_fake - pred_real)


def teacher_residual_distance(x: Tensor, pred_real: Tensor) -> Tensor:
    return frame_rms(x - pred_real)


def x0_agreement_distance(x0_k: Tensor, x0_final: Tensor) -> Tensor:
    return frame_rms(x0_k - x0_final)


def teacher_gain_distance(x0_k: Tensor, pred_k: Tensor, x0_final: Tensor, pred_final: Tensor) -> Tensor:
    """How much the teacher's correction shrinks from step k's x0_hat to the last step's (> 0: more steps
    help); pred_* are the teacher's x0 predictions on each re-noised with the same draw."""
    return teacher_residual_distance(x0_k, pred_k) - teacher_residual_distance(x0_final, pred_final)


class RunningScale:
    """Median of the last ``window`` positive distances (tau), or a fixed tau."""

    def __init__(self, window: int = 2048, fixed: float | None = None):
        self.window, self.fixed = int(window), fixed
        self.values = torch.zeros(0)

    def update(self, d: Tensor) -> None:
        v = d.detach().float().flatten().cpu()
        v = v[v > 0]
        self.values = torch.cat([self.values, v])[-self.window :]

    @property
    def tau(self) -> float:
        if self.fixed is not None:
            return float(self.fixed)
        if self.values.numel() == 0:
            return 1.0
        return max(float(self.values.median()), 1e-8)

    def cdf(self, d: Tensor) -> Tensor:
        """Fraction of the window strictly below d, ties counted half (0.5 when the window is empty)."""
        v = self.values.to(d.device)
        if v.numel() == 0:
            return torch.full_like(d.float(), 0.5)
        x = d.float().unsqueeze(-1)
        return (v < x).float().mean(-1) + 0.5 * (v == x).float().mean(-1)

    def state_tensor(self) -> Tensor:
        return self.values.clone()

    def load_state_tensor(self, t: Tensor | None) -> None:
        if t is not None:
            self.values = t.float().clone()


def confidence_label(d: Tensor, tau: float) -> Tensor:
    """c* = 2 ** (-d / tau) in (0, 1]."""
    return torch.exp2(-d.float() / tau)


class StepScales:
    """One RunningScale per exit step (for the ``step_rank`` label)."""

    def __init__(self, window: int = 2048):
        self.window = int(window)
        self.scales: dict[int, RunningScale] = {}

    def _get(self, k: int) -> RunningScale:
        if k not in self.scales:
            self.scales[k] = RunningScale(self.window)
        return self.scales[k]

    def update(self, d: Tensor, steps: Tensor) -> None:
        d, steps = d.detach().float().flatten().cpu(), steps.detach().flatten().cpu()
        for k in steps.unique().tolist():
            self._get(int(k)).update(d[steps == k])

    def label(self, d: Tensor, steps: Tensor) -> Tensor:
        out = torch.empty_like(d.float())
        for k in steps.unique().tolist():
            m = steps == k
            out[m] = 1.0 - self._get(int(k)).cdf(d[m])
        return torch.where(d <= 0, torch.ones_like(out), out).clamp(0.0, 1.0)

    def state_tensor(self) -> Tensor:
        """[N, 2] rows (step, distance) of every window."""
        rows = [torch.stack([torch.full_like(s.values, k), s.values], 1) for k, s in sorted(self.scales.items())]
        return torch.cat(rows) if rows else torch.zeros(0, 2)

    def load_state_tensor(self, t: Tensor | None) -> None:
        self.scales = {}
        if t is not None and t.numel():
            self.update(t[:, 1], t[:, 0].long())


def rank_within_step(d: Tensor, steps: Tensor) -> Tensor:
    """The ``step_rank`` label over a whole data set at once (head-only calibration): 1 - F_k(d) with F_k
    the CDF of the distances at the same step; d = 0 labelled 1."""
    sc = StepScales(window=max(1, d.numel()))
    sc.update(d, steps)
    return sc.label(d, steps)


class HeadTarget:
    """A named target and label: ``label(distance, steps)`` (optionally updating the running windows)
    returns c* [B, T]; ``steps`` [B, T] (0-based exit step of each frame) is needed by ``step_rank``."""

    def __init__(
        self, name: str = "teacher_residual", window: int = 2048, tau: float | None = None, label: str = "rank"
    ):
        if name not in TARGET_NAMES:
            raise ValueError(f"unknown head target {name!r}; choose one of {TARGET_NAMES}")
        if label not in LABEL_NAMES:
            raise ValueError(f"unknown head label {label!r}; choose one of {LABEL_NAMES}")
        if label in ("rank", "step_rank") and tau is not None:
            raise ValueError(
                f"a fixed tau only applies to the 'exp2' and 'tolerance' labels; the {label!r} label has no scale"
            )
        self.name, self.label_name = name, label
        if label == "tolerance" and tau is None:
            tau = DEFAULT_TOLERANCE
        self.scale = RunningScale(window, tau)
        self.step_scales = StepScales(window)

    def update(self, distance: Tensor, steps: Tensor | None = None) -> None:
        if self.label_name == "step_rank":
            if steps is None:
                raise ValueError("the 'step_rank' label needs each frame's exit step")
            self.step_scales.update(distance, steps)
        else:
            self.scale.update(distance)

    def label(self, distance: Tensor, update: bool = True, steps: Tensor | None = None) -> Tensor:
        if update:
            self.update(distance, steps)
        if self.label_name == "rank":
            return (1.0 - self.scale.cdf(distance)).clamp(0.0, 1.0)
        if self.label_name == "step_rank":
            if steps is None:
                raise ValueError("the 'step_rank' label needs each frame's exit step")
            return self.step_scales.label(distance, steps.to(distance.device))
        if self.label_name == "tolerance":
            return (distance.float() <= self.scale.tau).float()
        return confidence_label(distance, self.scale.tau)

    def state_tensor(self) -> Tensor:
        return self.step_scales.state_tensor() if self.label_name == "step_rank" else self.scale.state_tensor()

    def load_state_tensor(self, t: Tensor | None) -> None:
        if self.label_name == "step_rank":
            self.step_scales.load_state_tensor(t)
        else:
            self.scale.load_state_tensor(t)

    def to_dict(self) -> dict:
        formula = {
            "rank": "c* = 1 - F(d), F the window's empirical CDF",
            "step_rank": "c* = 1 - F_k(d), F_k the empirical CDF of frames that exited at the same step k",
            "tolerance": "c* = 1 if d <= tol else 0 (the head estimates P(d <= tol)); tol = tau",
            "exp2": "c* = 2**(-d/tau)",
        }[self.label_name]
        return {
            "name": self.name,
            "label_kind": self.label_name,
            "tau": self.scale.tau,
            "fixed_tau": self.scale.fixed,
            "window": self.scale.window,
            "label": formula,
        }
