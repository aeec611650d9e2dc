"""Every widget value checked against the node's own schema, each problem told once, under the input it concerns.

How the host files a node's validate_inputs answer (ComfyUI 0.3.75 and 0.33.0 alike): the same message once per
input the validator takes, and the host's own range and list checks are skipped for those inputs. Only values
of the inputs it takes reach it (hidden inputs such as the prompt are empty at queue time). So:

- ``validates(name)``: a node's validate_inputs takes at most ONE input. Its message lands once, on that input;
  the decorator checks that input's declared range/options/finiteness (the host skips them for it) and leaves
  a missing value to the host's own ``required_input_missing``.
- Every other input keeps the host's own queue-time checks (ranges; list options on both hosts, 0.3.75 through
  the classic option list nodes/combo_input.py declares), one message each under the input.
- ``check_widgets_when_run`` (applied to every node of the pack in nodes/__init__.py): when the node runs,
  before anything else, every widget value is checked against the schema (options of each combo, range and
  finiteness of each number): this covers NaN in numbers no validator takes (NaN passes the host's range
  checks), callers that skip the queue's checks, and nodes and inputs added later, with no list to keep. Rules
  between several inputs are checked by the node in execute too (one execution error): at queue time they
  would be filed under every input they read.
"""

from __future__ import annotations

import functools
import inspect
import math

from comfy_api.latest import io

from .host_model import DSAInputError

LIST_SHOWN = 12  # longer option lists (file names) are summarised


def widget_problem(inp, value) -> str | None:
    """What is wrong with one widget value of schema input ``inp``, in words, or None."""
    name = inp.id
    if isinstance(inp, io.Combo.Input):
        options = list(inp.options or [])
        if value not in options:
            shown = ", ".join(map(repr, options[:LIST_SHOWN])) + (", ..." if len(options) > LIST_SHOWN else "")
            if not options:
                return f"{name} {value!r}: there is nothing to choose (no files found for this list)"
            return f"{name} {value!r} is not one of its options: choose one of {shown}"
        return None
    if isinstance(inp, (io.Int.Input, io.Float.Input)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None  # the host converts numbers and reports what it cannot convert
        if isinstance(value, float) and not math.isfinite(value):
            return f"{name} is {value}: use a number" + _range_words(inp)
        lo, hi = getattr(inp, "min", None), getattr(inp, "max", None)
        if lo is not None and value < lo:
            return f"{name} {value} is below its minimum {lo}: use a value from {lo} to {hi}"
        if hi is not None and value > hi:
            return f"{name} {value} is above its maximum {hi}: use a value from {lo} to {hi}"
    return None


def _range_words(inp) -> str:
    lo, hi = getattr(inp, "min", None), getattr(inp, "max", None)
    return "" if lo is None and hi is None else f" from {lo} to {hi}"


def schema_problem(schema: io.Schema, values: dict) -> str | None:
    """The first widget value (in schema order) the schema does not allow; absent/None values are skipped."""
    for inp in schema.inputs:
        if inp.id in values and values[inp.id] is not None:
            problem = widget_problem(inp, values[inp.id])
            if problem:
                return problem
    return None


def validates(name: str):
    """Decorator for a validate_inputs taking the one input ``name`` (put it under @classmethod); the
    decorated function gets that value and returns True or a message."""

    def wrap(check):
        params = [p for p in inspect.signature(check).parameters if p != "cls"]
        if params != [name]:
            raise TypeError(f"{check.__qualname__} must take exactly the input {name!r}, not {params}")

        @functools.wraps(check)
        def validate_inputs(cls, **values):
            if name not in values:
                return True  # missing or linked: the host reports a missing input itself
            inp = next(i for i in cls.define_schema().inputs if i.id == name)
            return widget_problem(inp, values[name]) or check(cls, values[name])

        validate_inputs.__signature__ = inspect.Signature(
            [
                inspect.Parameter("cls", inspect.Parameter.POSITIONAL_OR_KEYWORD),
                inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD),
            ]
        )
        return validate_inputs

    return wrap


def check_widgets_when_run(node: type[io.ComfyNode]) -> None:
    """Wrap ``node.execute`` so that the schema's rules hold for every widget value before the node does
    anything; a violation is one DSAInputError naming the input. Once per class (idempotent)."""
    execute = node.__dict__["execute"].__func__
    if not getattr(execute, "_checks_widgets", False):
        node.execute = classmethod(checked_execute(execute))


def checked_execute(execute):
    """``execute`` (the function under a node's @classmethod) preceded by the schema check of every widget."""

    def check(cls, values):
        problem = schema_problem(cls.define_schema(), values)
        if problem:
            raise DSAInputError(problem)

    if inspect.iscoroutinefunction(execute):

        @functools.wraps(execute)
        async def run_async(cls, **values):
            check(cls, values)
            return await execute(cls, **values)

        run_async._checks_widgets = True
        return run_async

    @functools.wraps(execute)
    def run(cls, **values):
        check(cls, values)
        return execute(cls, **values)

    run._checks_widgets = True
    return run
