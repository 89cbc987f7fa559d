"""`promo-engine demo-data`: a synthetic wallet history that looks like a real one.

The quickstart, back-tests (`campaigns simulate`) and the portal's charts need a history to
show, and a bank cannot hand out its customers'. This one is made up but behaves like one:

- customers activate the wallet over the period (a launch burst, then fewer; more at
  weekends); about 43% pay within a day, 35% later, 22% never;
- payers pay at their own rate (a few times a day to once a month) until they drift away;
  about 30% stay for good, and some of the others come back weeks later;
- each payment's hour, merchant, amount and channel follow its category (demo_merchants.py)
  and the day (demo_calendar.py: lunch and dinner, the commute, weekends, the Spring
  Festival, the golden weeks, Double 11);
- 3% of payments are refunded, in full or in part, 1 to 30 days later.

The same options give the same bytes: everything is drawn from one `random.Random(seed)`
in a fixed order, and nothing depends on the clock. It streams: one local day is made,
sorted and written at a time, so memory grows with the customers, not with the events.

How: each payer's payments are a Poisson process in "busy time" (demo_clock.py), so a payer
costs one draw a payment and nothing on the days they do not pay.
"""
from __future__ import annotations

import hashlib
import math
import random
from array import array
from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import BinaryIO, Iterator

from promo_engine.backtest import demo_calendar as calendar
from promo_engine.backtest import demo_merchants as shops
from promo_engine.backtest.demo_clock import Busy, Clock
from promo_engine.core import money

DEFAULT_START = date(2026, 11, 1)  # the example campaigns' first day; Double 11 on day 11
DEFAULT_SEED = 1
MAX_USERS = 10_000_000
MAX_DAYS = 3660  # ten years

# The activation funnel: shares of the customers who activate.
NEVER_PAY = 0.22
FIRST_DAY = 0.43  # their first payment within 24 hours of activating
LATER_MEAN_DAYS = 6.0  # the others: a day plus about this many (busy) days
# Payments per ordinary day of a payer: log-normal around a median of one every 3 days.
RATE_MEDIAN, RATE_SPREAD, RATE_MAX = 0.33, 1.0, 8.0
LOYAL = 0.30  # payers who never drift away within the history
LIFETIME_MEAN_DAYS = 45.0  # how long the others keep paying after their first payment
COME_BACK = 0.4  # of those who drift away: they pay again after a while ...
AWAY_MIN_DAYS, AWAY_MEAN_DAYS = 14, 30.0  # ... at least 14 days later, 44 on average
FAVOURITE = 0.55  # a payment goes to one of the customer's two usual shops of its category
REFUND_SHARE = 0.03
FULL_REFUND = 0.6  # of refunds; the others return 10-90% of the payment
REFUND_MEAN_DAYS, REFUND_MAX_DAYS = 2.5, 30
CATEGORY_SLOTS = 256

ACTIVATION, PAYMENT, REFUND = 0, 1, 2
_NEVER = 2**62  # the churn time of a customer who never leaves


@dataclass(frozen=True)
class DemoOptions:
    users: int
    days: int
    seed: int = DEFAULT_SEED
    start: date = DEFAULT_START  # the first local day, in `timezone`
    timezone: str = "Asia/Shanghai"
    currency: str = "CNY"

    def problems(self) -> list[str]:
        """What is wrong with the options, one line each."""
        found = []
        if not 1 <= self.users <= MAX_USERS:
            found.append(f"--users must be from 1 to {MAX_USERS:,}, not {self.users}")
        if not 1 <= self.days <= MAX_DAYS:
            found.append(f"--days must be from 1 to {MAX_DAYS}, not {self.days}")
        if self.seed < 0:
            found.append(f"--seed must be 0 or more, not {self.seed}")
        if self.start.year < 1971 or self.start.year > 9000:
            found.append(f"--start must be from 1971 to 9000, not {self.start}")
        return found


