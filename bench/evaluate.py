#!/usr/bin/env python
"""Rule evaluation benchmark: the RulesEngine against a hand-written floor, in one process.

Pure evaluation of payment events (no database, no Flask): campaigns are built directly as
`Campaign` objects, compiled once by `RulesEngine.compile`, and every event goes through
`RulesEngine.evaluate`. The same events go through `Floor`, a plain evaluator of the same
rules written by hand with no framework (campaigns in a dict by merchant, Decimal money):
what a careful programmer would write for exactly these three kinds of campaign. Its
events/s is the floor the engine is measured against.

Before anything is timed, every event's rewards from the engine and from the floor are
compared, and the totals (discount amounts, points) must be identical: the run aborts
otherwise, so the two are known to do the same work.

Two measurements:

* sizes (default 10, 1,000 and 10,000 open campaigns over 1,000 merchants, 3 bank-wide,
  events spread evenly over the merchants): events/s of engine and floor, and the ratio
  engine/floor. Target: at least 0.60 at every size.
* constant candidates: every event has exactly 5 candidate campaigns (4 of its merchant's
  and 1 bank-wide, the same mix of rules everywhere) while the total grows from 10 to
  10,000. Target: engine time per event at 10,000 at most 1.2x that at 10. Printed twice:
  with the events over every merchant that has campaigns (at 10,000 each event visits
  campaigns that are out of the CPU caches), and over the same 2 merchants at every size
  (only the total changes).

Timing: time.perf_counter around a plain loop over all events, best of --repeat rounds,
engine and floor of every size of a table interleaved in each round; the garbage collector
is collected before and disabled during each timed loop (--gc keeps it on). The process is
pinned to one CPU when the OS allows it.

    .venv/bin/python bench/evaluate.py             # the figures in docs/performance.md
    .venv/bin/python bench/evaluate.py --quick     # a few seconds, rough figures
    .venv/bin/python bench/evaluate.py --profile 10000   # cProfile of the engine at one size
"""
from __future__ import annotations

import argparse
import gc
import math
import os
import platform
import random
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from datetime import time as time_of_day
from datetime import timedelta, timezone
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Iterable, Sequence
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # runnable as `python bench/evaluate.py` from anywhere
    sys.path.insert(0, str(ROOT))

from promo_engine.core.campaign import Campaign, Conditions, Window  # noqa: E402
from promo_engine.core.campaign_type import UserState  # noqa: E402
from promo_engine.core.engine import Decision, RulesEngine  # noqa: E402
from promo_engine.core.event import PAYMENT, Event  # noqa: E402
from promo_engine.core.money import quantum  # noqa: E402
from promo_engine.core.registry import build_registry, get_plugin_manager  # noqa: E402

CURRENCY = "CNY"
POINTS_PER_UNIT = Decimal(1)
MERCHANTS = 1000
SIZES = (10, 1000, 10000)
SCALING_SIZES = (10, 10000)
SCALING_CANDIDATES = 5
RATIO_TARGET = 0.60
SCALING_TARGET = 1.2

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


# --------------------------------------------------------------------------- data


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


# --------------------------------------------------------------------------- the floor

PERCENT, AMOUNT_OFF, MULTIPLIER = range(3)
CENT = Decimal("0.01")


class FloorCampaign:
    """One campaign as plain attributes; only what the three payment rules need."""

    __slots__ = ("id", "priority", "exclusive", "starts_at", "ends_at", "zone", "windows",
                 "min_amount", "mcc", "channels", "kind", "rate", "cap", "amount_off",
                 "multiplier")

    def __init__(self, c: Campaign):
        if c.type not in ("holiday_discount", "points_multiplier") or c.conditions.attributes \
                or c.budget is not None or c.limits.per_user is not None \
                or c.limits.per_user_daily is not None or c.limits.max_redemptions is not None \
                or c.currency != CURRENCY:
            raise ValueError(f"the floor does not evaluate campaign {c.id}")
        self.id = c.id
        self.priority = c.priority
        self.exclusive = c.exclusive
        self.starts_at = c.starts_at
        self.ends_at = c.ends_at
        self.zone = ZoneInfo(c.timezone)
        self.windows = tuple((w.days, w.start, w.end) for w in c.windows)
        self.min_amount = c.conditions.min_amount
        self.mcc = c.conditions.mcc
        self.channels = c.conditions.channels
        self.rate = self.cap = self.amount_off = self.multiplier = None
        if "multiplier" in c.params:
            self.kind = MULTIPLIER
            self.multiplier = c.params["multiplier"]
        elif "amount_off" in c.params:
            self.kind = AMOUNT_OFF
            self.amount_off = c.params["amount_off"]
        else:
            self.kind = PERCENT
            self.rate = c.params["percent"] / 100
            self.cap = c.params.get("max_discount")


