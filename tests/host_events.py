"""Checks on the events a host sends to the front end that hold on every supported host version."""

from __future__ import annotations


def assert_progress_reaches(progress: list[dict], steps: int) -> None:
    """Progress events of one node rise and end at `steps` of `steps`.

    How many intermediate updates arrive is the host's choice (ComfyUI 0.33 forwards at most one per 100 ms, and
    always the first and the last), so only the shape is checked, not the count."""
    values = [p["value"] for p in progress]
    assert values, "no progress events"
    assert all(a < b for a, b in zip(values, values[1:])), f"progress does not rise: {values}"
    assert 1 <= values[0] and values[-1] == steps, f"progress {values} does not end at {steps}"
    assert all(p["max"] == steps for p in progress), f"progress max is not {steps}: {progress}"
