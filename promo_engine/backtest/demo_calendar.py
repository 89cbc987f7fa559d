"""The calendar of the demo wallet history: how much people spend on each day and hour.

A wallet in China does not see the same day twice: Friday and Saturday are busier than
Monday, the Spring Festival shopping rush and the golden weeks fill restaurants and trains,
and on Double 11 (11 November) online shopping peaks around midnight. The demo data follows
these patterns so that back-tests of holiday and weekend campaigns, and the portal's charts,
show what a real history would. Pure: dates in, numbers out (no clock, no randomness).

Spending is in relative terms: 1.0 is an ordinary Thursday. Make-up working days (调休) and
the smaller lunar holidays (Qingming, Dragon Boat, Mid-Autumn) are left out.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

# The first day of the lunar new year (春节). The calendar is lunisolar, so the dates are
# listed, not computed; a year outside the table has no Spring Festival in the demo data.
SPRING_FESTIVAL = {
    2015: date(2015, 2, 19), 2016: date(2016, 2, 8), 2017: date(2017, 1, 28),
    2018: date(2018, 2, 16), 2019: date(2019, 2, 5), 2020: date(2020, 1, 25),
    2021: date(2021, 2, 12), 2022: date(2022, 2, 1), 2023: date(2023, 1, 22),
    2024: date(2024, 2, 10), 2025: date(2025, 1, 29), 2026: date(2026, 2, 17),
    2027: date(2027, 2, 6), 2028: date(2028, 1, 26), 2029: date(2029, 2, 13),
    2030: date(2030, 2, 3), 2031: date(2031, 1, 23), 2032: date(2032, 2, 11),
    2033: date(2033, 1, 31), 2034: date(2034, 2, 19), 2035: date(2035, 2, 8),
    2036: date(2036, 1, 28), 2037: date(2037, 2, 15), 2038: date(2038, 2, 4),
    2039: date(2039, 1, 24), 2040: date(2040, 2, 12),
}

# Payments per weekday, Monday first, relative to Thursday: Friday night out and Saturday
# shopping are the busiest, Monday the quietest.
WEEKDAY_FACTOR = (0.93, 0.95, 0.97, 1.0, 1.10, 1.18, 1.06)
# Wallet activations per weekday: people set up a wallet when they have time for it.
WEEKDAY_ACTIVATIONS = (0.9, 0.9, 0.95, 0.95, 1.0, 1.3, 1.2)


@dataclass(frozen=True)
class Day:
    """What kind of day a local date is for spending."""
    factor: float = 1.0           # payments, relative to an ordinary Thursday
    rest: bool = False            # a day off: late mornings, no commute peaks
    name: str | None = None       # the holiday, for the docs and the tests
    # category key -> weight multiplier (online shopping on Double 11, trains in golden week)
    boosts: dict[str, float] = field(default_factory=dict)
    spend: dict[str, float] = field(default_factory=dict)  # category key -> amount multiplier
    midnight: bool = False        # an online sale that opens at 00:00 (Double 11, 618)


_ONLINE = ("online",)
_TRAVEL = {"rail": 3.0, "hotel": 3.5, "taxi": 1.3, "restaurant": 1.3, "cinema": 1.6,
           "commute": 0.45, "coffee": 0.7}


def _spring_festival(day: date) -> Day | None:
    festival = SPRING_FESTIVAL.get(day.year)  # never earlier than 21 January: no December
    if festival is None:
        return None
    offset = (day - festival).days
    if -12 <= offset <= -2:  # the new-year shopping rush (年货) and the trip home
        return Day(1.35, name="Spring Festival shopping",
                   boosts={"supermarket": 1.7, "department": 1.8, "clothing": 2.0,
                           "bakery": 1.5, "rail": 3.0, "online": 1.4},
                   spend={"supermarket": 1.5, "department": 1.3})
    if -1 <= offset <= 6:  # New Year's Eve dinner to the end of the holiday week
        return Day(1.5, rest=True, name="Spring Festival",
                   boosts={"restaurant": 2.0, "bars": 1.5, "cinema": 2.5, "supermarket": 1.2,
                           "commute": 0.35, "coffee": 0.6, "online": 0.6, "fuel": 1.5},
                   spend={"restaurant": 1.6})
    if offset == 14:  # the Lantern Festival (元宵节)
        return Day(1.15, name="Lantern Festival", boosts={"restaurant": 1.5, "bakery": 1.6})
    return None


def _fixed_holiday(day: date) -> Day | None:
    month, dom = day.month, day.day
    if month == 10 and 1 <= dom <= 7:
        return Day(1.45, rest=True, name="National Day golden week", boosts=_TRAVEL,
                   spend={"hotel": 1.3})
    if month == 5 and 1 <= dom <= 5:
        return Day(1.3, rest=True, name="Labour Day holiday", boosts=_TRAVEL)
    if month == 11 and dom == 11:
        return Day(1.9, name="Double 11", boosts={"online": 5.0, "electronics": 2.5},
                   spend={"online": 1.6}, midnight=True)
    if month == 11 and 1 <= dom <= 10:  # pre-sales and deposits before Double 11
        return Day(1.06, name="Double 11 pre-sales", boosts={"online": 1.5})
    if month == 6 and dom == 18:
        return Day(1.5, name="618", boosts={"online": 3.5, "electronics": 2.5},
                   spend={"online": 1.4}, midnight=True)
    if month == 12 and dom == 12:
        return Day(1.25, name="Double 12", boosts={"online": 2.5})
    if month == 12 and dom in (24, 25):
        return Day(1.15, name="Christmas", boosts={"restaurant": 1.4, "department": 1.6,
                                                   "cinema": 1.5, "coffee": 1.3})
    if month == 12 and dom == 31:
        return Day(1.1, name="New Year's Eve", boosts={"restaurant": 1.3, "bars": 2.0})
    if month == 1 and dom == 1:
        return Day(1.2, rest=True, name="New Year's Day", boosts={"cinema": 2.0,
                                                                  "commute": 0.5})
    if month == 2 and dom == 14:
        return Day(1.1, name="Valentine's Day", boosts={"restaurant": 1.6, "cinema": 1.6})
    return None


def day_kind(day: date) -> Day:
    """The kind of `day` (a local date in the program's timezone)."""
    weekday = day.weekday()
    holiday = _spring_festival(day) or _fixed_holiday(day)
    weekend = weekday >= 5
    if holiday is None:
        return Day(WEEKDAY_FACTOR[weekday], rest=weekend)
    # A weekend holiday keeps the holiday's factor, scaled a little by the weekend.
    factor = holiday.factor * (1.08 if weekend and not holiday.rest else 1.0)
    return Day(factor, rest=holiday.rest or weekend, name=holiday.name, boosts=holiday.boosts,
               spend=holiday.spend, midnight=holiday.midnight)


def activation_weight(day: date, index: int) -> float:
    """How many wallets are activated on `day`, the `index`-th day of the history: a launch
    burst in the first fortnight, more at weekends and on shopping days."""
    kind = day_kind(day)
    launch = 1.0 + 2.0 * (0.9 ** index)
    holiday = 1.4 if kind.name and kind.factor >= 1.3 else 1.0
    return launch * WEEKDAY_ACTIVATIONS[day.weekday()] * holiday


# Hour-of-day shapes (local time, 00:00 first), for a working day and for a day off. Only
# the shape matters: each is scaled to add up to 1.
PROFILES: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    # breakfast, the lunch peak 11:30-13:30 and dinner 17:30-20:00
    "meals": ((1, .5, .3, .2, .2, .3, 2, 6, 8, 4, 3, 14, 22, 9, 3, 2, 3, 11, 17, 12, 6, 4, 3, 2),
              (2, 1, .6, .3, .2, .2, .8, 2, 4, 5, 7, 15, 20, 13, 5, 3, 4, 10, 18, 15, 9, 6, 4, 3)),
    # morning coffee on the way to work and the afternoon break
    "coffee": ((.1, 0, 0, 0, 0, .2, 1, 8, 16, 12, 7, 5, 5, 8, 10, 9, 6, 4, 2, 1.5, 1, .6, .3, .2),
               (.2, 0, 0, 0, 0, 0, .3, 1, 4, 8, 11, 10, 8, 9, 11, 10, 8, 6, 4, 2, 1.5, .8, .4, .2)),
    # the commute: 7:00-9:30 and 17:00-19:30 on working days, spread over the day off
    "commute": ((.3, .1, 0, 0, .1, .8, 4, 14, 16, 6, 3, 3, 4, 3, 3, 3, 4, 10, 14, 7, 4, 3, 2, 1),
                (.6, .3, .1, 0, 0, .2, .8, 2, 4, 6, 8, 8, 7, 7, 7, 7, 7, 7, 7, 6, 5, 4, 3, 1.5)),
    # shops: the evening after work, the whole afternoon on a day off
    "shop": ((.2, .1, 0, 0, 0, 0, .2, 1, 2, 3, 5, 6, 6, 5, 5, 5, 6, 8, 11, 12, 10, 6, 2, .5),
             (.3, .1, 0, 0, 0, 0, .2, .6, 2, 4, 7, 9, 9, 9, 10, 10, 10, 9, 9, 9, 7, 4, 1.5, .5)),
    # convenience stores: open all night, busy at breakfast, lunch and late evening
    "convenience": ((2, 1.5, 1, .8, .6, 1, 3, 8, 9, 5, 4, 6, 8, 5, 4, 4, 5, 7, 8, 8, 7, 6, 5, 3),
                    (3, 2, 1.5, 1, .7, .7, 1.5, 3, 5, 6, 6, 7, 8, 7, 6, 6, 6, 7, 8, 8, 7, 6, 5, 4)),
    # online shopping: the lunch break and the evening, some at midnight
    "online": ((4, 2, 1, .5, .3, .2, .4, 1, 2, 3, 4, 5, 7, 5, 4, 4, 4, 4, 5, 7, 9, 11, 10, 7),
               (4, 2, 1, .5, .3, .2, .3, .6, 1.5, 3, 5, 6, 6, 6, 6, 6, 6, 6, 6, 7, 9, 10, 9, 6)),
    # bars and late dinners
    "night": ((5, 3, 1.5, .5, .2, 0, 0, 0, 0, 0, 0, .5, 1, .5, .5, .5, 1, 2, 4, 7, 10, 12, 12, 9),
              (7, 5, 3, 1, .3, 0, 0, 0, 0, 0, 0, .5, 1, 1, 1, 1, 1.5, 2.5, 4, 7, 10, 12, 12, 10)),
    # offices, clinics and services: business hours
    "daytime": ((.1, 0, 0, 0, 0, 0, .2, 1, 4, 8, 10, 9, 6, 7, 9, 9, 8, 7, 5, 3, 2, 1, .5, .2),
                (.1, 0, 0, 0, 0, 0, .1, .5, 2, 6, 9, 9, 8, 8, 9, 9, 8, 7, 5, 3, 2, 1, .5, .2)),
    # the cinema: afternoons and evenings
    "evening": ((.5, .2, 0, 0, 0, 0, 0, 0, 0, .5, 1, 2, 3, 3, 3, 3, 4, 5, 8, 11, 12, 9, 5, 2),
                (.8, .3, 0, 0, 0, 0, 0, 0, .5, 2, 4, 5, 6, 7, 7, 7, 7, 7, 8, 10, 11, 9, 5, 2)),
}
# When people activate a wallet: daytime and evening, like shopping.
ACTIVATION_PROFILE = PROFILES["shop"]
# An online sale that opens at 00:00: the first hour is the busiest of the day.
MIDNIGHT_SALE = (30, 12, 4, 1, .5, .3, .4, 1, 2, 3, 4, 5, 7, 5, 4, 4, 4, 4, 5, 7, 10, 13, 14, 12)


def shape(values: tuple[float, ...]) -> tuple[float, ...]:
    """`values` scaled to add up to 1."""
    total = float(sum(values))
    return tuple(value / total for value in values)
