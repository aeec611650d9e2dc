"""Calibration tables: what a confidence threshold costs on one head (or the heuristic on one generator).

A head's confidences live on a scale of their own, so a threshold number means nothing until it is measured.
A table holds, for a grid of thresholds, the mean steps per chunk and the NFE relative to the fixed base schedule
measured on held-out rollouts of the head's generator (and, where a quality measure exists, the quality with
its interval). The presets are defined by cost and resolved per table (reconstruction, docs/method.md):
fast = the threshold whose NFE is about 50 % of the fixed schedule's, balanced about 70 %, quality about 100 %
(the fixed schedule's NFE, redistributed between chunks).

NFE per chunk = steps + 1 (the t = 0 cache commit), as in records.py: the ratio is (steps + 1) / (base + 1).

Tables travel in safetensors metadata: a head's under ``META_HEAD`` (in the head file, or in a generator+head
file), the heuristic policy's per generator under ``META_HEURISTIC``. ``python -m dsa_core.calibrate_presets``
measures and writes them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

META_HEAD = "dsa.calibration"
META_HEURISTIC = "dsa.calibration.heuristic"

# The presets by cost: NFE relative to the fixed base schedule's (steps + 1 commit per chunk).
PRESET_COST = {"fast": 0.5, "balanced": 0.7, "quality": 1.0}


def nfe_ratio(mean_steps: float, base_steps: int) -> float:
    """NFE per chunk relative to the fixed base schedule's: (steps + 1) / (base_steps + 1)."""
    return (mean_steps + 1.0) / (base_steps + 1.0)


def steps_for_ratio(ratio: float, base_steps: int) -> float:
    """The mean steps per chunk whose NFE is ``ratio`` of the fixed base schedule's."""
    return ratio * (base_steps + 1.0) - 1.0


@dataclass(frozen=True)
class CalibrationRow:
    threshold: float
    mean_steps: float  # per chunk, over all rollout chunks
    nfe_ratio: float  # relative to the fixed base schedule
    quality: tuple | None = None  # (mean, low, high): 95 % bootstrap over videos, where a measure exists


@dataclass(frozen=True)
class CalibrationTable:
    source: str  # 'head' | 'heuristic'
    base_steps: int
    min_steps: int
    max_steps: int
    ladder: str  # the ladder's name (e.g. 'self_forcing')
    rows: tuple  # CalibrationRow, sorted by threshold
    presets: dict  # preset name -> threshold
    reached: dict = field(default_factory=dict)  # preset name -> measured NFE ratio of its threshold
    quality_name: str | None = None  # e.g. 'cond (MSE, lower is better)'
    rollouts: dict = field(default_factory=dict)  # what was rolled out: videos, chunks, prompts, seeds

    def __post_init__(self):
        object.__setattr__(self, "rows", tuple(sorted(self.rows, key=lambda r: r.threshold)))

    # ---- reading -------------------------------------------------------------------------------------
    def _interp(self, threshold: float, attr: str) -> float:
        rows = self.rows
        t = float(threshold)
        if t <= rows[0].threshold:
            return getattr(rows[0], attr)
        for a, b in zip(rows, rows[1:]):
            if t <= b.threshold:
                if b.threshold == a.threshold:
                    return getattr(b, attr)
                w = (t - a.threshold) / (b.threshold - a.threshold)
                return getattr(a, attr) + w * (getattr(b, attr) - getattr(a, attr))
        return getattr(rows[-1], attr)

    def mean_steps_at(self, threshold: float) -> float:
        """Expected mean steps per chunk at ``threshold`` (linear between measured thresholds)."""
        return self._interp(threshold, "mean_steps")

    def nfe_ratio_at(self, threshold: float) -> float:
        return nfe_ratio(self.mean_steps_at(threshold), self.base_steps)

    def threshold_for_mean_steps(self, mean_steps: float) -> float:
        """The lowest threshold expected to spend ``mean_steps`` per chunk (on the table's non-decreasing
        envelope, linear between measured thresholds); the table's ends outside its range."""
        env, best = [], float("-inf")
        for r in self.rows:
            best = max(best, r.mean_steps)
            env.append((r.threshold, best))
        if mean_steps <= env[0][1]:
            return env[0][0]
        for (t0, m0), (t1, m1) in zip(env, env[1:]):
            if m0 < mean_steps <= m1:
                return t0 + (mean_steps - m0) / (m1 - m0) * (t1 - t0)
        return env[-1][0]

    def expected(self, threshold: float) -> dict:
        """What the GUI shows before a run: mean steps per chunk, NFE ratio and speed-up vs the fixed schedule."""
        m = self.mean_steps_at(threshold)
        r = nfe_ratio(m, self.base_steps)
        return {"mean_steps": m, "nfe_ratio": r, "speedup": 1.0 / r, "source": self.source}

    # ---- storage -------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["rows"] = [asdict(r) for r in self.rows]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "CalibrationTable":
        rows = tuple(
            CalibrationRow(
                float(r["threshold"]),
                float(r["mean_steps"]),
                float(r["nfe_ratio"]),
                None if r.get("quality") is None else tuple(float(v) for v in r["quality"]),
            )
            for r in d["rows"]
        )
        if not rows:
            raise ValueError("a calibration table needs at least one row")
        return cls(
            source=str(d["source"]),
            base_steps=int(d["base_steps"]),
            min_steps=int(d["min_steps"]),
            max_steps=int(d["max_steps"]),
            ladder=str(d.get("ladder", "")),
            rows=rows,
            presets={str(k): float(v) for k, v in d["presets"].items()},
            reached={str(k): float(v) for k, v in d.get("reached", {}).items()},
            quality_name=d.get("quality_name"),
            rollouts=dict(d.get("rollouts", {})),
        )

    @classmethod
    def from_json(cls, text: str) -> "CalibrationTable":
        return cls.from_dict(json.loads(text))


def table_from_metadata(metadata: dict | None, key: str = META_HEAD) -> CalibrationTable | None:
    """The table stored under ``key`` in safetensors metadata, or None when there is none. A malformed table
    raises ValueError naming the key (a file that claims a table must hold a readable one)."""
    text = (metadata or {}).get(key)
    if text is None:
        return None
    try:
        return CalibrationTable.from_json(text)
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(
            f"the calibration table in metadata '{key}' is unreadable ({e}); recalibrate the file"
        ) from None


def presets_from_rows(rows, base_steps: int, costs: dict = PRESET_COST) -> tuple[dict, dict]:
    """(preset -> threshold, preset -> its measured NFE ratio): per preset the measured row whose NFE ratio is
    nearest its cost (ties: the lower threshold, the cheaper)."""
    presets, reached = {}, {}
    for name, cost in costs.items():
        best = min(rows, key=lambda r: (abs(r.nfe_ratio - cost), r.threshold))
        presets[name], reached[name] = best.threshold, best.nfe_ratio
    return presets, reached
