"""Noise ladders for the AR sampler: the levels a chunk walks down, one model call per level.

Flow matching (Self-Forcing / Wan): x_t = (1 - s) x0 + s eps, model timestep t = 1000 s.
A ladder is a strictly decreasing list of noise levels s in (0, 1] that starts at pure noise (s = 1).
A policy decides how many of its levels a chunk uses; the ladder only says which levels those are.

- ``self_forcing_ladder()``: Self-Forcing's base list [1000, 750, 500, 250] warped through shift 5,
  exactly s = [1.0, 0.9375, 0.8333.., 0.625] (Self-Forcing facts).
- ``causvid_ladder()``: CausVid's [1000, 757, 522] (shift 8; see its docstring).
- ``extended_ladder()``: a base ladder plus extra, lower levels for the chunks a confidence policy
  sends on for more refinement (reconstruction: the paper only says "additional refinement").
- ``custom_ladder()`` / ``parse_ladder()``: user lists, validated with messages that say what to fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

SELF_FORCING_TIMESTEPS = (1000.0, 750.0, 500.0, 250.0)
SELF_FORCING_SHIFT = 5.0
CAUSVID_TIMESTEPS = (1000.0, 757.0, 522.0)
CAUSVID_SHIFT = 8.0
# Default cap on how long an extended ladder gets (reconstruction: 4 base + 2 extra levels).
DEFAULT_MAX_STEPS = 6


class LadderError(ValueError):
    """A noise ladder that cannot be sampled with; the message says what to change."""


def warp(u: float, shift: float) -> float:
    """The flow-matching shift: s' = shift*u / (1 + (shift-1)*u), u = t/1000 in [0, 1]."""
    if shift <= 0:
        raise LadderError(f"shift must be > 0, got {shift}")
    return shift * u / (1.0 + (shift - 1.0) * u)


@dataclass(frozen=True)
class Ladder:
    """Noise levels s (descending, s[0] = 1) plus how many of them make the 'fixed' schedule.

    ``base_steps`` is the reference the speed-up is measured against (4 for Self-Forcing): the fixed
    sampler uses exactly the first ``base_steps`` levels.
    """

    sigmas: tuple
    base_steps: int
    name: str = "custom"

    def __post_init__(self):
        object.__setattr__(self, "sigmas", tuple(float(s) for s in self.sigmas))
        validate_sigmas(self.sigmas)
        if not 1 <= int(self.base_steps) <= len(self.sigmas):
            raise LadderError(
                f"base_steps {self.base_steps} must be between 1 and the ladder length {len(self.sigmas)}"
            )
        object.__setattr__(self, "base_steps", int(self.base_steps))

    def __len__(self) -> int:
        return len(self.sigmas)

    @property
    def timesteps(self) -> tuple:
        """Model timesteps t = 1000 s."""
        return tuple(1000.0 * s for s in self.sigmas)

    def truncated(self, n: int) -> "Ladder":
        """The first ``n`` levels (base_steps clipped to n)."""
        if not 1 <= n <= len(self):
            raise LadderError(f"cannot take {n} levels of a {len(self)}-level ladder")
        return Ladder(self.sigmas[:n], min(self.base_steps, n), self.name)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "sigmas": list(self.sigmas),
            "timesteps": list(self.timesteps),
            "base_steps": self.base_steps,
        }


def validate_sigmas(sigmas: Sequence[float]) -> None:
    """Raise LadderError unless sigmas is a usable ladder: non-empty, finite, in (0, 1],
    strictly decreasing, starting at 1.0 (a chunk starts from pure noise)."""
    if len(sigmas) == 0:
        raise LadderError("a noise ladder needs at least one level")
    for i, s in enumerate(sigmas):
        if not math.isfinite(s):
            raise LadderError(f"level {i} is {s}: levels must be finite numbers")
        if not 0.0 < s <= 1.0:
            raise LadderError(
                f"level {i} is {s}: noise levels must be in (0, 1] (timesteps in (0, 1000]); "
                "0 would be a step that does nothing"
            )
    if abs(sigmas[0] - 1.0) > 1e-6:
        raise LadderError(
            f"the first level is {sigmas[0]}, it must be 1.0 (timestep 1000): each chunk starts from pure noise"
        )
    for i in range(1, len(sigmas)):
        if not sigmas[i] < sigmas[i - 1]:
            raise LadderError(
                f"levels must strictly decrease: level {i} ({sigmas[i]}) is not below level {i - 1} ({sigmas[i - 1]})"
            )


