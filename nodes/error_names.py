"""The pack's exception types as the host shows them: by their short names.

The host labels an execution error with the exception's module path, which for a custom node is its folder
on disk (custom_nodes.<folder>.nodes.host_model.DSAInputError). Our errors carry messages written for the
artist; their type names alone are enough, and the host prints a bare name for builtins' types.
"""

from __future__ import annotations

from ..dsa_core.checkpoint import CheckpointError
from ..dsa_core.finite import NonFiniteError
from ..dsa_core.memory_estimate import InsufficientMemory
from ..dsa_core.prompt_files import PromptFileError
from ..dsa_core.schedules import LadderError
from .host_model import DSAInputError

PACK_ERRORS = (DSAInputError, CheckpointError, NonFiniteError, InsufficientMemory, PromptFileError, LadderError)


def use_short_names() -> None:
    for cls in PACK_ERRORS:
        cls.__module__ = "builtins"
