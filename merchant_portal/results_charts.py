"""An offer's results page charts: redemptions and customers per day, and its cost per day.

Drawn with `program_charts` (inline SVG, no script). Each chart comes twice, in a viewBox
sized for the box the page gives it, so that its 14-unit text is drawn 11 px or more:
`PHONE` (360 wide) in a phone's one column (about 340 px at 390 px), `DESKTOP` (520 wide) in
half of a page 1000 px or wider (436-496 px) or in one column from 721 to 999 px (at most 640
px); the page's CSS shows one of the two (`offers/results.html`, `.chart-pair` in portal.css).

Every day from the first with a reward to the last is on the axis, days without a reward
drawn as no bar, so the bars' spacing is time's. Cost is money (discounts, cashback, vouchers
at face value, net of refunds) in the currency, exact: Decimals from minor units; an offer
that grants only points has its points per day drawn instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_CEILING, Decimal

from babel.numbers import format_currency
from flask_babel import get_locale
from flask_babel import gettext as _
from markupsafe import Markup

from merchant_portal.program_charts import (Series, Size, bar_chart, count_chart, day_label,
                                            whole_ticks)
from merchant_portal.results import DayResult, Results
from promo_engine.core import money

PHONE, DESKTOP = Size(360, 260), Size(520, 280)
BLUE, GREEN, AMBER = "#2563eb", "#16a34a", "#d97706"
NICE = (1, 2, 5)


def every_day(results: Results) -> list[DayResult]:
    """The days from the first to the last with a reward, those without one as zeros."""
    if not results.days:
        return []
    known = {d.day: d for d in results.days}
    first, last = results.days[0].day, results.days[-1].day
    return [known.get(first + timedelta(n), DayResult(first + timedelta(n), 0, 0, 0, 0))
            for n in range((last - first).days + 1)]


def cost_per_day(results: Results, currency: str) -> list[tuple[date, Decimal]]:
    """Each day's cost in the currency's major unit (CNY 1550 minor -> Decimal("15.50"))."""
    digits = money.minor_digits(currency)
    return [(d.day, Decimal(d.cost_minor).scaleb(-digits)) for d in every_day(results)]


def money_ticks(top: Decimal, currency: str, most: int = 5) -> list[Decimal]:
    """0 to at least `top` in at most `most` steps of 1, 2 or 5 times a power of ten, never
    finer than the currency's minor unit (0.01 for CNY, 1 for JPY)."""
    unit = Decimal(1).scaleb(-money.minor_digits(currency))
    if top <= 0:
        return [Decimal(0), Decimal(1)]
    power = unit
    while True:
        for nice in NICE:
            step = power * nice
            if step * most >= top:
                count = int((top / step).to_integral_value(rounding=ROUND_CEILING))
                return [step * n for n in range(count + 1)]
        power *= 10


def money_label(currency: str, whole: bool):
    """A tick's text: "CN¥20" when every tick is a whole amount, else "CN¥0.05"."""
    def label(value) -> str:
        if whole:
            return format_currency(value, currency, format="¤#,##0", currency_digits=False,
                                   locale=str(get_locale()))
        return format_currency(value, currency, locale=str(get_locale()))
    return label


def cost_chart(results: Results, currency: str, language: str, *, size: Size,
               element_id: str) -> str:
    days = cost_per_day(results, currency)
    ticks = money_ticks(max((cost for _day, cost in days), default=Decimal(0)), currency)
    return bar_chart(title=_("Cost per day"), labels=[day_label(d, language) for d, _c in days],
                     series=[Series(_("Cost"), [cost for _d, cost in days], AMBER)],
                     ticks=ticks, tick_label=money_label(currency, all(t == int(t) for t in ticks)),
                     value_label=money_label(currency, False), size=size, element_id=element_id)


def points_chart(results: Results, language: str, *, size: Size, element_id: str) -> str:
    days = every_day(results)
    return count_chart(title=_("Points granted per day"),
                       labels=[day_label(d.day, language) for d in days], name=_("Points"),
                       values=[d.points for d in days], color=AMBER, size=size,
                       element_id=element_id)


def redemptions_chart(results: Results, language: str, *, size: Size, element_id: str) -> str:
    days = every_day(results)
    top = max((max(d.redemptions, d.customers) for d in days), default=0)
    return bar_chart(title=_("Redemptions per day"),
                     labels=[day_label(d.day, language) for d in days],
                     series=[Series(_("Redemptions"), [d.redemptions for d in days], BLUE),
                             Series(_("Customers"), [d.customers for d in days], GREEN)],
                     ticks=whole_ticks(top, most=5), tick_label=lambda v: f"{int(v):,}",
                     size=size, element_id=element_id)


@dataclass(frozen=True)
class ResultsCharts:
    """The page's two charts, each as {"desktop": svg, "phone": svg}, and their titles."""
    redemptions: dict
    cost: dict
    cost_title: str


def results_charts(results: Results, currency: str, language: str) -> ResultsCharts | None:
    """None before the offer has a reward (the page says so instead of drawing empty axes)."""
    if not results.days:
        return None
    points_only = results.cost_minor == 0 and results.points != 0

    def both(draw, name: str, *args) -> dict:
        return {device: Markup(draw(*args, language, size=size,
                                    element_id=f"results-{name}-{device}"))
                for device, size in (("desktop", DESKTOP), ("phone", PHONE))}

    cost = (both(points_chart, "points", results) if points_only
            else both(cost_chart, "cost", results, currency))
    return ResultsCharts(redemptions=both(redemptions_chart, "redemptions", results), cost=cost,
                         cost_title=_("Points granted per day") if points_only
                         else _("Cost per day"))
