"""A combo widget whose options the host checks at queue time on every host.

ComfyUI 0.33.0 checks a V3 combo's value against its options when a prompt is queued; 0.3.75 checks only
inputs whose V1 type is the option list itself (the classic form) and lets any other value through to the
node. ``Combo`` declares that classic form on hosts that need it, so a value that is not an option gets the
host's own node error, once, under its input, before anything runs (the node's schema check,
nodes/input_checks.py, stays as the backstop when it runs).
"""

from __future__ import annotations

import functools
import inspect

from comfy_api.latest import io


@functools.lru_cache(maxsize=1)
def host_checks_v3_combos() -> bool:
    """Whether the host's queue-time validation reads a V3 combo's options (its ``validate_inputs`` knows
    the COMBO type); False on ComfyUI 0.3.75."""
    import execution  # the host's own module, loaded before custom nodes

    try:
        source = inspect.getsource(execution.validate_inputs)
    except (OSError, TypeError):
        return False  # unknown: declare the option list, which every host checks
    return "Combo.io_type" in source


class Combo(io.Combo.Input):
    """``io.Combo.Input`` (same arguments, same widget) that is checked at queue time on every host."""

    def get_io_type(self):
        if host_checks_v3_combos() or not self.options:
            return super().get_io_type()
        return list(self.options)