@dataclass
class DemoSummary:
    users: int = 0
    merchants: int = 0
    activations: int = 0
    payments: int = 0
    refunds: int = 0
    first_day: date | None = None
    last_day: date | None = None

    @property
    def events(self) -> int:
        return self.activations + self.payments + self.refunds


def id_prefix(options: DemoOptions) -> str:
    """Event ids `demo-<6 hex>-<n>`: the hex names the options, so files made with other
    options can be posted to one service without their ids colliding."""
    text = "|".join(str(value) for value in (options.users, options.days, options.seed,
                                            options.start, options.timezone, options.currency))
    return f"demo-{hashlib.sha256(text.encode()).hexdigest()[:6]}-"


class Day:
    """What the generator needs for one local day: per segment and hour, the categories to
    draw from; per segment and category, the median amount in minor units."""

    def __init__(self, kind: calendar.Day, tables, medians):
        self.kind, self.tables, self.medians = kind, tables, medians


def _category_shapes(kind: calendar.Day) -> list[tuple[float, ...]]:
    """Each category's share of the day's payments in each hour."""
    rest = 1 if kind.rest else 0
    shapes = []
    for category in shops.CATEGORIES:
        if kind.midnight and category.key == "online":
            shapes.append(calendar.shape(calendar.MIDNIGHT_SALE))
        else:
            shapes.append(calendar.shape(calendar.PROFILES[category.profile][rest]))
    return shapes


def _hour_rates(kind: calendar.Day) -> list[float]:
    """Expected payments in each hour of the day of a one-a-day payer: they add up to the
    day's factor."""
    shapes = _category_shapes(kind)
    weights = [category.weight * kind.boosts.get(category.key, 1.0)
               for category in shops.CATEGORIES]
    hours = [sum(weight * shape[hour] for weight, shape in zip(weights, shapes))
             for hour in range(24)]
    total = sum(hours)
    return [kind.factor * value / total for value in hours]