def flow_ladder(
    timesteps: Iterable[float], shift: float = 1.0, *, base_steps: int | None = None, name: str = "custom"
) -> Ladder:
    """A ladder from a list of timesteps in (0, 1000], each warped through ``shift`` (1 = no warp)."""
    ts = [float(t) for t in timesteps]
    for i, t in enumerate(ts):
        if not math.isfinite(t) or not 0.0 < t <= 1000.0:
            raise LadderError(f"timestep {i} is {t}: timesteps must be in (0, 1000]")
    sig = [warp(t / 1000.0, shift) for t in ts]
    return Ladder(tuple(sig), base_steps if base_steps is not None else len(sig), name)


def uniform_ladder(num_steps: int, shift: float = SELF_FORCING_SHIFT, name: str = "uniform") -> Ladder:
    """``num_steps`` evenly spaced timesteps 1000, 1000(1-1/n), ... warped through ``shift``
    (Self-Forcing's base list is uniform_ladder(4, 5))."""
    if num_steps < 1:
        raise LadderError(f"num_steps must be >= 1, got {num_steps}")
    return flow_ladder([1000.0 * (1 - k / num_steps) for k in range(num_steps)], shift, name=name)


def self_forcing_ladder() -> Ladder:
    """Self-Forcing's fixed 4 levels: [1000, 750, 500, 250] warped through shift 5 =
    [1.0, 0.9375, 0.8333.., 0.625]."""
    return flow_ladder(SELF_FORCING_TIMESTEPS, SELF_FORCING_SHIFT, name="self_forcing")


def causvid_ladder() -> Ladder:
    """CausVid's 3 levels [1000, 757, 522].

    CausVid (warp off) feeds these timesteps to the model directly; shift 8 is the shift of its
    scheduler's 1000-point grid, which these values already lie on, so s = t/1000 (reconstruction:
    exact values instead of the nearest grid point, which differ by < 1e-3).
    """
    return flow_ladder(CAUSVID_TIMESTEPS, 1.0, name="causvid")


def extended_ladder(
    base: Ladder | None = None, max_steps: int = DEFAULT_MAX_STEPS, shift: float | None = None
) -> Ladder:
    """``base`` (default Self-Forcing's) plus lower levels up to ``max_steps`` levels in all.

    Reconstruction: the extra levels halve the last base timestep repeatedly (250 -> 125 -> 62.5 ...)
    and are warped through the same shift (default: Self-Forcing's 5 for the Self-Forcing base, no warp
    for others), giving s = 0.4167, 0.25, 0.1389, ... after Self-Forcing's 0.625. ``base_steps`` stays
    the base's, so the fixed schedule and the speed-up reference do not change.
    """
    base = base or self_forcing_ladder()
    if max_steps < len(base):
        return base.truncated(max_steps)
    if shift is None:
        shift = SELF_FORCING_SHIFT if base.name == "self_forcing" else 1.0
    # Invert the warp to find the last base level's unwarped u, then keep halving it.
    s_last = base.sigmas[-1]
    u = s_last / (shift - (shift - 1.0) * s_last)
    extra = []
    for _ in range(max_steps - len(base)):
        u = u / 2.0
        extra.append(warp(u, shift))
    name = base.name if base.name.endswith("+extended") else base.name + "+extended"
    return Ladder(base.sigmas + tuple(extra), base.base_steps, name)