def highest_multiplier(multipliers):
    """The highest multiplier; of equal ones the first (they come in priority order)."""
    best = multipliers[0]
    for m in multipliers[1:]:
        if m[0].multiplier > best[0].multiplier:
            best = m
    return best


class Floor:
    """A plain evaluator of payments: campaigns in a dict by merchant, Decimal money.

    evaluate(event) -> (base points, ((campaign id, "discount" | "points", value), ...)).
    Rules (CONTRACT section 2): inside [starts_at, ends_at) and one window in the campaign's
    timezone, every condition holds; in priority order (then id); an exclusive campaign that
    applies stops every lower-priority one; discounts never take the payment below zero;
    of the points multipliers not blocked only the highest is granted (an exclusive one is
    settled where it stands, against those above it);
    base points floor(amount x points per unit); money half-up to the cent; rewards listed
    in priority order.
    """

    def __init__(self, campaigns: Iterable[Campaign], points_per_unit: Decimal = POINTS_PER_UNIT):
        self.points_per_unit = points_per_unit
        bank_wide: list[FloorCampaign] = []
        scoped: dict[str, list[FloorCampaign]] = {}
        for c in campaigns:
            fc = FloorCampaign(c)
            if c.merchants is None:
                bank_wide.append(fc)
            else:
                for merchant in c.merchants:
                    scoped.setdefault(merchant, []).append(fc)
        order = lambda c: (-c.priority, c.id)  # noqa: E731
        self.bank_wide = sorted(bank_wide, key=order)
        # Each merchant's list already holds the bank-wide campaigns, in priority order.
        self.by_merchant = {m: sorted(cs + bank_wide, key=order) for m, cs in scoped.items()}

    def evaluate(self, event: Event):
        amount = event.amount
        base = int((amount * self.points_per_unit).to_integral_value(ROUND_FLOOR))
        at = event.occurred_at
        local_by_zone = {}
        matched = []
        for c in self.by_merchant.get(event.merchant_id, self.bank_wide):
            if not (c.starts_at <= at < c.ends_at):
                continue
            if c.windows:
                local = local_by_zone.get(c.zone)
                if local is None:
                    local = local_by_zone[c.zone] = at.astimezone(c.zone)
                weekday, clock = local.weekday(), local.time()
                for days, start, end in c.windows:
                    if weekday in days and start <= clock and (end is None or clock < end):
                        break
                else:
                    continue
            if c.min_amount is not None and amount < c.min_amount:
                continue
            if c.mcc is not None and event.mcc not in c.mcc:
                continue
            if c.channels is not None and event.channel not in c.channels:
                continue
            if c.kind == PERCENT:
                value = (amount * c.rate).quantize(CENT, ROUND_HALF_UP)
                if c.cap is not None and value > c.cap:
                    value = c.cap
                if value:
                    matched.append((c, value))
            elif c.kind == AMOUNT_OFF:
                matched.append((c, c.amount_off if c.amount_off < amount else amount))
            else:
                extra = int((base * c.multiplier).to_integral_value(ROUND_FLOOR)) - base
                if extra > 0:
                    matched.append((c, extra))

        granted = []  # (campaign, kind, value)
        payable = amount
        blocked_below = None  # priority of an exclusive campaign that applied
        multipliers = []  # the highest of these is granted at the end
        multiplier_done = False
        for c, value in matched:
            if blocked_below is not None and c.priority < blocked_below:
                break
            if c.kind == MULTIPLIER:
                if multiplier_done:
                    continue
                if not c.exclusive:
                    multipliers.append((c, value))
                    continue
                # An exclusive multiplier decides now, against the higher ones seen so far:
                # if it wins, nothing below it applies.
                best, best_value = highest_multiplier(multipliers + [(c, value)])
                granted.append((best, "points", best_value))
                multiplier_done = True
                if best.exclusive:
                    blocked_below = best.priority
                continue
            if payable <= 0:
                continue
            if value > payable:
                value = payable
            payable -= value
            granted.append((c, "discount", value))
            if c.exclusive:
                blocked_below = c.priority
        if not multiplier_done:
            multipliers = [m for m in multipliers
                           if blocked_below is None or m[0].priority >= blocked_below]
            if multipliers:
                best, best_value = highest_multiplier(multipliers)
                granted.append((best, "points", best_value))
        if len(granted) > 1:  # listed in priority order
            granted.sort(key=lambda g: (-g[0].priority, g[0].id))
        grants = [(c.id, kind, value) for c, kind, value in granted]
        return base, tuple(grants)


