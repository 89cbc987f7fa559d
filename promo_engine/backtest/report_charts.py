"""The back-test report's charts, drawn here as inline SVG rather than by a charting library.

The report is one file that opens offline, and it is read on phones: a chart scaled down to a
phone's width shrinks its text with it, so every label's size and place is chosen here (the
report's CSS keeps each chart within a width range where its labels stay at least 11 CSS px).
Coordinates are floats; the exact figures are in the report's table, never read off a chart.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from html import escape

from promo_engine.backtest.results import CampaignResult

MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
ALERT = "#b91c1c"       # the day a budget ran out
BUDGET = "#111827"      # the budget line


@dataclass(frozen=True)
class Frame:
    """A chart's viewBox and the size of its labels, both in SVG user units."""
    width: int
    height: int
    font: int


# One campaign's chart: shown 270 (a 320 px phone) to 440 CSS px wide, so 14 units draw as
# 11.1-18.1 px.
CARD = Frame(340, 220, 14)
# Rewards per day in three widths, the report's CSS showing one: the wide one from a 1000 px
# window (938-1140 CSS px wide: 12.3-15 px labels), the medium one from 640 px (578-860: 11.9-
# 17.7 px) and the narrow one below (270-480: 11.1-19.8 px).
WIDE = Frame(1140, 320, 15)
MEDIUM = Frame(680, 280, 14)
NARROW = Frame(340, 240, 14)


@dataclass(frozen=True)
class Domain:
    """The days every chart spans (so that the campaigns' charts line up)."""
    start: date
    days: int

    def day(self, index: int) -> date:
        return self.start + timedelta(days=index)


def domain_of(first: date | None, last: date | None,
              campaigns: list[CampaignResult]) -> Domain | None:
    # The events' days are in the program's zone and a campaign's in its own, so either may
    # reach a day beyond the other's.
    days = [d for d in (first, last) if d is not None]
    for campaign in campaigns:
        days += [d.day for d in campaign.days]
        if campaign.budget_exhausted_at is not None:
            days.append(campaign.budget_exhausted_at.date())
    if not days:
        return None
    return Domain(min(days), (max(days) - min(days)).days + 1)


def text_width(text: str, font: float) -> float:
    """An estimate, generous enough for the usual sans-serif faces (CJK glyphs are square)."""
    return sum(font * (1.0 if ord(c) >= 0x2E80 else 0.62) for c in text)


def day_label(day: date, language: str, *, with_month: bool = True) -> str:
    """Nov 18 / 11月18日, or 18 / 18日 for a tick whose month the tick before it showed."""
    if language == "zh":
        return f"{day.month}月{day.day}日" if with_month else f"{day.day}日"
    return f"{MONTHS_EN[day.month - 1]} {day.day}" if with_month else str(day.day)


def _month_label(day: date, language: str, year_changed: bool) -> str:
    """Nov / 11月, and the year alone for the January of a year after the first."""
    if year_changed:
        return f"{day.year}年" if language == "zh" else str(day.year)
    return f"{day.month}月" if language == "zh" else MONTHS_EN[day.month - 1]


