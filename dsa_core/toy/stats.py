"""Small statistics for the toy evaluation: percentile bootstrap confidence intervals (plain and paired)
and Spearman's rank correlation. Pure torch, seeded, no SciPy."""

from __future__ import annotations

import torch

BOOTSTRAP = 2000


def _as_tensor(v) -> torch.Tensor:
    return torch.as_tensor(v, dtype=torch.float64).flatten()


def bootstrap_ci(values, n: int = BOOTSTRAP, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high): the mean of ``values`` (one per independent unit, e.g. a prompt x seed pair)
    and the percentile bootstrap ``level`` interval of that mean (resampling units with replacement)."""
    x = _as_tensor(values)
    if x.numel() == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(x.numel(), (n, x.numel()), generator=g)
    means = x[idx].mean(1)
    a = (1.0 - level) / 2.0
    lo, hi = torch.quantile(means, torch.tensor([a, 1.0 - a], dtype=torch.float64)).tolist()
    return float(x.mean()), lo, hi


def paired_diff_ci(a, b, n: int = BOOTSTRAP, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Mean of a - b over paired units and its bootstrap interval (the pairs are resampled together)."""
    a, b = _as_tensor(a), _as_tensor(b)
    if a.shape != b.shape:
        raise ValueError(f"paired values differ in length: {a.numel()} vs {b.numel()}")
    return bootstrap_ci(a - b, n, level, seed)


def verdict(diff_ci: tuple[float, float, float]) -> str:
    """'better' / 'worse' (lower is better: the whole interval of a - b below / above 0) or 'tie'."""
    _, lo, hi = diff_ci
    return "better" if hi < 0 else "worse" if lo > 0 else "tie"


def spearman(a, b) -> float:
    """Spearman's rank correlation (average ranks for ties); nan for fewer than 3 values or no spread."""
    x, y = _as_tensor(a), _as_tensor(b)
    if x.numel() < 3:
        return float("nan")

    def ranks(v):
        order = v.argsort()
        r = torch.empty_like(v)
        r[order] = torch.arange(v.numel(), dtype=torch.float64)
        for u in v.unique():  # average ranks of ties
            m = v == u
            if int(m.sum()) > 1:
                r[m] = r[m].mean()
        return r

    rx, ry = ranks(x), ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = float(rx.norm() * ry.norm())
    return float((rx * ry).sum()) / den if den > 0 else float("nan")