# --------------------------------------------------------------------------- checks


def engine_outcome(decision: Decision):
    """The engine's decision in the floor's shape."""
    return decision.base_points, tuple(
        (g.reward.campaign_id, g.reward.kind,
         g.reward.points if g.reward.points is not None else g.reward.amount)
        for g in decision.grants if g.campaign is not None)


@dataclass
class Totals:
    events: int = 0
    grants: int = 0
    discount: Decimal = Decimal(0)
    points: int = 0  # base points included

    def add(self, outcome) -> None:
        base, grants = outcome
        self.events += 1
        self.points += base
        for _, kind, value in grants:
            self.grants += 1
            if kind == "discount":
                self.discount += value
            else:
                self.points += value


class Mismatch(AssertionError):
    pass


def compile_engine(campaigns: Sequence[Campaign]) -> RulesEngine:
    registry = build_registry(get_plugin_manager(load_entry_points=False))

    def fail(campaign, exc):  # a benchmark campaign that does not compile is a bug here
        raise exc

    return RulesEngine.compile(campaigns, registry, currency=CURRENCY,
                               points_per_unit=POINTS_PER_UNIT, on_error=fail)


def cross_check(engine: RulesEngine, floor: Floor, events: Sequence[Event],
                user: UserState) -> tuple[Totals, Totals]:
    """Every event's rewards must be the same from both; returns the totals of each."""
    engine_totals, floor_totals = Totals(), Totals()
    for event in events:
        mine = engine_outcome(engine.evaluate(event, user))
        theirs = floor.evaluate(event)
        engine_totals.add(mine)
        floor_totals.add(theirs)
        if mine != theirs:
            raise Mismatch(f"event {event.event_id}: engine {mine} != floor {theirs}")
    if engine_totals != floor_totals:
        raise Mismatch(f"totals differ: engine {engine_totals} != floor {floor_totals}")
    return engine_totals, floor_totals


# --------------------------------------------------------------------------- timing


def engine_loop(engine: RulesEngine, events: Sequence[Event], user: UserState) -> float:
    evaluate = engine.evaluate
    start = time.perf_counter()
    for event in events:
        evaluate(event, user)
    return time.perf_counter() - start


def floor_loop(floor: Floor, events: Sequence[Event], user: UserState) -> float:
    evaluate = floor.evaluate
    start = time.perf_counter()
    for event in events:
        evaluate(event)
    return time.perf_counter() - start


def best_of(loops: dict, repeat: int, keep_gc: bool) -> dict:
    """Best time of each loop over `repeat` rounds. Every round runs every loop once, in
    alternating order, so a slow spell on the machine hits all of them alike."""
    best = {name: math.inf for name in loops}
    names = list(loops)
    for round_ in range(repeat):
        for name in (names if round_ % 2 == 0 else names[::-1]):
            gc.collect()
            if not keep_gc:
                gc.disable()
            try:
                best[name] = min(best[name], loops[name]())
            finally:
                gc.enable()
    return best


@dataclass
class Setup:
    """One size, ready to time: both evaluators, the events, and what they were checked to give."""
    campaigns: int
    merchants: int
    engine: RulesEngine
    floor: Floor
    events: Sequence[Event]
    user: UserState
    totals: Totals
    candidates: float  # per event, as indexed by the engine


