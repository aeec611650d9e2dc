"""The widget ranges a node declares, enforced for the inputs its validate_inputs takes.

ComfyUI skips its own min/max checks for every input a node's validate_inputs names (it expects the node to
check them). ``enforce_widget_ranges`` wraps a validate_inputs so those inputs are checked against the
io.Int / io.Float ranges read from the node's own define_schema, before the node's other checks: one place,
and a range changed in the schema is enforced as changed. The wrapper keeps the wrapped function's signature,
which is how the host decides which inputs to pass (and which checks to skip).
"""

from __future__ import annotations

import functools
import inspect

from comfy_api.latest import io


def declared_ranges(schema: io.Schema) -> dict[str, tuple]:
    """{input id: (min, max)} for the schema's numeric widgets (None where a bound is not declared)."""
    out = {}
    for inp in schema.inputs:
        if isinstance(inp, (io.Int.Input, io.Float.Input)):
            out[inp.id] = (getattr(inp, "min", None), getattr(inp, "max", None))
    return out


def range_problem(ranges: dict[str, tuple], values: dict) -> str | None:
    """The first value outside its declared range, in words, or None."""
    for name, value in values.items():
        lo, hi = ranges.get(name, (None, None))
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if lo is not None and value < lo:
            return f"{name} {value} is below its minimum {lo}: use a value from {lo} to {hi}"
        if hi is not None and value > hi:
            return f"{name} {value} is above its maximum {hi}: use a value from {lo} to {hi}"
    return None


def clamp(ranges: dict[str, tuple], name: str, value):
    """``value`` moved inside the declared range of ``name`` (for suggestions in messages)."""
    lo, hi = ranges.get(name, (None, None))
    if lo is not None:
        value = max(lo, value)
    if hi is not None:
        value = min(hi, value)
    return value


def enforce_widget_ranges(validate):
    """Decorator for a node's validate_inputs (put it under @classmethod)."""

    @functools.wraps(validate)
    def checked(cls, **values):
        return range_problem(declared_ranges(cls.define_schema()), values) or validate(cls, **values)

    checked.__signature__ = inspect.signature(validate)
    return checked
