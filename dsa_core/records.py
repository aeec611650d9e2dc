"""What a sampling run did, per chunk: the numbers users see (steps per frame, speed-up) and the
JSON the nodes show or save.

NFE counts every generator forward: the denoising steps plus the t = 0 cache commit of each chunk
(steps + 1), and separately the t = 0 passes that prime context frames or recache after a prompt switch.
The speed-up is measured against the fixed schedule on the same chunks:
chunks * (base_steps + 1) / sum(steps + 1) (reconstruction: the paper reports FPS, not this ratio).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field


@dataclass
class ChunkRecord:
    chunk_index: int  # absolute index of the chunk in the state's lineage (keys its noise)
    frame_start: int  # first latent frame of the chunk
    num_frames: int
    steps: int = 0  # denoising steps taken
    sigmas: list = field(default_factory=list)  # noise level of each step taken
    timesteps: list = field(default_factory=list)  # 1000 * sigma
    confidence: list = field(default_factory=list)  # min over frames after each step (None if not computed)
    frame_confidence: list = field(default_factory=list)  # per step: per-frame confidences (batch-min)
    stop_reason: str = ""  # 'fixed' | 'confident' | 'max_steps' | 'budget' (the allowance was spent)
    threshold: float | None = None  # the confidence threshold this chunk ran under (a budget's varies by chunk)
    nfe: int = 0  # steps + 1 commit pass
    wall_time_s: float = 0.0
    head_time_s: float = 0.0  # time spent in the confidence head (or heuristic) for this chunk

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RunRecord:
    policy: dict = field(default_factory=dict)
    ladder: dict = field(default_factory=dict)
    noise: dict = field(default_factory=dict)
    base_steps: int = 4
    chunks: list = field(default_factory=list)  # ChunkRecord
    extra_nfe: int = 0  # t = 0 passes outside chunks (priming context, recache on prompt switch)
    wall_time_s: float = 0.0
    interrupted: bool = False
    allowance: dict | None = None  # budget runs: the lineage's BudgetAllowance after this call (policies.py)

    @property
    def chunk_nfe(self) -> int:
        return sum(c.nfe for c in self.chunks)

    @property
    def total_nfe(self) -> int:
        return self.chunk_nfe + self.extra_nfe

    @property
    def total_steps(self) -> int:
        return sum(c.steps for c in self.chunks)

    @property
    def frames(self) -> int:
        return sum(c.num_frames for c in self.chunks)

    @property
    def mean_steps_per_chunk(self) -> float:
        return self.total_steps / len(self.chunks) if self.chunks else 0.0

    @property
    def mean_steps_per_frame(self) -> float:
        """Frame-weighted mean of the steps each latent frame received."""
        f = self.frames
        return sum(c.steps * c.num_frames for c in self.chunks) / f if f else 0.0

    @property
    def fixed_nfe(self) -> int:
        """NFE the fixed schedule (base_steps + 1 per chunk) would have used on these chunks."""
        return len(self.chunks) * (self.base_steps + 1)

    @property
    def speedup(self) -> float:
        return self.fixed_nfe / self.chunk_nfe if self.chunk_nfe else 0.0

    def summary(self) -> str:
        return (
            f"{len(self.chunks)} chunks, {self.frames} latent frames, {self.mean_steps_per_frame:.2f} "
            f"steps/frame, NFE {self.total_nfe} (fixed {self.base_steps}-step: {self.fixed_nfe}), "
            f"speed-up x{self.speedup:.2f}, {self.wall_time_s:.2f} s" + (" [interrupted]" if self.interrupted else "")
        )

    def to_dict(self) -> dict:
        return {
            "policy": self.policy,
            "ladder": self.ladder,
            "noise": self.noise,
            "base_steps": self.base_steps,
            "chunks": [c.to_dict() for c in self.chunks],
            "extra_nfe": self.extra_nfe,
            "wall_time_s": self.wall_time_s,
            "interrupted": self.interrupted,
            "allowance": self.allowance,
            "total_nfe": self.total_nfe,
            "fixed_nfe": self.fixed_nfe,
            "speedup": self.speedup,
            "mean_steps_per_frame": self.mean_steps_per_frame,
            "mean_steps_per_chunk": self.mean_steps_per_chunk,
        }

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)
