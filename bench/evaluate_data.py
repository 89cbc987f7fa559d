"""The evaluation benchmark's data: merchants, campaigns and payment events, all seeded.

Campaigns are built directly as `Campaign` objects, as the schema would build them (no
YAML, no database), from the three built-in types' payment rules: `holiday_discount`
(percent, with or without a cap, and amount off) and `points_multiplier`, with ranges,
windows, conditions and priorities. Two sets: `make_campaigns`, a realistic mix over many
merchants (the "sizes" table), and `make_scaling_campaigns`, where every event meets exactly
`SCALING_CANDIDATES` campaigns whatever the total (the "constant candidates" tables).

Apart from the evaluators and the timing because both the engine and the floor are fed
from here, and the smoke test builds its own sets with the same functions.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime
from datetime import time as time_of_day
from datetime import timedelta, timezone
from decimal import Decimal
from typing import Iterable, Sequence
from zoneinfo import ZoneInfo

from promo_engine.core.campaign import Campaign, Conditions, Window
from promo_engine.core.event import PAYMENT, Event
from promo_engine.core.money import quantum

CURRENCY = "CNY"
POINTS_PER_UNIT = Decimal(1)
MERCHANTS = 1000
SCALING_CANDIDATES = 5

UTC = timezone.utc
# Campaigns run over the first quarter of 2027 (local time); events fall strictly inside it
# in every zone used here, so a full-period campaign is always in range.
PERIOD_START = (2027, 1, 1)
PERIOD_END = (2027, 4, 1)
EVENTS_FROM = datetime(2027, 1, 2, tzinfo=UTC)
EVENTS_TO = datetime(2027, 3, 31, tzinfo=UTC)

ZONES = ("Asia/Shanghai",) * 17 + ("Asia/Hong_Kong",) * 2 + ("Europe/London",)  # London: DST
MCCS = ("5812", "5814", "5411", "5311", "5999", "4121", "5541", "5691")
CHANNELS = ("qr", "qr", "qr", "qr", "in_store", "in_store", "nfc", "nfc", "online", "online")

ALL_DAYS = frozenset(range(7))
WEEKDAYS = frozenset(range(5))
WEEKEND = frozenset({5, 6})
WINDOW_PRESETS = (
    (Window(WEEKDAYS, time_of_day(11), time_of_day(14)),),  # weekday lunch
    (Window(WEEKEND, time_of_day(0), None),),  # all weekend
    (Window(ALL_DAYS, time_of_day(18), None),),  # evenings, to the end of the day
    (Window(ALL_DAYS, time_of_day(7), time_of_day(10)),  # breakfast and late night
     Window(ALL_DAYS, time_of_day(21), None)),
)


def money(text: str) -> Decimal:
    return Decimal(text).quantize(quantum(CURRENCY))


def local_midnight(zone: str, year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, tzinfo=ZoneInfo(zone)).astimezone(UTC)


@dataclass(frozen=True)
class Merchant:
    id: str
    mcc: str
    zone: str


def make_merchants(count: int, rng: random.Random) -> list[Merchant]:
    return [Merchant(f"m_{i:05d}", rng.choice(MCCS), rng.choice(ZONES)) for i in range(count)]


def campaign(id: str, params: dict, *, zone: str = "Asia/Shanghai",
             merchants: Iterable[str] | None = None, starts=PERIOD_START, ends=PERIOD_END,
             windows: tuple[Window, ...] = (), conditions: Conditions = Conditions(),
             priority: int = 0, exclusive: bool = False) -> Campaign:
    """A campaign as the schema would build it, typed by its params."""
    if "multiplier" in params:
        type_ = "points_multiplier"
    else:
        type_ = "holiday_discount"
    return Campaign(
        id=id, type=type_, name=id, timezone=zone,
        starts_at=local_midnight(zone, *starts), ends_at=local_midnight(zone, *ends),
        currency=CURRENCY, params=params,
        merchants=None if merchants is None else frozenset(merchants),
        windows=windows, conditions=conditions, priority=priority, exclusive=exclusive)


def bank_wide_campaigns() -> list[Campaign]:
    """Three campaigns for every merchant; the third is the one exclusive campaign."""
    return [
        campaign("bank-qr-points", {"multiplier": Decimal("1.5")},
                 conditions=Conditions(channels=frozenset({"qr"})), priority=10),
        campaign("bank-weekend-dining", {"percent": Decimal("5"), "max_discount": money("20")},
                 windows=(Window(WEEKEND, time_of_day(0), None),),
                 conditions=Conditions(mcc=frozenset({"5812", "5814"})), priority=20),
        campaign("bank-lunch-mega", {"amount_off": money("50")},
                 windows=(Window(WEEKDAYS, time_of_day(11, 30), time_of_day(14)),),
                 conditions=Conditions(min_amount=money("800")), priority=100, exclusive=True),
    ]


def random_params(rng: random.Random) -> dict:
    kind = rng.random()
    if kind < 0.45:
        params = {"percent": Decimal(rng.choice(("5", "8", "10", "12.5", "15", "20", "30")))}
        if rng.random() < 0.6:
            params["max_discount"] = money(rng.choice(("10", "20", "30", "50")))
        return params
    if kind < 0.65:
        return {"amount_off": money(rng.choice(("2", "5", "10", "20", "30")))}
    return {"multiplier": Decimal(rng.choice(("1.25", "1.5", "2", "3", "5")))}


def random_range(rng: random.Random) -> tuple[tuple, tuple]:
    if rng.random() < 0.7:
        return PERIOD_START, PERIOD_END
    start = datetime(*PERIOD_START) + timedelta(days=rng.randrange(60))
    end = min(start + timedelta(days=rng.randrange(14, 43)), datetime(*PERIOD_END))
    return (start.year, start.month, start.day), (end.year, end.month, end.day)


def random_conditions(rng: random.Random, merchant: Merchant) -> Conditions:
    min_amount = mcc = channels = None
    if rng.random() < 0.25:
        min_amount = money(rng.choice(("20", "50", "100", "200")))
    if rng.random() < 0.15:
        others = [m for m in MCCS if m != merchant.mcc]
        mcc = frozenset(rng.sample(others, 2) + ([merchant.mcc] if rng.random() < 0.7 else []))
    if rng.random() < 0.2:
        channels = rng.choice(({"qr"}, {"qr", "nfc"}, {"in_store", "nfc"}, {"online"}))
        channels = frozenset(channels)
    return Conditions(min_amount=min_amount, mcc=mcc, channels=channels)


def make_campaigns(total: int, merchants: Sequence[Merchant], rng: random.Random,
                   exclusive_share: float = 0.0) -> list[Campaign]:
    """`total` open campaigns: 3 bank-wide, the rest each scoped to 1 (or a chain of 2-5)
    random merchants, with a mix of types, ranges, windows, conditions and priorities.

    The benchmark has one exclusive campaign (bank-wide); `exclusive_share` makes that share
    of the others exclusive too, for tests of the rules rather than of speed."""
    campaigns = bank_wide_campaigns()[:total]
    for i in range(total - len(campaigns)):
        scope = rng.sample(merchants, 1 if rng.random() < 0.85 else rng.randint(2, 5))
        starts, ends = random_range(rng)
        campaigns.append(campaign(
            f"c-{i:05d}", random_params(rng), zone=scope[0].zone,
            merchants=[m.id for m in scope], starts=starts, ends=ends,
            windows=rng.choice(WINDOW_PRESETS) if rng.random() < 0.3 else (),
            conditions=random_conditions(rng, scope[0]),
            priority=rng.choice((0, 0, 0, 10, 20, 50, 100)),
            exclusive=exclusive_share > 0 and rng.random() < exclusive_share))
    return campaigns


def make_scaling_campaigns(total: int) -> tuple[list[Campaign], list[Merchant]]:
    """`total` campaigns where every event merchant has exactly 4 + 1 bank-wide candidates.

    Each event merchant gets the same 4-campaign template, so the rules an event meets are
    the same at every size; only the number of campaigns (and merchants) around it grows.
    The campaigns that do not make a whole group go to a merchant that gets no events.
    """
    per_merchant = SCALING_CANDIDATES - 1
    campaigns = [campaign("bank-qr-points", {"multiplier": Decimal("1.5")},
                          conditions=Conditions(channels=frozenset({"qr"})), priority=10)]
    groups = (total - 1) // per_merchant
    merchants = [Merchant(f"m_{i:05d}", "5812", "Asia/Shanghai") for i in range(groups)]
    for merchant in merchants:
        m = [merchant.id]
        campaigns += [
            campaign(f"{merchant.id}-lunch", {"percent": Decimal("10"), "max_discount": money("30")},
                     merchants=m, windows=WINDOW_PRESETS[0], priority=50),
            campaign(f"{merchant.id}-off", {"amount_off": money("5")}, merchants=m,
                     conditions=Conditions(min_amount=money("30")), priority=20),
            campaign(f"{merchant.id}-2x", {"multiplier": Decimal("2")}, merchants=m,
                     conditions=Conditions(channels=frozenset({"qr", "nfc"}))),
            campaign(f"{merchant.id}-dining", {"percent": Decimal("3")}, merchants=m,
                     conditions=Conditions(mcc=frozenset({"5812", "5814"}))),
        ]
    for i in range(total - len(campaigns)):
        campaigns.append(campaign(f"cold-{i}", {"percent": Decimal("1")}, merchants=["m_cold"]))
    assert len(campaigns) == total
    return campaigns, merchants


def make_events(count: int, merchants: Sequence[Merchant], rng: random.Random) -> list[Event]:
    """Payments spread evenly over the merchants, amounts log-normal around 60.00."""
    span = int((EVENTS_TO - EVENTS_FROM).total_seconds())
    # Merchants are drawn from a generator of their own, so the rest of each event (time,
    # amount, channel) is the same whatever the number of merchants.
    pick = random.Random(rng.random())
    events = []
    for i in range(count):
        merchant = merchants[i % len(merchants)] if i < len(merchants) else pick.choice(merchants)
        cents = min(max(int(rng.lognormvariate(math.log(6000), 1.0)), 1), 2_000_000)
        events.append(Event(
            type=PAYMENT, user_id=f"u_{rng.randrange(100000)}",
            occurred_at=EVENTS_FROM + timedelta(seconds=rng.randrange(span)),
            event_id=f"e_{i}", merchant_id=merchant.id,
            amount=Decimal(cents).scaleb(-2), currency=CURRENCY,
            mcc=merchant.mcc, channel=rng.choice(CHANNELS)))
    pick.shuffle(events)
    return events