def prepare(campaigns: Sequence[Campaign], events: Sequence[Event], merchants: int) -> Setup:
    engine = compile_engine(campaigns)
    floor = Floor(campaigns)
    user = UserState(user_id="u_bench")
    totals, _ = cross_check(engine, floor, events, user)
    candidates = sum(len(engine.candidates(e)) for e in events) / len(events)
    return Setup(len(campaigns), merchants, engine, floor, events, user, totals, candidates)


@dataclass
class SizeResult:
    campaigns: int
    merchants: int
    candidates: float  # per event, as indexed by the engine
    grants: float  # campaign rewards per event
    engine_eps: float
    floor_eps: float
    totals: Totals

    @property
    def ratio(self) -> float:
        return self.engine_eps / self.floor_eps


def measure(setups: Sequence[Setup], repeat: int, keep_gc: bool) -> list[SizeResult]:
    """Times engine and floor at every size, all interleaved round by round."""
    loops = {}
    for i, s in enumerate(setups):
        loops[i, "engine"] = lambda s=s: engine_loop(s.engine, s.events, s.user)
        loops[i, "floor"] = lambda s=s: floor_loop(s.floor, s.events, s.user)
    best = best_of(loops, repeat, keep_gc)
    return [SizeResult(s.campaigns, s.merchants, s.candidates, s.totals.grants / len(s.events),
                       len(s.events) / best[i, "engine"], len(s.events) / best[i, "floor"],
                       s.totals)
            for i, s in enumerate(setups)]


def run_sizes(sizes: Sequence[int], n_events: int, repeat: int, keep_gc: bool = False,
              seed: int = 2027, merchants: int = MERCHANTS) -> list[SizeResult]:
    setups = []
    for size in sizes:
        rng = random.Random(seed)
        shops = make_merchants(merchants, rng)
        campaigns = make_campaigns(size, shops, rng)
        events = make_events(n_events, shops, random.Random(seed + 1))
        setups.append(prepare(campaigns, events, merchants))
    return measure(setups, repeat, keep_gc)


def run_scaling(sizes: Sequence[int], n_events: int, repeat: int, keep_gc: bool = False,
                seed: int = 2027, spread: bool = True) -> list[SizeResult]:
    """spread: events over every merchant that has campaigns (2 at 10 campaigns, 2,499 at
    10,000); otherwise over the same 2 merchants at every size, the other campaigns being
    on merchants without events: the cost of the total alone, without the cache misses of
    visiting more distinct campaigns."""
    setups = []
    for size in sizes:
        campaigns, shops = make_scaling_campaigns(size)
        if not spread:
            shops = shops[:2]
        events = make_events(n_events, shops, random.Random(seed + 1))
        setup = prepare(campaigns, events, len(shops))
        if setup.candidates != SCALING_CANDIDATES:
            raise AssertionError(f"{setup.candidates} candidates per event, "
                                 f"not {SCALING_CANDIDATES}")
        setups.append(setup)
    return measure(setups, repeat, keep_gc)


# --------------------------------------------------------------------------- report


def machine_note() -> str:
    cpus = os.cpu_count()
    pinned = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"Python {platform.python_version()} ({platform.python_implementation()}), "
            f"{platform.system()} {platform.machine()}, {model}, {cpus} CPUs"
            + (f", pinned to CPU {','.join(map(str, pinned))}" if pinned and len(pinned) < (cpus or 0) else ""))


def print_sizes(results: Sequence[SizeResult]) -> bool:
    print(f"{'campaigns':>9} {'merchants':>9} {'cand/ev':>7} {'grants/ev':>9} "
          f"{'engine ev/s':>12} {'floor ev/s':>11} {'engine/floor':>12}  target >= {RATIO_TARGET:.2f}")
    ok = True
    for r in results:
        met = r.ratio >= RATIO_TARGET
        ok &= met
        print(f"{r.campaigns:>9,} {r.merchants:>9,} {r.candidates:>7.2f} {r.grants:>9.2f} "
              f"{r.engine_eps:>12,.0f} {r.floor_eps:>11,.0f} {r.ratio:>12.2f}  "
              f"{'met' if met else 'MISSED'}")
    return ok


