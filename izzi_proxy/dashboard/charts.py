"""Charts drawn on the server as inline SVG: no script, no library, readable with script off.

Each bar carries a ``<title>``, which browsers show on hover. Colours come from the
stylesheet (classes ``s0`` … ``s7``, and ``rest`` for what is summed as "other"), so a
legend in HTML uses the very same classes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

COLOURS = 8  # classes s0..s7 in dashboard.css
Format = Callable[[float], str]


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    values: Sequence[float]  # one per day
    css: str  # its colour class


def series_class(index: int, name: str) -> str:
    return "rest" if name == "other" else f"s{index % COLOURS}"


def _ticks(top: float) -> list[float]:
    """Five gridlines from 0, in round steps, the last at or above ``top``."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(f * magnitude for f in (1, 2, 2.5, 5, 10) if f * magnitude >= raw)
    return [step * i for i in range(5)]


def days_chart(days: Sequence[str], series: Sequence[Series], fmt: Format, label: str) -> Markup:
    """Bars per day, the series stacked in each."""
    width, height, left, bottom, top_pad = 760, 230, 64, 26, 8
    plot_w, plot_h = width - left - 8, height - bottom - top_pad
    totals = [sum(s.values[i] for s in series) for i in range(len(days))]
    ticks = _ticks(max(totals, default=0.0))
    scale = plot_h / ticks[-1] if ticks[-1] else 0.0
    band = plot_w / max(1, len(days))
    bar = max(1.0, band * 0.72)
    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}">']
    for tick in ticks:
        y = top_pad + plot_h - tick * scale
        out.append(f'<line class="grid" x1="{left}" x2="{width - 8}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(f'<text class="axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(fmt(tick))}</text>')
    every = max(1, round(len(days) / 10))
    for i, day in enumerate(days):
        x = left + i * band + (band - bar) / 2
        y = top_pad + plot_h
        for s in series:
            value = s.values[i]
            if value <= 0:
                continue
            h = value * scale
            y -= h
            out.append(f'<rect class="{s.css}" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{max(h, 0.5):.1f}">'
                       f"<title>{escape(day)} · {escape(s.name)}: {escape(fmt(value))}</title></rect>")  # fmt: skip
        if i % every == 0:
            out.append(f'<text class="axis" x="{x + bar / 2:.1f}" y="{height - 8}" text-anchor="middle">'
                       f"{escape(day[5:])}</text>")  # fmt: skip
    out.append("</svg>")
    return Markup("".join(out))


def bars_chart(rows: Sequence[tuple[str, float]], fmt: Format, label: str) -> Markup:
    """One horizontal bar per row (name, value), longest first as given."""
    width, row_h, name_w, value_w = 760, 24, 200, 110
    plot_w = width - name_w - value_w
    top = max((v for _, v in rows), default=0.0) or 1.0
    out = [f'<svg class="chart" viewBox="0 0 {width} {row_h * max(1, len(rows))}" role="img" '
           f'aria-label="{escape(label)}">']  # fmt: skip
    for i, (name, value) in enumerate(rows):
        y = i * row_h
        shown = name if len(name) <= 28 else name[:27] + "…"
        out.append(f'<text class="label" x="{name_w - 8}" y="{y + 16}" text-anchor="end">{escape(shown)}</text>'
                   f'<rect class="{series_class(i, name)}" x="{name_w}" y="{y + 4}" '
                   f'width="{max(1.0, value / top * plot_w):.1f}" height="{row_h - 8}">'
                   f"<title>{escape(name)}: {escape(fmt(value))}</title></rect>")  # fmt: skip
        out.append(f'<text class="value" x="{width - 4}" y="{y + 16}" text-anchor="end">{escape(fmt(value))}</text>')
    out.append("</svg>")
    return Markup("".join(out))
