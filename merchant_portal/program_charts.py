"""The Program page's charts as hand-written inline SVG (no script, no library's tooltips).

Charts are scaled to the width of their box, and a phone's box is small: each chart is drawn
in a viewBox sized for the width the page's CSS gives it, with labels of 14 units, so that no
label is drawn under 11 CSS px at 390 px nor oversized at 1280 px (see `program.html`: the
narrow viewBox is shown 330-560 px wide below 1000 px, the wide one 928-1048 px and the half
one 436-496 px from 1000 px on). Counts get whole-number ticks; grid lines are light, solid
and behind the bars. The exact figures are in the tables and the CSV; a chart is for the shape.

`promo_engine.backtest.report_charts` solves the same problem for the back-test report, but
that layer is above the portal's, so these few helpers are the portal's own.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from html import escape

FONT = 14
INK, MUTED, GRID = "#334155", "#64748b", "#e2e8f0"
MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class Series:
    name: str
    values: list  # numbers, None for "not known"
    color: str


@dataclass(frozen=True)
class Size:
    width: int
    height: int


# NARROW below 1000 px (a phone's column: 11.7 px text at 390 px; at most 560 px wide),
# WIDE across a desktop page (928-1048 px: 13-14.7 px), HALF in half of one (436-496 px).
NARROW, WIDE, HALF = Size(400, 250), Size(1000, 280), Size(480, 280)


def whole_ticks(top: int, most: int = 8) -> list[int]:
    """0 to at least `top` in whole steps, at most `most` steps: 1, 2, 5, 10, 20, 50..."""
    step = 1
    while step * most < top:
        step = step * 5 // 2 if str(step).startswith("2") else step * 2
    return list(range(0, max(top, 1) + step, step))


def day_label(day: date, language: str) -> str:
    return (f"{day.month}月{day.day}日" if language == "zh"
            else f"{MONTHS_EN[day.month - 1]} {day.day}")


def text_width(text: str) -> float:
    """Generous for the usual sans-serif faces (DejaVu Sans, a wide one, draws "CN¥50" 3.35
    em wide); CJK glyphs are square."""
    return sum(FONT * (1.0 if ord(c) >= 0x2E80 else 0.7) for c in text)


def _text(x: float, y: float, text: str, *, anchor: str = "middle", color: str = MUTED) -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{FONT}" '
            f'fill="{color}">{escape(text)}</text>')


def bar_chart(*, title: str, labels: list[str], series: list[Series], ticks: list,
              tick_label, size: Size = NARROW, element_id: str, value_label=str) -> str:
    """Grouped bars, one group per label; a None value draws no bar. `ticks` from 0 up, the
    last the axis's top; `tick_label(value)` its text, `value_label(value)` a bar's tooltip.
    Light solid gridlines are drawn first, behind the bars; the baseline last, over them."""
    top_value = float(ticks[-1]) or 1.0
    axis_width = max(text_width(tick_label(t)) for t in ticks) + 8
    legend_h = FONT + 12 if len(series) > 1 else 0
    left, right, top, bottom = axis_width, 6, 10 + legend_h, FONT + 12
    plot_w, plot_h = size.width - left - right, size.height - top - bottom
    parts = [f'<svg id="{element_id}" viewBox="0 0 {size.width} {size.height}" role="img" '
             f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg" '
             f'font-family="system-ui, -apple-system, \'Segoe UI\', sans-serif">',
             f"<title>{escape(title)}</title>"]
    x = 0.0
    for item in series if len(series) > 1 else ():  # the legend, left to right
        parts.append(f'<rect x="{x:.1f}" y="2" width="{FONT}" height="{FONT}" rx="2" '
                     f'fill="{item.color}"/>')
        parts.append(_text(x + FONT + 5, FONT, item.name, anchor="start", color=INK))
        x += FONT + 5 + text_width(item.name) + 16
    for tick in ticks:
        y = top + plot_h - plot_h * float(tick) / top_value
        parts.append(f'<line x1="{left:.1f}" x2="{size.width - right}" y1="{y:.1f}" '
                     f'y2="{y:.1f}" stroke="{GRID}" stroke-width="1"/>')
        parts.append(_text(left - 6, y + FONT * 0.35, tick_label(tick), anchor="end"))
    slot = plot_w / max(len(labels), 1)
    bar = max(min(slot * 0.8 / max(len(series), 1), 28), 1.0)
    for index in range(len(labels)):
        group_left = left + slot * index + (slot - bar * len(series)) / 2
        for number, item in enumerate(series):
            value = item.values[index]
            if value is None or not value:
                continue
            h = plot_h * float(value) / top_value
            parts.append(f'<rect x="{group_left + number * bar:.1f}" y="{top + plot_h - h:.1f}" '
                         f'width="{max(bar - 1, 0.8):.1f}" height="{h:.1f}" '
                         f'fill="{item.color}"><title>{escape(labels[index])}: '
                         f'{escape(value_label(value))}</title></rect>')
    # x labels: as many as fit without touching, evenly spaced from the first.
    widest = max((text_width(label) for label in labels), default=0) + 10
    every = max(1, -(-int(widest) // max(int(slot), 1)))
    for index in range(0, len(labels), every):
        half = text_width(labels[index]) / 2
        cx = min(max(left + slot * (index + 0.5), half), size.width - half)  # kept inside
        parts.append(_text(cx, size.height - 4, labels[index]))
    parts.append(f'<line x1="{left:.1f}" x2="{size.width - right}" y1="{top + plot_h:.1f}" '
                 f'y2="{top + plot_h:.1f}" stroke="{MUTED}" stroke-width="1"/>')
    parts.append("</svg>")
    return "".join(parts)


def count_chart(*, title: str, labels: list[str], name: str, values: list[int], color: str,
                size: Size = NARROW, element_id: str) -> str:
    ticks = whole_ticks(max(values, default=0), most=5)
    return bar_chart(title=title, labels=labels, series=[Series(name, values, color)],
                     ticks=ticks, tick_label=lambda v: f"{int(v):,}", size=size,
                     element_id=element_id)


def share_chart(*, title: str, labels: list[str], series: list[Series], element_id: str,
                size: Size = NARROW) -> str:
    """Shares (0 to 1) as percentages on a 0-100% axis."""
    return bar_chart(title=title, labels=labels, series=series, ticks=[0, 0.25, 0.5, 0.75, 1],
                     tick_label=lambda v: f"{round(v * 100)}%", size=size, element_id=element_id)