def print_scaling(results: Sequence[SizeResult], label: str) -> bool:
    print(f"{'campaigns':>9} {'merchants':>9} {'cand/ev':>7} {'grants/ev':>9} "
          f"{'engine us/ev':>12} {'floor us/ev':>11} {'engine/floor':>12}")
    for r in results:
        print(f"{r.campaigns:>9,} {r.merchants:>9,} {r.candidates:>7.2f} {r.grants:>9.2f} "
              f"{1e6 / r.engine_eps:>12.2f} {1e6 / r.floor_eps:>11.2f} {r.ratio:>12.2f}")
    first, last = results[0], results[-1]
    engine_scale = first.engine_eps / last.engine_eps
    floor_scale = first.floor_eps / last.floor_eps
    met = engine_scale <= SCALING_TARGET
    print(f"{label}: time per event at {last.campaigns:,} / at {first.campaigns:,} campaigns: "
          f"engine {engine_scale:.2f}x, floor {floor_scale:.2f}x  "
          f"(target engine <= {SCALING_TARGET}x: {'met' if met else 'MISSED'})")
    return met


def profile(size: int, n_events: int, seed: int) -> None:
    import cProfile
    import pstats
    rng = random.Random(seed)
    shops = make_merchants(MERCHANTS, rng)
    engine = compile_engine(make_campaigns(size, shops, rng))
    events = make_events(n_events, shops, random.Random(seed + 1))
    user = UserState(user_id="u_bench")
    profiler = cProfile.Profile()
    profiler.runcall(engine_loop, engine, events, user)
    pstats.Stats(profiler).sort_stats("tottime").print_stats(20)


def pin_to_one_cpu() -> None:
    """One core, as the target says; also keeps the scheduler from moving us mid-run."""
    if hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
        except OSError:
            pass


def parse_sizes(text: str) -> tuple[int, ...]:
    return tuple(int(s.replace("_", "")) for s in text.split(",") if s.strip())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20000, help="events per size (20000)")
    parser.add_argument("--repeat", type=int, default=7, help="timed rounds, best kept (7)")
    parser.add_argument("--quick", action="store_true", help="2,000 events, 3 rounds")
    parser.add_argument("--sizes", type=parse_sizes, default=SIZES,
                        help="campaign counts, comma-separated (10,1000,10000)")
    parser.add_argument("--scaling-sizes", type=parse_sizes, default=SCALING_SIZES,
                        help="campaign counts for the constant-candidates run (10,10000)")
    parser.add_argument("--seed", type=int, default=2027)
    parser.add_argument("--gc", action="store_true", help="keep the garbage collector on")
    parser.add_argument("--no-pin", action="store_true", help="do not pin to one CPU")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--profile", type=int, metavar="CAMPAIGNS",
                        help="cProfile the engine at this size instead of benchmarking")
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.repeat = 2000, 3
    if not args.no_pin:
        pin_to_one_cpu()
    if args.profile:
        profile(args.profile, args.events, args.seed)
        return 0

    print(f"Rule evaluation, engine vs hand-written floor: {args.events:,} payment events per "
          f"size, best of {args.repeat}, gc {'on' if args.gc else 'off'} while timed")
    print(machine_note())
    if hasattr(os, "getloadavg"):  # other work on the machine shows up in the figures
        print("load average before the run: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print()
    try:
        print(f"Events spread over {MERCHANTS:,} merchants, 3 campaigns bank-wide:")
        sizes_ok = print_sizes(run_sizes(args.sizes, args.events, args.repeat, args.gc, args.seed))
        print()
        print(f"Constant candidates: {SCALING_CANDIDATES} per event (4 of the merchant's "
              "+ 1 bank-wide), events over every merchant with campaigns:")
        scaling_ok = print_scaling(run_scaling(args.scaling_sizes, args.events, args.repeat,
                                               args.gc, args.seed), "spread")
        print()
        print(f"Constant candidates: {SCALING_CANDIDATES} per event, events over the same 2 "
              "merchants at every size:")
        print_scaling(run_scaling(args.scaling_sizes, args.events, args.repeat, args.gc,
                                  args.seed, spread=False), "same merchants")
    except Mismatch as exc:
        print(f"\nABORTED: engine and floor disagree: {exc}", file=sys.stderr)
        return 2
    print()
    print("Engine and floor gave identical rewards (per event and in total) at every size.")
    return 0 if (sizes_ok and scaling_ok) or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
