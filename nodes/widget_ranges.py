"""The numeric ranges a node schema declares, read from its own define_schema (for suggestions that stay
inside them). The checks of values against the schema are in nodes/input_checks.py.
"""

from __future__ import annotations

from comfy_api.latest import io


def declared_ranges(schema: io.Schema) -> dict[str, tuple]:
    """{input id: (min, max)} for the schema's numeric widgets (None where a bound is not declared)."""
    out = {}
    for inp in schema.inputs:
        if isinstance(inp, (io.Int.Input, io.Float.Input)):
            out[inp.id] = (getattr(inp, "min", None), getattr(inp, "max", None))
    return out


def clamp(ranges: dict[str, tuple], name: str, value):
    """``value`` moved inside the declared range of ``name`` (for suggestions in messages)."""
    lo, hi = ranges.get(name, (None, None))
    if lo is not None:
        value = max(lo, value)
    if hi is not None:
        value = min(hi, value)
    return value