class Generator:
    """One history; `days()` yields each local day's JSON Lines text in occurred_at order."""

    def __init__(self, options: DemoOptions):
        self.options = options
        self.random = random.Random(options.seed)
        self.clock = Clock(options.start, options.days, options.timezone)
        self.dates = [options.start + timedelta(days=d) for d in range(options.days)]
        self.kinds = [calendar.day_kind(day) for day in self.dates]
        self.merchants = shops.catalogue(options.users)
        self.popular = shops.popularity_tables(self.merchants)
        self.favourites = shops.favourite_tables(self.merchants)
        self.channels = shops.channel_tables()
        self.digits = money.minor_digits(options.currency)
        hour_rates = [_hour_rates(kind) for kind in self.kinds]
        self.busy = Busy(self.clock, [hour_rates[day][hour]
                                      for day, hour in zip(self.clock.day, self.clock.hour)])
        self._day_cache: dict[tuple, Day] = {}
        self.segments = shops.segment_slots(CATEGORY_SLOTS)
        self.segment_names = [segment.name for segment in shops.SEGMENTS]
        self.frequency = [segment.frequency for segment in shops.SEGMENTS]
        self.spreads = [category.spread for category in shops.CATEGORIES]
        self.whole = [category.whole for category in shops.CATEGORIES]
        self.merchant_ids = [merchant.merchant_id for merchant in self.merchants]
        self.mccs = [merchant.mcc for merchant in self.merchants]
        self.summary = DemoSummary(users=options.users, merchants=len(self.merchants))
        self._templates()

    def _templates(self) -> None:
        """The three kinds of line, with `%` holes for what changes from event to event.
        Everything put in is ids, digits and names of A-Z a-z 0-9 _ . : - (no quotes or
        backslashes), so the lines are valid JSON without an encoder."""
        width = max(6, len(str(self.options.users)))
        self.prefix = id_prefix(self.options)

        def head(kind: str) -> str:
            return ('{"event_id":"' + self.prefix + '%d","type":"' + kind + '","user_id":"u_%0'
                    + str(width) + 'd","occurred_at":"%s%s%s"')
        amount = f"%d.%0{self.digits}d" if self.digits else "%d%.0s"
        money_part = (',"merchant_id":"%s","amount":"' + amount + '","currency":"'
                      + self.options.currency + '","mcc":"%s","channel":"%s"')
        self.activation_line = head("activation") + ',"attributes":{"segment":"%s"}}\n'
        self.payment_line = head("payment") + money_part + ',"attributes":{"segment":"%s"}}\n'
        self.refund_line = head("refund") + money_part + ',"original_event_id":"%s"}\n'
        self.minute_second = [f"{s // 60:02d}:{s % 60:02d}" for s in range(3600)]

    def _day(self, index: int) -> Day:
        kind = self.kinds[index]
        key = (kind.rest, kind.midnight, tuple(sorted(kind.boosts.items())),
               tuple(sorted(kind.spend.items())))
        day = self._day_cache.get(key)
        if day is None:
            shapes = _category_shapes(kind)
            tables, medians = [], []
            unit = 10 ** self.digits
            for segment in shops.SEGMENTS:
                weights = [category.weight * kind.boosts.get(category.key, 1.0)
                           * segment.likes.get(category.key, 1.0)
                           for category in shops.CATEGORIES]
                tables.append([shops.slots(list(range(len(weights))),
                                           [w * shape[hour] for w, shape in zip(weights, shapes)],
                                           CATEGORY_SLOTS)
                               for hour in range(24)])
                medians.append([category.median * unit * segment.spend
                                * kind.spend.get(category.key, 1.0)
                                for category in shops.CATEGORIES])
            day = self._day_cache[key] = Day(kind, tables, medians)
        return day

    def _activations(self) -> array:
        """Every customer's activation time (Unix seconds), earliest first: customer numbers
        follow the order of activation, as a wallet hands them out."""
        clock, rand = self.clock, self.random.random
        shapes = [calendar.shape(calendar.ACTIVATION_PROFILE[rest]) for rest in (0, 1)]
        weights = [calendar.activation_weight(self.dates[day], day)
                   * shapes[1 if self.kinds[day].rest else 0][hour]
                   for day, hour in zip(clock.day, clock.hour)]
        cumulative, total = [], 0.0
        for weight in weights:
            cumulative.append(total)
            total += weight
        times = []
        for _ in range(self.options.users):
            k = bisect_right(cumulative, rand() * total) - 1
            times.append(min(clock.starts[k] + int(rand() * 3600), clock.end - 1))
        times.sort()
        return array("q", times)

    def days(self) -> Iterator[str]:
        """Each local day's lines, in occurred_at order ("" for a day without events)."""
        users = self.options.users
        # per customer, in compact arrays: memory grows with the customers
        self.activated = self._activations()
        self.segment_of = bytearray(users)
        self.rate_of = array("d", bytes(8 * users))
        self.churn_of = array("q", [_NEVER]) * users
        # day -> (customer, busy time of their next payment) / the refunds made that day
        self.due: dict[int, list[tuple[int, float]]] = {}
        self.refunds_due: dict[int, list[tuple]] = {}
        self.next_customer = 0
        self.number = 0  # of the last event id
        for d in range(self.options.days):
            events: list[tuple] = [
                (t, seq, REFUND, user, merchant, cents, channel, original)
                for seq, (t, user, merchant, cents, channel, original)
                in enumerate(self.refunds_due.pop(d, ()))]
            self._activate(d, events)
            self._pay(d, events)
            events.sort()  # by time, then order of making (each (t, seq) is unique)
            yield self._lines(d, events)

    def _activate(self, d: int, events: list[tuple]) -> None:
        """Day `d`'s activations, and when each customer will first pay (if ever)."""
        busy, rand, log = self.busy, self.random.random, math.log
        cum, starts, seconds_per_unit = busy.cum, self.clock.starts, busy.seconds_per_unit
        segments = self.segments
        day_end = self.clock.day_start[d + 1]
        seq = len(events)
        while self.next_customer < self.options.users \
                and self.activated[self.next_customer] < day_end:
            user = self.next_customer
            t = self.activated[user]
            self.next_customer += 1
            segment = self.segment_of[user] = segments[int(rand() * CATEGORY_SLOTS)]
            events.append((t, seq, ACTIVATION, user))
            seq += 1
            funnel = rand()
            if funnel < NEVER_PAY:
                continue
            now = busy.at(t)
            if funnel < NEVER_PAY + FIRST_DAY:  # within 24 hours, soon more likely
                span = busy.at(t + 86400) - now
                first = now + span * min(0.95, 0.002 - 0.15 * log(1.0 - rand()))
            else:
                first = busy.at(t + 86400) - LATER_MEAN_DAYS * log(1.0 - rand())
            if first >= busy.total:
                continue
            rate = RATE_MEDIAN * math.exp(RATE_SPREAD * self.random.gauss(0.0, 1.0))
            self.rate_of[user] = min(RATE_MAX, rate * self.frequency[segment])
            k = bisect_right(cum, first) - 1
            if rand() >= LOYAL:
                paid = starts[k] + int((first - cum[k]) * seconds_per_unit[k])
                self.churn_of[user] = paid + 1 + int(-LIFETIME_MEAN_DAYS * 86400
                                                     * log(1.0 - rand()))
            self.due.setdefault(self.clock.day[k], []).append((user, first))

    def _pay(self, d: int, events: list[tuple]) -> None:
        """The payments of day `d` of every customer due to pay that day. The hot loop:
        everything it uses is a local name."""
        clock, busy, rand, log, exp = self.clock, self.busy, self.random.random, math.log, math.exp
        gauss = self.random.gauss
        cum, starts, seconds_per_unit = busy.cum, clock.starts, busy.seconds_per_unit
        bucket_day, bucket_hour, end = clock.day, clock.hour, clock.end
        day = self._day(d)
        tables, medians = day.tables, day.medians
        popular, favourites, channels = self.popular, self.favourites, self.channels
        spreads, whole = self.spreads, self.whole
        rate_of, churn_of, segment_of, due = self.rate_of, self.churn_of, self.segment_of, self.due
        unit, day_end, seq = 10 ** self.digits, clock.day_start[d + 1], len(events)
        append = events.append
        for user, moment in due.pop(d, ()):
            rate, leaves, segment = rate_of[user], churn_of[user], segment_of[user]
            while True:
                k = bisect_right(cum, moment) - 1
                t = starts[k] + int((moment - cum[k]) * seconds_per_unit[k])
                if t >= end:
                    break
                if t >= leaves:  # drifts away; some come back weeks later (win-backs)
                    back = self._come_back(user, leaves)
                    if back is None:
                        break
                    moment, leaves = busy.at(back), churn_of[user]
                    continue
                if t >= day_end:
                    due.setdefault(bucket_day[k], []).append((user, moment))
                    break
                category = tables[segment][bucket_hour[k]][int(rand() * CATEGORY_SLOTS)]
                if rand() < FAVOURITE:
                    usual = favourites[category]
                    merchant = usual[(user * 2654435761 + category * 40503
                                      + 7 * (rand() < 0.5)) % len(usual)]
                else:
                    merchant = popular[category][int(rand() * shops.POPULARITY_SLOTS)]
                # A random draw, not money: it becomes integer minor units at once.
                cents = int(medians[segment][category] * exp(spreads[category] * gauss()))
                if rand() < whole[category]:
                    cents -= cents % unit
                if cents < unit:
                    cents = unit
                append((t, seq, PAYMENT, user, merchant, cents,
                        channels[category][int(rand() * shops.CHANNEL_SLOTS)]))
                seq += 1
                moment -= log(1.0 - rand()) / rate

    def _come_back(self, user: int, left: int) -> int | None:
        """When `user`, who stopped paying at Unix second `left`, starts paying again (and
        sets when they stop again), or None: gone for good, or not within the history."""
        rand, log = self.random.random, math.log
        if rand() >= COME_BACK:
            return None
        back = left + int((AWAY_MIN_DAYS - AWAY_MEAN_DAYS * log(1.0 - rand())) * 86400)
        if back >= self.clock.end:
            return None
        self.churn_of[user] = back + 1 + int(-LIFETIME_MEAN_DAYS * 86400 * log(1.0 - rand()))
        return back

    def _lines(self, d: int, events: list[tuple]) -> str:
        """The day's events (sorted) as JSON Lines; each payment may get a later refund."""
        clock, rand, summary = self.clock, self.random.random, self.summary
        begin, stamps, offsets, minute_second = clock.begin, clock.stamp, clock.offset, \
            self.minute_second
        merchant_ids, mccs, names = self.merchant_ids, self.mccs, self.segment_names
        activation_line, payment_line = self.activation_line, self.payment_line
        refund_line, segment_of, unit = self.refund_line, self.segment_of, 10 ** self.digits
        number = self.number
        lines = []
        append = lines.append
        for event in events:
            t, kind, user = event[0], event[2], event[3]
            number += 1
            k = (t - begin) // 3600
            stamp, clock_time, offset = stamps[k], minute_second[(t - begin) % 3600], offsets[k]
            if stamp is None:  # an hour that does not start on the hour (rare zones)
                stamp, clock_time, offset = \
                    datetime.fromtimestamp(t, clock.zone).isoformat(), "", ""
            if kind == PAYMENT:
                merchant, cents = event[4], event[5]
                append(payment_line % (number, user + 1, stamp, clock_time, offset,
                                       merchant_ids[merchant], cents // unit, cents % unit,
                                       mccs[merchant], event[6], names[segment_of[user]]))
                if rand() < REFUND_SHARE:
                    self._refund(d, event, number)
            elif kind == ACTIVATION:
                append(activation_line % (number, user + 1, stamp, clock_time, offset,
                                          names[segment_of[user]]))
            else:
                merchant, cents = event[4], event[5]
                append(refund_line % (number, user + 1, stamp, clock_time, offset,
                                      merchant_ids[merchant], cents // unit, cents % unit,
                                      mccs[merchant], event[6], event[7]))
        counts = Counter(event[2] for event in events)
        summary.activations += counts[ACTIVATION]
        summary.payments += counts[PAYMENT]
        summary.refunds += counts[REFUND]
        self.number = number
        if lines:
            summary.first_day = summary.first_day or self.dates[d]
            summary.last_day = self.dates[d]
        return "".join(lines)

    def _refund(self, d: int, payment: tuple, number: int) -> None:
        """Maybe refund `payment` (event id `number`, made on day `d`) on a later day, in
        full or in part; a refund that would fall after the history is not made."""
        rand = self.random.random
        cents = payment[5]
        if rand() >= FULL_REFUND and cents > 1:
            cents = max(1, int(cents * (0.1 + 0.8 * rand())))
        delay = min(REFUND_MAX_DAYS, 1 + int(-REFUND_MEAN_DAYS * math.log(1.0 - rand())))
        day = d + delay
        if day >= self.options.days:
            return
        # business hours, 09:00-21:00 of the local day
        t = self.clock.day_start[day] + 3600 * (9 + int(rand() * 12)) + int(rand() * 3600)
        original = self.prefix + str(number)
        self.refunds_due.setdefault(day, []).append(
            (t, payment[3], payment[4], cents, payment[6], original))


def write_demo_data(options: DemoOptions, out: BinaryIO) -> DemoSummary:
    """Write the history of `options` to `out` as JSON Lines; what was written."""
    generator = Generator(options)
    for text in generator.days():
        if text:
            out.write(text.encode("ascii"))
    return generator.summary
