"""The reproduction's charts, drawn with Pillow only (no plotting library is a dependency)."""

from __future__ import annotations

import math

from PIL import Image, ImageDraw, ImageFont

BG, FG, GRID = (255, 255, 255), (30, 30, 30), (220, 220, 220)
SERIES = {  # kind -> (colour, legend)
    "fixed": ((50, 90, 200), "fixed steps 1..6 (Self-Forcing sampler)"),
    "joint": ((20, 150, 70), "DSA, jointly trained head (threshold sweep)"),
    "calibrated": ((230, 130, 0), "DSA, head-only calibrated head"),
    "heuristic": ((120, 120, 120), "heuristic policy (x0 change, no head)"),
    "index": ((150, 60, 180), "per-chunk-index schedule (chosen on selection half)"),
    "oracle": ((200, 40, 40), "oracle allocation (upper bound)"),
    "motion": ((0, 150, 160), "motion-aware schedule (steps by context kind)"),
    "confidence": ((20, 150, 70), "perfect model + posterior top weight (threshold sweep)"),
    "position_schedule": ((150, 60, 180), "best per-position schedule"),
    "motion_schedule": ((0, 150, 160), "best motion-aware schedule"),
    "preset": ((0, 160, 160), "presets by cost of the shipped head (calibration table)"),
    "budget": ((200, 160, 20), "step budget (mean steps per chunk)"),
    "budget_schedule": ((120, 80, 40), "index schedule at a budget's NFE (chosen on selection)"),
}


