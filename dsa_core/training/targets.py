"""The confidence head's training targets (reconstruction: the paper says only that the head is trained
jointly under the DMD objective; the exact target is this project's choice). Switchable by name.

Both targets map a per-frame distance d >= 0 to a soft label in (0, 1]:

    c* = 2 ** (-d / tau)

so d = 0 gives 1, d = tau gives 0.5, and larger distances fall towards 0. ``tau`` is the median of the
recent distances (a running window, ``RunningScale``) unless fixed: about half of the training frames are
labelled above 0.5, whatever the units of d. A trained head therefore reads "how reliable is this frame
compared with a typical frame at a typical step", and one threshold scale in [0, 1] applies.

Targets
  ``dmd_grad`` (default for joint training): d = per-frame RMS of the DMD gradient direction
      (x_fake - x_real) = critic's x0 prediction minus the frozen teacher's x0 prediction, on the re-noised
      generated video, read at the chunk's exit step. Small where the generator's output already matches
      the teacher's distribution, large where it does not.
  ``x0_agreement`` (default for head-only calibration, needs no teacher or critic): d = per-frame RMS of
      (x0_hat after step k) - (x0_hat after the last step, max_steps). How close the estimate after step k
      already is to what more steps would give. At the last step d = 0 by construction (label 1); those
      zeros are kept out of tau.
"""
from __future__ import annotations

import torch
from torch import Tensor

TARGET_NAMES = ("dmd_grad", "x0_agreement")


def frame_rms(diff: Tensor) -> Tensor:
    """Per-frame RMS over channels and space: [B, C, T, H, W] -> [B, T] (float32)."""
    return diff.float().pow(2).mean(dim=(1, 3, 4)).sqrt()


def dmd_grad_distance(pred_fake: Tensor, pred_real: Tensor) -> Tensor:
    return frame_rms(pred_fake - pred_real)


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

    def state_tensor(self) -> Tensor:
        return self.values.clone()

    def load_state_tensor(self, t: Tensor | None) -> None:
        if t is not None:
            self.values = t.float().clone()


def confidence_label(d: Tensor, tau: float) -> Tensor:
    """c* = 2 ** (-d / tau) in (0, 1]."""
    return torch.exp2(-d.float() / tau)


class HeadTarget:
    """A named target: ``label(distance)`` updates the running scale and returns c* [B, T]."""

    def __init__(self, name: str = "dmd_grad", window: int = 2048, tau: float | None = None):
        if name not in TARGET_NAMES:
            raise ValueError(f"unknown head target {name!r}; choose one of {TARGET_NAMES}")
        self.name = name
        self.scale = RunningScale(window, tau)

    def label(self, distance: Tensor, update: bool = True) -> Tensor:
        if update:
            self.scale.update(distance)
        return confidence_label(distance, self.scale.tau)

    def to_dict(self) -> dict:
        return {"name": self.name, "tau": self.scale.tau, "fixed_tau": self.scale.fixed,
                "window": self.scale.window, "label": "c* = 2**(-d/tau)"}
