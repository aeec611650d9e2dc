"""The reproduction's quality-vs-NFE chart, drawn with Pillow only (no plotting library is a dependency)."""
from __future__ import annotations

import math

from PIL import Image, ImageDraw, ImageFont

BG, FG, GRID = (255, 255, 255), (30, 30, 30), (220, 220, 220)
FIXED, DSA, TEACHER, CAL, SHIP = (50, 90, 200), (20, 150, 70), (200, 70, 50), (230, 130, 0), (150, 60, 180)


def quality_vs_nfe(results: list[dict], teacher_value: float | None = None, teacher_nfe: int | None = None,
                   title: str = "", width: int = 900, height: int = 560, target: str = "teacher_residual",
                   teacher_label: str = "", reference: dict | None = None) -> Image.Image:
    """Energy distance (lower is better, so drawn with the axis pointing down: better is up) against NFE
    per chunk; ``reference``: {label: value} horizontal lines (e.g. the blurred prompt-mean video)."""
    reference = reference or {}
    img = Image.new("RGB", (width, height), BG)
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    left, r, t, b = 70, 30, 40, 60
    xs = [p["nfe_per_chunk"] for p in results]
    ys = ([p["energy"] for p in results] + ([teacher_value] if teacher_value is not None else [])
          + list(reference.values()))
    x0, x1 = 1.0, max(xs) + 0.5
    pad = 0.06 * (max(ys) - min(ys) or 1.0)
    y0, y1 = min(ys) - pad, max(ys) + pad

    def px(x, y):
        return left + (x - x0) / (x1 - x0) * (width - left - r), t + (y - y0) / (y1 - y0) * (height - t - b)

    for xi in range(int(x0), int(x1) + 1):
        X, _ = px(xi, y0)
        d.line([(X, t), (X, height - b)], fill=GRID)
        d.text((X - 3, height - b + 6), str(xi), fill=FG, font=font)
    raw = (y1 - y0) / 8
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    digits = max(0, -math.floor(math.log10(step)))
    y = step * math.floor(y0 / step)
    while y <= y1:
        if y >= y0:
            _, Y = px(x0, y)
            d.line([(left, Y), (width - r, Y)], fill=GRID)
            d.text((8, Y - 5), f"{y:.{digits}f}", fill=FG, font=font)
        y += step
    d.rectangle([left, t, width - r, height - b], outline=FG)
    d.text((left + (width - left - r) // 2 - 150, height - 22),
           "NFE per chunk (denoising steps + 1 cache-commit pass)", fill=FG, font=font)
    d.text((8, t - 14), "energy distance to the prompt's real videos (lower is better, drawn upwards)", fill=FG,
           font=font)
    if title:
        d.text((left, 2), title, fill=FG, font=font)

    def series(kind, colour, label_fn):
        pts = sorted([p for p in results if p["kind"] == kind], key=lambda p: p["nfe_per_chunk"])
        P = [px(p["nfe_per_chunk"], p["energy"]) for p in pts]
        if len(P) > 1:
            d.line(P, fill=colour, width=2)
        for p, (X, Y) in zip(pts, P):
            d.ellipse([X - 4, Y - 4, X + 4, Y + 4], fill=colour)
            d.text((X + 5, Y + (4 if kind == "fixed" else -14)), label_fn(p), fill=colour, font=font)

    series("fixed", FIXED, lambda p: f"{int(p['value'])} steps")
    series("confidence", DSA, lambda p: f"thr {p['value']:g}")
    series("calibrated", CAL, lambda p: f"{p['value']:g}")
    for kind, colour in (("confidence_random", DSA), ("calibrated_random", CAL)):  # controls: hollow markers
        for p in results:
            if p["kind"] == kind:
                X, Y = px(p["nfe_per_chunk"], p["energy"])
                d.ellipse([X - 4, Y - 4, X + 4, Y + 4], outline=colour, width=1)
    series("shipped", SHIP, lambda p: f"{p['value']:g}")
    if teacher_value is not None:
        _, Y = px(x0, teacher_value)
        for X in range(left, width - r, 12):
            d.line([(X, Y), (X + 6, Y)], fill=TEACHER, width=2)
        d.text((left + 6, Y - 14), f"teacher, {teacher_label or f'{teacher_nfe} steps'} (bidirectional, whole video)",
               fill=TEACHER, font=font)
    for name, v in reference.items():
        _, Y = px(x0, v)
        for X in range(left, width - r, 8):
            d.line([(X, Y), (X + 3, Y)], fill=(120, 120, 120), width=1)
        d.text(((left + width - r) // 2, Y - 14), name, fill=(90, 90, 90), font=font)
    # legend
    has_ship = any(p["kind"] == "shipped" for p in results)
    lx, ly = width - r - 330, height - b - (86 if has_ship else 68)
    d.rectangle([lx - 8, ly - 8, width - r - 8, ly + (84 if has_ship else 66)], fill=BG, outline=GRID)
    if has_ship:
        d.line([(lx, ly + 58), (lx + 24, ly + 58)], fill=SHIP, width=3)
        d.text((lx + 30, ly + 52), "shipped head (x0_agreement, median -> 0.75)", fill=FG, font=font)
    d.line([(lx, ly + 40), (lx + 24, ly + 40)], fill=CAL, width=3)
    d.text((lx + 30, ly + 34), "DSA, head-only calibrated head (x0_agreement)", fill=FG, font=font)
    d.line([(lx, ly + 4), (lx + 24, ly + 4)], fill=FIXED, width=3)
    d.text((lx + 30, ly - 2), "fixed steps (Self-Forcing sampler)", fill=FG, font=font)
    d.line([(lx, ly + 22), (lx + 24, ly + 22)], fill=DSA, width=3)
    d.text((lx + 30, ly + 16), f"DSA, jointly trained head ({target})", fill=FG, font=font)
    d.text((lx, ly + (70 if has_ship else 52) - 2), "hollow: matched-random control of a run", fill=FG, font=font)
    return img
