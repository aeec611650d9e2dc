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
"""
from __future__ import annotations

import torch
from torch import Tensor

TARGET_NAMES = ("teacher_residual", "dmd_grad", "x0_agreement")
LABEL_NAMES = ("rank", "exp2")


def frame_rms(diff: Tensor) -> Tensor:
    """Per-frame RMS over channels and space: [B, C, T, H, W] -> [B, T] (float32)."""
    return diff.float().pow(2).mean(dim=(1, 3, 4)).sqrt()


def dmd_grad_distance(pred_fake: Tensor, pred_real: Tensor) -> Tensor:
    return frame_rms(pred_fake - pred_real)


def teacher_residual_distance(x: Tensor, pred_real: Tensor) -> Tensor:
    return frame_rms(x - pred_real)


def x0_agreement_distance(x0_k: Tensor, x0_final: Tensor) -> Tensor:
    return frame_rms(x0_k - x0_final)


class RunningScale:
    """Median of the last ``window`` positive distances (tau), or a fixed tau."""

    def __init__(self, window: int = 2048, fixed: float | None = None):
        self.window, self.fixed = int(window), fixed
        self.values = torch.zeros(0)

    def update(self, d: Tensor) -> None:
        v = d.detach().float().flatten().cpu()
        v = v[v > 0]
        self.values = torch.cat([self.values, v])[-self.window:]

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
        return ((v < x).float().mean(-1) + 0.5 * (v == x).float().mean(-1))

    def state_tensor(self) -> Tensor:
        return self.values.clone()

    def load_state_tensor(self, t: Tensor | None) -> None:
        if t is not None:
            self.values = t.float().clone()


def confidence_label(d: Tensor, tau: float) -> Tensor:
    """c* = 2 ** (-d / tau) in (0, 1]."""
    return torch.exp2(-d.float() / tau)


class HeadTarget:
    """A named target and label: ``label(distance)`` updates the running window and returns c* [B, T]."""

    def __init__(self, name: str = "teacher_residual", window: int = 2048, tau: float | None = None,
                 label: str = "rank"):
        if name not in TARGET_NAMES:
            raise ValueError(f"unknown head target {name!r}; choose one of {TARGET_NAMES}")
        if label not in LABEL_NAMES:
            raise ValueError(f"unknown head label {label!r}; choose one of {LABEL_NAMES}")
        if label == "rank" and tau is not None:
            raise ValueError("a fixed tau only applies to the 'exp2' label; the 'rank' label has no scale")
        self.name, self.label_name = name, label
        self.scale = RunningScale(window, tau)

    def label(self, distance: Tensor, update: bool = True) -> Tensor:
        if update:
            self.scale.update(distance)
        if self.label_name == "rank":
            return (1.0 - self.scale.cdf(distance)).clamp(0.0, 1.0)
        return confidence_label(distance, self.scale.tau)

    def to_dict(self) -> dict:
        formula = "c* = 1 - F(d), F the window's empirical CDF" if self.label_name == "rank" else "c* = 2**(-d/tau)"
        return {"name": self.name, "label_kind": self.label_name, "tau": self.scale.tau, "fixed_tau": self.scale.fixed,
                "window": self.scale.window, "label": formula}