def _axes(d, width, height, left, r, t, b, x0, x1, y0, y1, font, xlabel, ylabel):
    def px(x, y):
        return left + (x - x0) / (x1 - x0) * (width - left - r), t + (y1 - y) / (y1 - y0) * (height - t - b)

    for xi in range(int(math.ceil(x0)), int(x1) + 1):
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
            d.text((4, Y - 5), f"{y:.{digits}f}", fill=FG, font=font)
        y += step
    d.rectangle([left, t, width - r, height - b], outline=FG)
    d.text((left + (width - left - r) // 2 - 150, height - 22), xlabel, fill=FG, font=font)
    d.text((8, t - 14), ylabel, fill=FG, font=font)
    return px


def quality_vs_nfe(
    rows: list[dict], title: str = "", width: int = 980, height: int = 620, metric: str = "cond"
) -> Image.Image:
    """A held-out quality number against NFE per chunk, with 95% bootstrap intervals as error bars in both
    directions; controls as hollow markers. ``metric``: 'cond' (lower is better) or 'valid' (the share of valid
    videos, higher is better)."""
    img = Image.new("RGB", (width, height), BG)
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    left, r, t, b = 80, 30, 40, 60
    pts = [r for r in rows if r["heldout"].get(metric) and r["heldout"][metric][0] == r["heldout"][metric][0]]
    xs = [p["heldout"]["nfe_per_chunk"][k] for p in pts for k in (1, 2)]
    ys = [p["heldout"][metric][k] for p in pts for k in (1, 2)]
    x0, x1 = min(1.5, min(xs) - 0.2), max(xs) + 0.3
    pad = 0.05 * (max(ys) - min(ys) or 1e-3)
    y0, y1 = max(0.0, min(ys) - pad), max(ys) + pad
    px = _axes(
        d,
        width,
        height,
        left,
        r,
        t,
        b,
        x0,
        x1,
        y0,
        y1,
        font,
        "NFE per chunk (steps + 1 cache-commit pass)",
        "cond error: MSE to the nearest allowed continuation (held-out half; lower is better)"
        if metric == "cond"
        else "valid videos: every chunk sharp and an allowed continuation (held-out half; higher is better)",
    )
    if title:
        d.text((left, 2), title, fill=FG, font=font)

    def marker(p, colour, hollow=False):
        h = p["heldout"]
        (xm, xl, xh), (ym, yl, yh) = h["nfe_per_chunk"], h[metric]
        X, Y = px(xm, ym)
        XL, _ = px(xl, ym)
        XH, _ = px(xh, ym)
        _, YL = px(xm, yl)
        _, YH = px(xm, yh)
        d.line([(X, YL), (X, YH)], fill=colour, width=1)
        d.line([(XL, Y), (XH, Y)], fill=colour, width=1)
        if hollow:
            d.ellipse([X - 4, Y - 4, X + 4, Y + 4], outline=colour, width=1)
        else:
            d.ellipse([X - 4, Y - 4, X + 4, Y + 4], fill=colour)
        return X, Y

    for kind, (colour, _) in SERIES.items():
        sel = sorted([p for p in pts if p["kind"] == kind], key=lambda p: p["heldout"]["nfe_per_chunk"][0])
        P = [px(p["heldout"]["nfe_per_chunk"][0], p["heldout"][metric][0]) for p in sel]
        if len(P) > 1:
            d.line(P, fill=colour, width=2)
        for p in sel:
            X, Y = marker(p, colour)
            v = p["value"]
            label = (
                "-".join(map(str, v))
                if isinstance(v, list)
                else ""
                if kind == "oracle"
                else f"{v:g}"
                if isinstance(v, float)
                else str(v)
            )
            d.text((X + 5, Y + 3), label, fill=colour, font=font)
    for p in pts:
        if p["kind"].endswith("_random"):
            marker(p, SERIES[p["kind"][:-7]][0], hollow=True)
    lx, ly = width - r - 360, t + 10
    shown = [(k, v) for k, v in SERIES.items() if any(p["kind"] == k for p in pts)]
    n = len(shown) + 1
    if metric == "valid":  # the good runs sit at the top: the legend goes to the bottom right
        ly = height - b - 18 * n - 14
    d.rectangle([lx - 8, ly - 8, width - r - 8, ly + 18 * n], fill=BG, outline=GRID)
    for i, (kind, (colour, label)) in enumerate(shown):
        d.line([(lx, ly + 18 * i + 5), (lx + 24, ly + 18 * i + 5)], fill=colour, width=3)
        d.text((lx + 30, ly + 18 * i), label, fill=FG, font=font)
    d.text((lx, ly + 18 * len(shown)), "hollow: matched-random control of a run; bars: 95% CIs", fill=FG, font=font)
    return img


def event_steps_chart(rows: list[dict], width: int = 760, height: int = 420) -> Image.Image:
    """Mean steps spent on event chunks vs continuation chunks (held-out half) for every threshold run
    of the two heads: paired bars per threshold."""
    runs = [r for r in rows if r["kind"] in ("joint", "calibrated") and r["heldout"].get("steps_event") is not None]
    img = Image.new("RGB", (width, height), BG)
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    left, r, t, b = 50, 20, 50, 80
    d.text(
        (left, 6),
        "steps per chunk: event chunks (dark) vs continuation chunks (light), held-out half",
        fill=FG,
        font=font,
    )
    d.text(
        (left, 20),
        "left group: jointly trained head; right group: calibrated head; label = threshold",
        fill=FG,
        font=font,
    )
    ymax = 6.0
    for v in range(0, 7):
        Y = height - b - v / ymax * (height - t - b)
        d.line([(left, Y), (width - r, Y)], fill=GRID)
        d.text((left - 20, Y - 5), str(v), fill=FG, font=font)
    n = max(1, len(runs))
    slot = (width - left - r) / (n + 1.5)
    for i, run in enumerate(runs):
        h = run["heldout"]
        colour = SERIES[run["kind"]][0]
        light = tuple(int(c + (255 - c) * 0.6) for c in colour)
        X = left + slot * (i + 0.5 + (1 if run["kind"] == "calibrated" else 0))
        for j, (v, c) in enumerate(((h["steps_event"], colour), (h["steps_continuation"], light))):
            if v != v:  # nan: no chunk of that kind
                continue
            x_a = X + j * slot * 0.4
            Y = height - b - v / ymax * (height - t - b)
            d.rectangle([x_a, Y, x_a + slot * 0.38, height - b], fill=c, outline=FG)
            d.text((x_a, Y - 12), f"{v:.1f}", fill=FG, font=font)
        d.text((X, height - b + 6), f"{run['value']:g}", fill=FG, font=font)
    d.rectangle([left, t, width - r, height - b], outline=FG)
    return img
