"""DSA Noise Ladder: the noise levels a DSA sampler walks down, as the host's SIGMAS type.

Artists can inspect a ladder, plot it with the host's sigma tools, or wire a custom one into the DSA sampler.
"""

from __future__ import annotations

import torch
from comfy_api.latest import io

from ..dsa_core import schedules
from . import input_checks
from .combo_input import Combo

SCHEDULES = ["self_forcing", "causvid", "custom"]


def build_ladder(schedule: str, extra_steps: int, custom_timesteps: str, custom_shift: float) -> schedules.Ladder:
    """The ladder this node's widgets describe; raises schedules.LadderError with a message for the artist."""
    return schedules.build_ladder(
        schedule, extra_steps=extra_steps, custom_timesteps=custom_timesteps, shift=custom_shift
    )


class DSANoiseLadder(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DSANoiseLadder",
            display_name="DSA Noise Ladder",
            category="DSA",
            description="The noise levels (flow-matching sigmas, 1.0 = pure noise) each video chunk walks down. "
            "The base levels are the fixed few-step schedule; extra levels are what hard chunks "
            "get for additional refinement.",
            inputs=[
                Combo(
                    "schedule",
                    options=SCHEDULES,
                    default="self_forcing",
                    tooltip="self_forcing: 1000/750/500/250 warped by shift 5 (Self-Forcing). "
                    "causvid: 1000/757/522 (CausVid). custom: the timesteps below.",
                ),
                io.Int.Input(
                    "extra_steps",
                    default=2,
                    min=0,
                    max=8,
                    tooltip="Lower noise levels appended after the base ones (halving the last "
                    "timestep each time): the extra refinement a hard chunk may receive.",
                ),
                io.String.Input(
                    "custom_timesteps",
                    default="1000, 750, 500, 250",
                    tooltip="Only for schedule=custom: decreasing timesteps in (0, 1000], "
                    "the first one 1000, separated by commas.",
                ),
                io.Float.Input(
                    "custom_shift",
                    default=5.0,
                    min=0.01,
                    max=100.0,
                    step=0.01,
                    tooltip="Only for schedule=custom: the flow-matching shift applied to the "
                    "timesteps (1 = use them as given).",
                ),
            ],
            outputs=[
                io.Sigmas.Output(display_name="sigmas"),
                io.String.Output(display_name="summary"),
            ],
        )

    @classmethod
    @input_checks.validates("custom_timesteps")
    def validate_inputs(cls, custom_timesteps) -> bool | str:
        """The timesteps text on its own (whatever the schedule: the list one may switch to); the ladder the
        widgets make together is built when the node runs."""
        try:
            schedules.parse_ladder(custom_timesteps, unit="timestep")
        except schedules.LadderError as e:
            return str(e)
        return True

    @classmethod
    def execute(cls, schedule, extra_steps, custom_timesteps, custom_shift) -> io.NodeOutput:
        ladder = build_ladder(schedule, extra_steps, custom_timesteps, custom_shift)
        # Host convention: SIGMAS end with the final 0 (clean).
        sigmas = torch.tensor(list(ladder.sigmas) + [0.0], dtype=torch.float32)
        summary = (
            f"{ladder.name}: {len(ladder)} levels, the first {ladder.base_steps} are the fixed schedule; "
            "sigmas " + ", ".join(f"{s:.4f}" for s in ladder.sigmas)
        )
        return io.NodeOutput(sigmas, summary)
