"""Small SVG charts written as text: bars, histograms and stacked columns.

``fairbig report`` draws aggregates (a histogram of 42k durations is 30 bars), so a
chart is a few kB of SVG built in microseconds, needs no plotting library on a login
node, no JavaScript and nothing fetched when the page is opened. Every value drawn is
also in the element's ``<title>`` (a tooltip) so the page reads without a legend hunt.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from html import escape

WIDTH, HEIGHT = 560, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 28, 44
PALETTE = {"merged": "#2b8a3e", "done": "#69db7c", "failed": "#e03131", "lost": "#f08c00",
           "cancelled": "#868e96", "superseded": "#a5d8ff", "running": "#1971c2",
           "queued": "#74c0fc", "planned": "#dee2e6"}
DEFAULT = "#4263eb"


def _num(x: float) -> str:
    if x == 0:
        return "0"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.0f}"
    return f"{x:.3g}"


def _frame(title: str, body: list[str], x_label: str, y_label: str, css: str) -> str:
    return (f'<svg class="chart {css}" xmlns="http://www.w3.org/2000/svg" '
            f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img">'
            f'<title>{escape(title)}</title>'
            f'<text x="{WIDTH / 2}" y="16" text-anchor="middle" class="t">{escape(title)}</text>'
            f'<text x="{WIDTH / 2}" y="{HEIGHT - 6}" text-anchor="middle">{escape(x_label)}'
            f'</text><text transform="translate(12,{HEIGHT / 2}) rotate(-90)" '
            f'text-anchor="middle">{escape(y_label)}</text>' + "".join(body) + "</svg>")


def _y_axis(top: float) -> tuple[float, list[str]]:
    """A rounded maximum and the gridlines with labels for values 0..top."""
    top = max(top, 1)
    step = 10 ** math.floor(math.log10(top))
    for mult in (1, 2, 5, 10):
        if top / (step * mult) <= 5:
            step *= mult
            break
    ymax = math.ceil(top / step) * step
    out = []
    h = HEIGHT - TOP - BOTTOM
    for k in range(round(ymax / step) + 1):
        y = TOP + h - h * k * step / ymax
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
                   f'class="g"/><text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">'
                   f'{_num(k * step)}</text>')
    return ymax, out


def columns(title: str, labels: Sequence[str], series: dict[str, Sequence[float]],
            x_label: str = "", y_label: str = "", css: str = "columns") -> str:
    """Stacked columns: one per label, one colour per series (e.g. jobs by state)."""
    n = max(1, len(labels))
    totals = [sum(s[i] for s in series.values()) for i in range(len(labels))]
    ymax, body = _y_axis(max(totals, default=0))
    h, w = HEIGHT - TOP - BOTTOM, (WIDTH - LEFT - RIGHT) / n
    for i, label in enumerate(labels):
        base = 0.0
        for name, values in series.items():
            v = values[i]
            if not v:
                continue
            y0 = TOP + h - h * (base + v) / ymax
            body.append(f'<rect x="{LEFT + i * w + w * 0.08:.1f}" y="{y0:.1f}" '
                        f'width="{max(w * 0.84, 0.5):.1f}" height="{h * v / ymax:.1f}" '
                        f'fill="{PALETTE.get(name, DEFAULT)}"><title>{escape(label)}: '
                        f'{_num(v)} {escape(name)}</title></rect>')
            base += v
    every = max(1, math.ceil(n / 8))
    for i in range(0, len(labels), every):
        body.append(f'<text x="{LEFT + (i + 0.5) * w:.1f}" y="{HEIGHT - BOTTOM + 14}" '
                    f'text-anchor="middle">{escape(labels[i])}</text>')
    if len(series) > 1:
        x = LEFT
        for name in series:
            body.append(f'<rect x="{x}" y="{TOP - 8}" width="8" height="8" '
                        f'fill="{PALETTE.get(name, DEFAULT)}"/><text x="{x + 11}" '
                        f'y="{TOP}">{escape(name)}</text>')
            x += 14 + 7 * len(name)
    return _frame(title, body, x_label, y_label, css)


def bins(values: Sequence[float], count: int = 30) -> tuple[list[str], list[int]]:
    """Equal-width bins from 0 (or the minimum, if negative) to the maximum."""
    if not values:
        return [], []
    lo, hi = min(0.0, min(values)), max(values)
    width = (hi - lo) / count or 1.0
    found = Counter(int((v - lo) / width) for v in values)
    counts = [found.get(i, 0) for i in range(count)]
    counts[-1] += found.get(count, 0)  # the maximum itself
    return [_num(lo + i * width) for i in range(count)], counts


def histogram(title: str, values: Sequence[float], unit: str, css: str = "histogram") -> str:
    labels, counts = bins(values)
    return columns(title, labels, {"jobs": counts}, unit, "jobs", css)


def line(title: str, labels: Sequence[str], values: Sequence[float], x_label: str = "",
         y_label: str = "", css: str = "line") -> str:
    """A step line (e.g. jobs running at once)."""
    ymax, body = _y_axis(max(values, default=0))
    h, n = HEIGHT - TOP - BOTTOM, max(1, len(values))
    w = (WIDTH - LEFT - RIGHT) / n
    pts = []
    for i, v in enumerate(values):
        y = TOP + h - h * v / ymax
        pts.append(f"{LEFT + i * w:.1f},{y:.1f} {LEFT + (i + 1) * w:.1f},{y:.1f}")
    body.append(f'<polyline fill="none" stroke="{PALETTE["running"]}" stroke-width="2" '
                f'points="{" ".join(pts)}"><title>{escape(title)}: up to '
                f'{_num(max(values, default=0))}</title></polyline>')
    every = max(1, math.ceil(n / 8))
    for i in range(0, len(labels), every):
        body.append(f'<text x="{LEFT + (i + 0.5) * w:.1f}" y="{HEIGHT - BOTTOM + 14}" '
                    f'text-anchor="middle">{escape(labels[i])}</text>')
    return _frame(title, body, x_label, y_label, css)
