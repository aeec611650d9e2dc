"""What a run is expected to cost before it runs: the mean steps per chunk, the NFE relative to the fixed base
schedule and the speed-up, for the node's policy and threshold, from the calibration table of the confidence it
reads (the head's, or the generator's for the heuristic). The nodes put it in the report beside the measured
figure; the front end asks for it (nodes/routes.py) while the artist moves the slider. One implementation for both.
"""

from __future__ import annotations

from .calibration import CalibrationTable, nfe_ratio
from .policies import THRESHOLD_PRESETS, threshold_from_preset

UNCALIBRATED_NOTE = (
    "{what} has no calibration table: presets keep their uncalibrated numbers ({numbers}) and no cost can be "
    "expected; calibrate it with python -m dsa_core.calibrate_presets"
)


def table_for(
    policy: str, head_table: CalibrationTable | None, heuristic_table: CalibrationTable | None, has_head: bool
):
    """(the table the policy's confidence is read against, what that confidence is: 'head' | 'heuristic' | None).
    A budget reads the head when one is connected, else the heuristic."""
    if policy == "confidence" or (policy == "budget" and has_head):
        return head_table, "head"
    if policy in ("heuristic", "budget"):
        return heuristic_table, "heuristic"
    return None, None


def expected_cost(
    policy: str,
    threshold_preset: str,
    threshold: float,
    *,
    mean_steps: float | None = None,
    max_steps: int = 6,
    base_steps: int = 4,
    head_table: CalibrationTable | None = None,
    heuristic_table: CalibrationTable | None = None,
    has_head: bool = True,
) -> dict:
    """{'mean_steps', 'nfe_ratio', 'speedup'} (None when nothing can be expected), 'threshold' (the resolved
    one, None for fixed / budget), 'presets' (name -> threshold for this confidence), 'source' ('head',
    'heuristic', 'fixed', 'budget'), 'calibrated' and a one-line 'note' (empty when all is calibrated)."""
    table, source = table_for(policy, head_table, heuristic_table, has_head)
    presets = dict(table.presets) if table is not None else dict(THRESHOLD_PRESETS)
    out = {"threshold": None, "presets": presets, "source": source or policy, "calibrated": table is not None}
    note = ""
    if source is not None and table is None:
        what = "this head" if source == "head" else "the heuristic on this model"
        numbers = ", ".join(f"{k} {v}" for k, v in THRESHOLD_PRESETS.items())
        note = UNCALIBRATED_NOTE.format(what=what, numbers=numbers)
    m = None
    if policy == "fixed":
        m = float(max_steps)
    elif policy == "budget":
        m = float(mean_steps)
    else:
        thr = threshold_from_preset(threshold_preset, threshold, table)
        out["threshold"] = thr
        if table is not None:
            m = table.mean_steps_at(thr)
            if max_steps != table.max_steps:
                note = (
                    f"the table was measured with max_steps {table.max_steps}, this node has {max_steps}: "
                    "the expected cost is approximate"
                )
    if m is None:
        out.update(mean_steps=None, nfe_ratio=None, speedup=None)
    else:
        r = nfe_ratio(m, base_steps)
        out.update(mean_steps=m, nfe_ratio=r, speedup=1.0 / r)
    out["note"] = note
    return out