def _tick_candidates(domain: Domain, language: str):
    """(day index, label) lists from the densest to the sparsest."""
    last = domain.day(domain.days - 1)
    for step in (1, 2, 3, 7, 14):
        # Weekly ticks fall on Mondays, so that the weeks read as weeks.
        first = 0 if step < 7 else (7 - domain.start.weekday()) % 7
        ticks, month = [], None
        for index in range(first, domain.days, step):
            day = domain.day(index)
            ticks.append((index, day_label(day, language, with_month=day.month != month)))
            month = day.month
        yield ticks
    for months in (1, 2, 3, 6, 12):
        ticks, day = [], date(domain.start.year, domain.start.month, 1)
        while day <= last:
            if day >= domain.start and (day.month - 1) % months == 0:
                ticks.append(((day - domain.start).days, _month_label(
                    day, language, day.month == 1 and day.year > domain.start.year)))
            day = date(day.year + day.month // 12, day.month % 12 + 1, 1)
        yield ticks


def value_ticks(low: float, high: float, *, integer: bool, count: int = 4) -> list[float]:
    """Round numbers from the first at or above `low` (<= 0) to the first at or above `high`;
    whole numbers for counts. A small dip below zero gets no tick of its own (a -1 day among
    hundreds would otherwise give the chart a quarter of empty negative range)."""
    high = max(high, 1)  # a chart of nothing still gets an axis: 0 to 1
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = 10 * magnitude
    for factor in (1, 2, 2.5, 5, 10):
        candidate = factor * magnitude
        if candidate >= raw * 0.999 and (not integer or candidate == int(candidate)):
            step = candidate
            break
    if integer:
        step = max(1.0, float(math.ceil(step)))
    first = math.ceil(low / step - 1e-9)
    last = max(math.ceil(high / step - 1e-9), first + 1)
    return [round(i * step, 10) for i in range(first, last + 1)]


def axis_labels(ticks: list[float], language: str) -> list[str]:
    """Short labels once the axis reaches 10,000: 250k / 500k / 750k / 1M (en), 5000 / 1万 /
    1.5万 (zh, whose numbers group by ten thousands); below that the number itself."""
    if language == "zh":
        units = ((1e8, "亿"), (1e4, "万"))
    else:
        units = ((1e9, "B"), (1e6, "M"), (1e3, "k"))
    short = max(abs(v) for v in ticks) >= 1e4
    labels = []
    for value in ticks:
        unit = next(((size, suffix) for size, suffix in units if abs(value) >= size), None)
        if short and unit:
            labels.append(f"{round(value / unit[0], 3):g}{unit[1]}")
        elif value == int(value):
            labels.append(f"{int(value):,}" if not short or language == "en" else str(int(value)))
        else:
            labels.append(f"{value:,.2f}".rstrip("0").rstrip("."))
    return labels


class Plot:
    """A plot area inside a frame: maps days and values to user units and draws the axes."""

    def __init__(self, frame: Frame, domain: Domain, low: float, high: float, language: str, *,
                 integer: bool, top_room: bool):
        self.frame, self.domain, self.language = frame, domain, language
        self.ticks = value_ticks(low, high, integer=integer)
        self.low, self.high = min(low, self.ticks[0]), self.ticks[-1]
        self.labels = axis_labels(self.ticks, language)
        widest = max(text_width(label, frame.font) for label in self.labels)
        self.left = round(widest + 12, 1)
        self.right = frame.width - 10
        self.top = frame.font + 14 if top_room else 10
        self.bottom = frame.height - frame.font - 16
        self.parts: list[str] = []

    def x(self, days: float) -> float:
        return round(self.left + days / self.domain.days * (self.right - self.left), 1)

    def y(self, value: float) -> float:
        share = (value - self.low) / (self.high - self.low)
        return round(self.bottom - share * (self.bottom - self.top), 1)

    def axes(self) -> None:
        font = self.frame.font
        for value, label in zip(self.ticks, self.labels):
            y = self.y(value)
            self.parts.append(f'<line class="grid" x1="{self.left}" x2="{self.right}" '
                              f'y1="{y}" y2="{y}"/>')
            self.parts.append(f'<text x="{self.left - 6}" y="{round(y + font * 0.35, 1)}" '
                              f'text-anchor="end">{escape(label)}</text>')
        self.parts.append(f'<line class="axis" x1="{self.left}" x2="{self.right}" '
                          f'y1="{self.bottom}" y2="{self.bottom}"/>')
        for index, label, centre in self.date_ticks():
            x = self.x(index + 0.5)
            self.parts.append(f'<line class="axis" x1="{x}" x2="{x}" y1="{self.bottom}" '
                              f'y2="{self.bottom + 4}"/>')
            self.parts.append(f'<text x="{round(centre, 1)}" y="{self.bottom + font + 10}" '
                              f'text-anchor="middle">{escape(label)}</text>')

    def centre(self, x: float, text: str, least: float) -> float:
        """Where text centred on x goes so that it starts at `least` or later and ends inside
        the frame."""
        half = text_width(text, self.frame.font) / 2
        return min(max(x, half + least), self.frame.width - half - 2)

    def date_ticks(self) -> list[tuple[int, str, float]]:
        """The densest ticks whose dates, each under its day (the first moved right rather
        than under the y axis's labels, the last left rather than out of the frame), keep a
        gap between them: (day index, label, label's centre)."""
        font, placed = self.frame.font, []
        for ticks in _tick_candidates(self.domain, self.language):
            widths = [text_width(label, font) for _, label in ticks]
            placed = [(index, label, self.centre(self.x(index + 0.5), label, self.left - 4))
                      for index, label in ticks]
            if placed and all(b[2] - a[2] >= (wa + wb) / 2 + font * 0.8 for a, b, wa, wb
                              in zip(placed, placed[1:], widths, widths[1:])):
                return placed
        return placed[:1]

    def label(self, x: float, y: float, text: str, cls: str) -> str:
        """A note above the plot (not over the y axis's labels), centred on x where it fits."""
        x = self.centre(x, text, self.left - 4)
        return (f'<text class="{cls}" x="{round(x, 1)}" y="{round(y, 1)}" '
                f'text-anchor="middle">{escape(text)}</text>')

    def svg(self, title: str, cls: str = "") -> str:
        frame = self.frame
        attribute = f' class="{cls}"' if cls else ""
        return (f'<svg{attribute} viewBox="0 0 {frame.width} {frame.height}" '
                f'font-size="{frame.font}" role="img" aria-label="{escape(title)}">'
                f'<title>{escape(title)}</title>{"".join(self.parts)}</svg>')


def chart_unit(campaign: CampaignResult) -> str:
    """What a campaign's chart adds up: its budget's unit, else money unless it only gave points."""
    if campaign.budget_unit in ("money", "points"):
        return campaign.budget_unit
    return "points" if campaign.cost == 0 and campaign.points != 0 else "money"


def cumulative(campaign: CampaignResult, unit: str, domain: Domain) -> list[float]:
    """The running total at the end of each day of the domain."""
    by_day = {d.day: (d.points if unit == "points" else d.cost) for d in campaign.days}
    total, out = Decimal(0), []
    for index in range(domain.days):
        total += by_day.get(domain.day(index), 0)
        out.append(float(total))
    return out


def _day_fraction(moment: datetime, domain: Domain) -> float:
    seconds = moment.hour * 3600 + moment.minute * 60 + moment.second
    return (moment.date() - domain.start).days + seconds / 86400


# Below this share of its budget a campaign's line is drawn to its own scale, the budget line
# left out (said in the legend): drawn to the budget's scale it would lie flat along zero.
BUDGET_IN_VIEW = 0.2


def cumulative_chart(campaign: CampaignResult, domain: Domain, *, color: str, title: str,
                     ran_out: str, language: str, frame: Frame = CARD) -> tuple[str, bool]:
    """The campaign's running cost (or points) per day against its budget line, with the
    moment it ran out marked by a vertical line and `ran_out` above the plot; and whether the
    budget line is on the chart."""
    unit = chart_unit(campaign)
    totals = cumulative(campaign, unit, domain)
    budget = float(campaign.budget) if campaign.budget is not None and \
        campaign.budget_unit == unit else None
    reached = max(totals + [0])
    if budget is not None and 0 < reached < budget * BUDGET_IN_VIEW:
        budget = None
    high = max(totals + [budget or 0, 0])
    low = min(totals + [0])
    plot = Plot(frame, domain, low, high, language, integer=unit == "points", top_room=True)
    plot.axes()
    points = [(plot.x(0), plot.y(0))] + [(plot.x(i + 1), plot.y(v)) for i, v in enumerate(totals)]
    line = " ".join(f"{x},{y}" for x, y in points)
    base = plot.y(0)
    plot.parts.append(f'<polygon points="{plot.x(0)},{base} {line} {plot.x(domain.days)},{base}" '
                      f'fill="{color}" fill-opacity="0.12"/>')
    plot.parts.append(f'<polyline points="{line}" fill="none" stroke="{color}" '
                      f'stroke-width="2.5" stroke-linejoin="round"/>')
    if budget is not None:
        y = plot.y(budget)
        plot.parts.append(f'<line x1="{plot.left}" x2="{plot.right}" y1="{y}" y2="{y}" '
                          f'stroke="{BUDGET}" stroke-width="1.5" stroke-dasharray="6 4"/>')
    if campaign.budget_exhausted_at is not None:
        x = plot.x(_day_fraction(campaign.budget_exhausted_at, domain))
        plot.parts.append(f'<line class="ran-out" x1="{x}" x2="{x}" y1="{plot.top - 4}" '
                          f'y2="{plot.bottom}" stroke="{ALERT}" stroke-width="2"/>')
        plot.parts.append(plot.label(x, plot.top - 8, ran_out, "ran-out"))
    return plot.svg(title), budget is not None


def rewards_chart(campaigns: list[CampaignResult], colors: list[str], domain: Domain, *,
                  title: str, language: str, frame: Frame, cls: str, tooltips: bool) -> str:
    """Rewards granted per day, one stacked bar a day, a colour per campaign (net of
    reversals: a day whose reversals outnumber its rewards stacks below zero). Tooltips,
    for a mouse, are worth their bytes on the widest chart only."""
    per_day = [{d.day: d.rewards for d in c.days} for c in campaigns]
    ups = [sum(max(c.get(domain.day(i), 0), 0) for c in per_day) for i in range(domain.days)]
    downs = [sum(min(c.get(domain.day(i), 0), 0) for c in per_day) for i in range(domain.days)]
    high, low = max(ups + [0]), min(downs + [0])
    plot = Plot(frame, domain, low, high, language, integer=True, top_room=False)
    plot.axes()
    unit = (plot.right - plot.left) / domain.days
    gap = unit * 0.18 if unit >= 5 else 0
    for index in range(domain.days):
        day, up, down = domain.day(index), 0, 0
        x, width = round(plot.x(index) + gap / 2, 2), round(unit - gap, 2)
        for counts, color, campaign in zip(per_day, colors, campaigns):
            count = counts.get(day, 0)
            if count == 0:
                continue
            start = up if count > 0 else down
            end = start + count
            if count > 0:
                up = end
            else:
                down = end
            top, bottom = plot.y(max(start, end)), plot.y(min(start, end))
            tip = f"<title>{escape(f'{day.isoformat()} · {campaign.name}: {count:,}')}</title>"
            plot.parts.append(f'<rect x="{x}" y="{top}" width="{width}" '
                              f'height="{round(bottom - top, 2)}" fill="{color}">'
                              f'{tip if tooltips else ""}</rect>')
    return plot.svg(title, cls)
