"""DSA Step Report: where the steps went, as an IMAGE chart, a text summary and a front-end event."""

from __future__ import annotations

import json

import torch
from comfy_api.latest import io, ui

from ..dsa_core.report_chart import chart_array
from .dsa_types import DSAReport
from .sampling import prompt_server

REPORT_EVENT = "dsa.report"


def summary_text(report: dict) -> str:
    chunks = report.get("chunks", [])
    pol = report.get("policy", {})
    threshold = f", threshold {pol['threshold']:.2f}" if pol.get("threshold") is not None else ""
    lines = [
        report.get("summary", ""),
        f"policy {pol.get('name')}{threshold}",
        "steps per chunk: " + " ".join(str(c["steps"]) for c in chunks),
        f"average {report.get('mean_steps_per_frame', 0):.2f} steps per latent frame; "
        f"NFE {report.get('total_nfe', 0)} "
        f"vs {report.get('fixed_nfe', 0)} for the fixed {report.get('base_steps', 4)}-step schedule "
        f"(speed-up x{report.get('speedup', 0):.2f}); {report.get('wall_time_s', 0):.2f} s",
    ]
    return "\n".join(line for line in lines if line)


class DSAStepReport(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DSAStepReport",
            display_name="DSA Step Report",
            category="DSA",
            description="Shows where the denoising steps went: steps per chunk, confidence after each step against "
            "the threshold, average steps per frame and the speed-up over the fixed schedule.",
            inputs=[
                DSAReport.Input("report", tooltip="The report output of DSA Confidence Sampler or AR Frame Extender."),
                io.Int.Input("width", default=768, min=256, max=4096, step=16, tooltip="Chart width in pixels."),
                io.Int.Input("height", default=432, min=160, max=4096, step=16, tooltip="Chart height in pixels."),
            ],
            outputs=[io.Image.Output(display_name="chart"), io.String.Output(display_name="summary")],
            hidden=[io.Hidden.unique_id],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, report, width, height) -> io.NodeOutput:
        image = torch.from_numpy(chart_array(report, width, height)).unsqueeze(0)
        text = summary_text(report)
        server = prompt_server()
        if server is not None:
            server.send_sync(
                REPORT_EVENT, {"node": cls.hidden.unique_id, "report": json.loads(json.dumps(report))}, server.client_id
            )
        return io.NodeOutput(image, text, ui=ui.PreviewText(text))