def custom_ladder(
    values: Sequence[float], *, unit: str = "auto", shift: float = 1.0, base_steps: int | None = None
) -> Ladder:
    """A user's list, as noise levels (unit='sigma', values in (0, 1]) or timesteps
    (unit='timestep', values in (0, 1000]); 'auto' reads lists with any value > 1 as timesteps.
    ``shift`` warps the list (1 = use as given)."""
    vals = [float(v) for v in values]
    if not vals:
        raise LadderError("a noise ladder needs at least one level")
    if unit == "auto":
        unit = "timestep" if max(vals) > 1.0 else "sigma"
    if unit == "timestep":
        return flow_ladder(vals, shift, base_steps=base_steps)
    if unit != "sigma":
        raise LadderError(f"unit must be 'sigma', 'timestep' or 'auto', got {unit!r}")
    for i, v in enumerate(vals):
        if not math.isfinite(v) or not 0.0 < v <= 1.0:
            raise LadderError(f"level {i} is {v}: noise levels must be in (0, 1]")
    sig = [warp(v, shift) for v in vals]
    return Ladder(tuple(sig), base_steps if base_steps is not None else len(sig))


def parse_ladder(text: str, *, unit: str = "auto", shift: float = 1.0, base_steps: int | None = None) -> Ladder:
    """Parse '1000, 750, 500, 250' (commas and/or spaces, optional brackets) into a ladder."""
    cleaned = text.replace("[", " ").replace("]", " ").replace(",", " ").split()
    try:
        vals = [float(v) for v in cleaned]
    except ValueError as e:
        raise LadderError(f"could not read the ladder {text!r}: {e}; write numbers separated by commas") from None
    return custom_ladder(vals, unit=unit, shift=shift, base_steps=base_steps)


LADDER_PRESETS = {
    "self_forcing": self_forcing_ladder,
    "self_forcing_extended": lambda: extended_ladder(self_forcing_ladder(), DEFAULT_MAX_STEPS),
    "causvid": causvid_ladder,
    "causvid_extended": lambda: extended_ladder(causvid_ladder(), 5),
}


def build_ladder(
    schedule: str = "self_forcing",
    *,
    max_steps: int | None = None,
    extra_steps: int = 0,
    custom_timesteps: str = "",
    shift: float | None = None,
    sigmas: Sequence[float] | None = None,
) -> Ladder:
    """The ladder a set of widgets describes (the sampler's and the Noise Ladder node's): one builder.

    sigmas: explicit noise levels (a host SIGMAS; a trailing 0 is dropped) override ``schedule``; the first
    min(4, n) are the fixed schedule. schedule: a preset name, or 'custom' for ``custom_timesteps`` (timesteps,
    warped by ``shift``). max_steps: the ladder's length (shorter truncates, longer appends extended_ladder's
    lower levels); else extra_steps: lower levels appended after the base ones. Raises LadderError.
    """
    if sigmas is not None:
        sig = [float(s) for s in sigmas]
        if sig and sig[-1] == 0.0:
            sig = sig[:-1]
        base = custom_ladder(sig, unit="sigma", base_steps=min(4, len(sig)))
        return base if max_steps is None else base.truncated(min(max_steps, len(base)))
    custom = schedule == "custom"
    if custom:
        base = parse_ladder(custom_timesteps, unit="timestep", shift=1.0 if shift is None else shift)
    else:
        base = ladder_preset(schedule)
    extend_shift = shift if custom else None
    if max_steps is not None:
        return extended_ladder(base, max_steps, shift=extend_shift)
    if extra_steps:
        return extended_ladder(base, len(base) + extra_steps, shift=extend_shift)
    return base


def ladder_preset(name: str) -> Ladder:
    try:
        return LADDER_PRESETS[name]()
    except KeyError:
        raise LadderError(f"unknown ladder preset {name!r}; choose one of {sorted(LADDER_PRESETS)}") from None
