"""The step chart: where a run's denoising steps went, drawn with Pillow only (no plotting library).

Top: steps used per chunk (bars, coloured by why the chunk stopped) against the fixed schedule's step count.
Bottom: the confidence after each step of each chunk, against the threshold. Input is RunRecord.to_dict(), the
same data the nodes send to the front end, so the PNG and the GUI chart show one thing.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

BG = (24, 24, 28)
FG = (220, 220, 220)
GRID = (70, 70, 80)
COLOURS = {
    "confident": (80, 200, 120),
    "max_steps": (235, 150, 60),
    "fixed": (110, 150, 240),
    "interrupted": (200, 80, 80),
    "budget": (200, 120, 240),
}
THRESH = (240, 90, 90)
BUDGET = (200, 160, 20)


def _font():
    return ImageFont.load_default()


def draw_step_chart(report: dict, width: int = 768, height: int = 432) -> Image.Image:
    chunks = report.get("chunks", [])
    img = Image.new("RGB", (width, height), BG)
    d = ImageDraw.Draw(img)
    font = _font()
    pad_l, pad_r, pad_t = 44, 12, 26
    mid = int(height * 0.52)
    base_steps = int(report.get("base_steps", 4))
    threshold = (report.get("policy") or {}).get("threshold")
    title = (
        f"{len(chunks)} chunks  {report.get('mean_steps_per_frame', 0):.2f} steps/frame  "
        f"NFE {report.get('total_nfe', 0)} vs fixed {report.get('fixed_nfe', 0)}  "
        f"speed-up x{report.get('speedup', 0):.2f}"
    )
    d.text((pad_l, 6), title, fill=FG, font=font)
    if not chunks:
        d.text((pad_l, height // 2), "no chunks ran", fill=FG, font=font)
        return img
    max_steps = max([base_steps] + [c["steps"] for c in chunks])
    n = len(chunks)
    plot_w = width - pad_l - pad_r
    col = plot_w / n

    # Top panel: steps per chunk.
    top, bottom = pad_t + 4, mid - 18
    d.text((4, top), "steps", fill=FG, font=font)
    for s in range(0, max_steps + 1):
        y = bottom - (bottom - top) * s / max_steps
        d.line([(pad_l, y), (width - pad_r, y)], fill=GRID)
        d.text((pad_l - 14, y - 5), str(s), fill=FG, font=font)
    for i, c in enumerate(chunks):
        x0, x1 = pad_l + i * col + col * 0.15, pad_l + (i + 1) * col - col * 0.15
        y = bottom - (bottom - top) * c["steps"] / max_steps
        d.rectangle([x0, y, x1, bottom], fill=COLOURS.get(c.get("stop_reason", ""), FG))
    yb = bottom - (bottom - top) * base_steps / max_steps
    for x in range(pad_l, width - pad_r, 10):
        d.line([(x, yb), (x + 5, yb)], fill=FG, width=2)
    d.text((width - pad_r - 70, yb - 12), f"fixed = {base_steps}", fill=FG, font=font)
    budget = (report.get("policy") or {}).get("mean_steps")
    if budget is not None:  # policy budget: its mean steps per chunk
        y = bottom - (bottom - top) * float(budget) / max_steps
        for x in range(pad_l, width - pad_r, 6):
            d.line([(x, y), (x + 3, y)], fill=BUDGET, width=2)
        d.text((pad_l + 4, y - 12), f"budget {float(budget):g}", fill=BUDGET, font=font)

    # Bottom panel: confidence after each step.
    top, bottom = mid + 8, height - 22
    d.text((4, top), "conf.", fill=FG, font=font)
    for v in (0.0, 0.5, 1.0):
        y = bottom - (bottom - top) * v
        d.line([(pad_l, y), (width - pad_r, y)], fill=GRID)
        d.text((pad_l - 22, y - 5), f"{v:.1f}", fill=FG, font=font)
    if threshold is not None and 0.0 <= float(threshold) <= 1.0:
        y = bottom - (bottom - top) * float(threshold)
        d.line([(pad_l, y), (width - pad_r, y)], fill=THRESH, width=2)
        d.text((width - pad_r - 90, y - 12), f"threshold {float(threshold):.2f}", fill=THRESH, font=font)
    for i, c in enumerate(chunks):
        conf = [v for v in c.get("confidence", []) if v is not None]
        if not conf:
            continue
        xs = np.linspace(pad_l + i * col + col * 0.15, pad_l + (i + 1) * col - col * 0.15, max(len(conf), 2))
        pts = [(float(xs[k]), bottom - (bottom - top) * float(np.clip(v, 0, 1))) for k, v in enumerate(conf)]
        if len(pts) > 1:
            d.line(pts, fill=COLOURS.get(c.get("stop_reason", ""), FG), width=2)
        for x, y in pts:
            d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=FG)
    for i in range(n):
        if n <= 24 or i % max(1, n // 12) == 0:
            d.text((pad_l + i * col + col / 2 - 3, height - 14), str(i), fill=FG, font=font)
    return img


def chart_array(report: dict, width: int = 768, height: int = 432) -> np.ndarray:
    """The chart as float32 [H, W, 3] in 0..1 (ComfyUI's IMAGE layout without the batch dim)."""
    return np.asarray(draw_step_chart(report, width, height), dtype=np.float32) / 255.0
