"""The demo's streamed video: the sampler decodes every chunk with the toy codec (DSA Toy VAE on its vae input) and
sends the frames as they are made; this writes them into the output folder as they arrive (stream/frame_NNNN.jpg
and stream/live.webp, rewritten after every chunk, so a viewer watching the folder sees the video grow) and
reports the time to the first frame.
"""

from __future__ import annotations

import base64
import io
import os
import time
from pathlib import Path

FRAMES_EVENT = "dsa.frames"


def add_toy_vae(prompt: dict, sampler: str) -> None:
    """Connect a DSA Toy VAE to the sampler's vae input (unless the workflow already has a VAE there)."""
    inputs = prompt[sampler]["inputs"]
    if "vae" not in inputs:
        prompt["dsa_demo_toy_vae"] = {"class_type": "DSAToyVAE", "inputs": {"scale": 8}}
        inputs["vae"] = ["dsa_demo_toy_vae", 0]


class StreamWriter:
    def __init__(self, out: Path, t_queued: float):
        self.dir = out / "stream"
        self.dir.mkdir(parents=True, exist_ok=True)
        for old in self.dir.glob("frame_*.jpg"):
            old.unlink()
        self.t_queued = t_queued
        self.frames = []
        self.fps = 4.0
        self.first_frame_s = None  # from the sampler node's start (the node reports it)
        self.first_seen_s = None  # from queueing the prompt (this script's clock)

    def on_event(self, ev: dict) -> None:
        if ev.get("type") != FRAMES_EVENT:
            return
        from PIL import Image

        d = ev["data"]
        if d.get("chunk") is None:  # frames of a state being continued, not new ones
            return
        self.fps = d.get("frame_rate") or self.fps
        if self.first_seen_s is None:
            self.first_seen_s = time.time() - self.t_queued
            self.first_frame_s = d.get("first_frame_s")
        for i, url in enumerate(d["frames"]):
            raw = base64.b64decode(url.split(",", 1)[1])
            (self.dir / f"frame_{d['frame_start'] + i:04d}.jpg").write_bytes(raw)
            self.frames.append(Image.open(io.BytesIO(raw)).convert("RGB"))
        tmp = self.dir / "live.tmp.webp"
        self.frames[0].save(
            tmp,
            format="WEBP",
            save_all=True,
            append_images=self.frames[1:],
            duration=int(1000 / self.fps),
            loop=0,
            quality=90,
        )
        os.replace(tmp, self.dir / "live.webp")
        print(f"  streamed: {len(self.frames)} frames so far -> {self.dir / 'live.webp'}", flush=True)

    def summary(self) -> str:
        if self.first_seen_s is None:
            return "no streamed frames"
        return (
            f"time to first frame: {self.first_frame_s:.2f} s from the sampler's start "
            f"({self.first_seen_s:.2f} s after queueing); {len(self.frames)} frames streamed to {self.dir}"
        )


def wait_streaming(ws, prompt_id: str, writer: StreamWriter, timeout: float = 600) -> str:
    """Like WSClient.wait_prompt_end, handing every event to the writer as it arrives."""
    ends = {"execution_success": "success", "execution_interrupted": "interrupted", "execution_error": "error"}

    def step(ev):
        writer.on_event(ev)
        return ev["type"] in ends and ev.get("data", {}).get("prompt_id") == prompt_id

    ws.recv_until(step, timeout)
    return ends[ws.events[-1]["type"]]
