"""A small seeded wallet history for the back-test's equivalence test, and the campaigns it
runs against: enough of everything the simulator must get exactly right (first activations
and payments, partial and full refunds, refunds the service refuses, points spent and given
back, exchanges and cancels, repeated event ids) in about a thousand lines.

`campaign_figures` reads the same figures as the simulator's result from a service's
ledger rows, so the test compares the two.
"""
from __future__ import annotations

import json
import random
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

ZONE = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 3, 2, tzinfo=ZONE)  # a Monday
DAYS = 8
# Every campaign below is open at this instant, so one apply opens them all.
OPEN_AT = datetime(2026, 3, 5, 12, 0, tzinfo=ZONE)

CAMPAIGNS = """\
id: welcome-points
name: Welcome points
type: first_activation_bonus
starts_at: 2026-03-01T00:00:00
ends_at: 2026-04-01T00:00:00
budget: {points: 2000}
params: {on: activation, points: 100}
---
id: welcome-voucher
name: Welcome voucher
type: first_activation_bonus
starts_at: 2026-03-01T00:00:00
ends_at: 2026-04-01T00:00:00
budget: {amount: "150.00"}
params: {on: activation, voucher: {amount: "10.00", valid_days: 30}}
---
id: first-payment-cashback
name: First payment cashback
type: first_activation_bonus
starts_at: 2026-03-01T00:00:00
ends_at: 2026-04-01T00:00:00
budget: {amount: "60.00"}
params: {on: first_payment, cashback: "5.00"}
---
id: lunch-discount
name: Lunch 10% off
type: holiday_discount
merchants: [m_1, m_2]
starts_at: 2026-03-01T00:00:00
ends_at: 2026-04-01T00:00:00
windows: [{from: "11:00", to: "14:00"}]
conditions: {min_amount: "20.00"}
limits: {per_user: 3, per_user_daily: 1, max_redemptions: 5}
params: {percent: 10, max_discount: "8.00"}
---
id: double-points
name: Double points
type: points_multiplier
starts_at: 2026-03-01T00:00:00
ends_at: 2026-04-01T00:00:00
priority: 10
budget: {points: 6000}
limits: {per_user_daily: 2}
params: {multiplier: 2}
---
id: triple-at-m1
name: Triple points at m_1
type: points_multiplier
merchants: [m_1]
starts_at: 2026-03-04T00:00:00
ends_at: 2026-04-01T00:00:00
priority: 20
limits: {per_user: 4}
params: {multiplier: 3}
---
id: flat-off-m3
name: 3.00 off at m_3, alone
type: holiday_discount
merchants: [m_3]
starts_at: 2026-03-01T00:00:00
ends_at: 2026-03-06T00:00:00
priority: 200
exclusive: true
limits: {per_user: 2}
budget: {amount: "60.00"}
params: {amount_off: "3.00"}
---
id: london-daily
name: 5% off at m_4, once a London day
type: holiday_discount
timezone: Europe/London
merchants: [m_4]
starts_at: 2026-03-01T00:00:00
ends_at: 2026-04-01T00:00:00
limits: {per_user_daily: 1}
params: {percent: 5}
---
id: cashback-exchange
name: 150 points for 2.00 cashback
type: points_exchange
starts_at: 2026-03-01T00:00:00
ends_at: 2026-04-01T00:00:00
limits: {max_redemptions: 12, per_user: 2}
params: {cost_points: 150, cashback: "2.00"}
---
id: win-back
name: 2.00 off for customers idle a day
type: holiday_discount
starts_at: 2026-03-01T00:00:00
ends_at: 2026-04-01T00:00:00
conditions: {user: {min_payments: 1, inactive_days: 1}}
budget: {amount: "10.00"}
params: {amount_off: "2.00"}
---
id: held-out
name: 3% off at m_2, with a control group
type: holiday_discount
merchants: [m_2]
starts_at: 2026-03-01T00:00:00
ends_at: 2026-04-01T00:00:00
holdout: 30
params: {percent: 3}
"""

MERCHANTS = ("m_1", "m_2", "m_3", "m_4", "m_5", "m_9")


class _Item:
    """An event of the history before it has its line: refunds and cancels name their
    payment or redemption by the id it gets once every line is in place."""

    def __init__(self, at: datetime, body: dict, target: "_Item | None" = None):
        self.at, self.body, self.target = at, body, target
        self.line = 0

    def event_id(self) -> str:
        return self.body.get("event_id") or f"line-{self.line}"


def _amount(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"


def _text(at: datetime, rng: random.Random) -> str:
    """occurred_at as a wallet writes it: mostly local time, sometimes UTC."""
    if rng.random() < 0.2:
        return at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    return at.astimezone(ZONE).isoformat()


def generate_history(seed: int, *, users: int = 40, payments: int = 700) -> list[dict]:
    """The bodies, in occurred_at order (lines without event_id get line-N)."""
    rng = random.Random(seed)
    items: list[_Item] = []

    def moment(after: datetime | None = None, within: int = DAYS * 86400) -> datetime:
        base = after or START
        return base + timedelta(seconds=rng.randrange(30 if after else 0, within))

    for n in range(users):
        if rng.random() < 0.8:
            at = moment()
            items.append(_Item(at, {"type": "activation", "user_id": f"u{n}"}))
            if rng.random() < 0.15:  # a second activation earns nothing
                items.append(_Item(moment(at, 86400), {"type": "activation",
                                                       "user_id": f"u{n}"}))
    paid: list[_Item] = []
    for n in range(payments):
        minor = rng.choice([rng.randrange(50, 2000), rng.randrange(2000, 30000), 7, 99, 2])
        body = {"type": "payment", "user_id": f"u{rng.randrange(users)}",
                "merchant_id": rng.choice(MERCHANTS), "amount": _amount(minor),
                "currency": "CNY", "mcc": rng.choice(["5812", "5411", "5999"]),
                "channel": rng.choice(["qr", "online", "in_store"])}
        if rng.random() < 0.85:
            body["event_id"] = f"p{n}"
        if rng.random() < 0.06 and minor >= 500:
            body["redeem_points"] = rng.choice([50, 120, 400])
        item = _Item(moment(), body)
        items.append(item)
        paid.append(item)
        _refunds(rng, item, minor, items)
    _spending(rng, items, users)
    stranger = _Item(START + timedelta(days=3), {
        "type": "refund", "user_id": "u1", "merchant_id": "m_1", "amount": "1.00",
        "currency": "CNY", "original_event_id": "no-such-payment"})
    items.append(stranger)
    items.sort(key=lambda item: item.at)
    items = _repeats(rng, items)
    for line, item in enumerate(items, 1):
        item.line = line
    bodies = []
    for item in items:
        body = dict(item.body, occurred_at=_text(item.at, rng))
        if item.target is not None:
            body["original_event_id"] = item.target.event_id()
        bodies.append(body)
    return bodies


def _refunds(rng: random.Random, payment: _Item, minor: int, items: list) -> None:
    """Full, two partial adding up to the whole, one partial, or one too many."""
    body = payment.body
    base = {"type": "refund", "user_id": body["user_id"], "merchant_id": body["merchant_id"],
            "currency": "CNY"}
    choice = rng.random()
    if choice < 0.04:
        parts = [minor]
    elif choice < 0.08 and minor >= 2:
        first = rng.randrange(1, minor)
        parts = [first, minor - first]
    elif choice < 0.11 and minor >= 2:
        parts = [rng.randrange(1, minor)]
    elif choice < 0.12:
        parts = [minor, 1]  # the second exceeds the payment: refused
    else:
        return
    at = payment.at
    for part in parts:
        at = at + timedelta(seconds=rng.randrange(60, 2 * 86400))
        items.append(_Item(at, dict(base, amount=_amount(part)), target=payment))


def _spending(rng: random.Random, items: list, users: int) -> None:
    """Burns and exchanges late in the history (points earned by then), some cancelled."""
    for n in range(60):
        at = START + timedelta(days=4, seconds=rng.randrange(4 * 86400))
        body = {"type": "redemption", "user_id": f"u{rng.randrange(users)}",
                "event_id": f"r{n}"}
        if rng.random() < 0.6:
            body["campaign_id"] = "cashback-exchange"
        else:
            body["points"] = rng.choice([20, 100, 250])
        item = _Item(at, body)
        items.append(item)
        if rng.random() < 0.25:
            items.append(_Item(at + timedelta(seconds=rng.randrange(60, 86400)),
                               {"type": "cancel", "user_id": body["user_id"]}, target=item))


def _repeats(rng: random.Random, items: list[_Item]) -> list[_Item]:
    """A few lines again: the same body (the service replays it) and one with another
    amount (refused as a conflict)."""
    explicit = [i for i, item in enumerate(items)
                if item.body.get("event_id", "").startswith("p")
                and "redeem_points" not in item.body]
    picks = sorted(rng.sample(explicit, 4))
    result = list(items)
    for shift, index in enumerate(picks):
        original = items[index]
        body = dict(original.body)
        if shift == 3:
            body["amount"] = "1.23" if body["amount"] != "1.23" else "3.21"
        result.insert(index + 1 + shift, _Item(original.at, body))
    return result


def write_jsonl(bodies: list[dict], path) -> None:
    path.write_text("".join(json.dumps(body) + "\n" for body in bodies))


def with_event_id(body: dict, line: int) -> dict:
    return body if "event_id" in body else dict(body, event_id=f"line-{line}")


def campaign_figures(session, zones: dict[str, str]) -> dict:
    """Per campaign, from the ledger's rows, what the simulator reports: rewards and users
    (rewards not fully reversed), cost (money, minor units) and points net of reversals,
    and the same per local day (a reversal on its refund's or cancel's day)."""
    from sqlalchemy import select

    from promo_engine.ledger.models import EventRecord, RewardRecord
    grants = session.execute(
        select(RewardRecord).where(RewardRecord.campaign_id.is_not(None),
                                   RewardRecord.reason.is_(None),
                                   RewardRecord.reverses_id.is_(None))
        .order_by(RewardRecord.id)).scalars().all()
    reversals = defaultdict(list)
    for row, occurred_at in session.execute(
            select(RewardRecord, EventRecord.occurred_at)
            .join(EventRecord, EventRecord.id == RewardRecord.event_pk)
            .where(RewardRecord.reverses_id.is_not(None)).order_by(RewardRecord.id)).all():
        reversals[row.reverses_id].append((occurred_at, row))
    figures: dict = {}
    for grant in grants:
        zone = ZoneInfo(zones[grant.campaign_id])
        entry = figures.setdefault(grant.campaign_id, {"rewards": 0, "users": set(), "cost": 0,
                                                       "points": 0, "days": defaultdict(
                                                           lambda: [0, 0, 0])})
        is_points = grant.kind == "points"
        value = grant.points if is_points else grant.amount_minor
        slot = 2 if is_points else 1
        day = entry["days"][grant.local_day]
        day[0] += 1
        day[slot] += value
        left = value
        for occurred_at, row in sorted(reversals[grant.id], key=lambda pair: pair[0]):
            change = row.points if is_points else row.amount_minor
            left += change
            day = entry["days"][occurred_at.astimezone(zone).date()]
            day[slot] += change
            if left == 0:
                day[0] -= 1
        entry["cost" if not is_points else "points"] += left
        if left:
            entry["rewards"] += 1
            entry["users"].add(grant.user_id)
    return {campaign_id: dict(entry, users=len(entry["users"]),
                              days={d: tuple(v) for d, v in sorted(entry["days"].items())})
            for campaign_id, entry in figures.items()}


def base_points(session) -> int:
    """Base points granted, net of their reversals."""
    from sqlalchemy import select

    from promo_engine.ledger.models import RewardRecord
    base = select(RewardRecord.id).where(
        RewardRecord.campaign_id.is_(None), RewardRecord.kind == "points",
        RewardRecord.reason.is_(None), RewardRecord.reverses_id.is_(None))
    granted = session.execute(select(RewardRecord.points).where(
        RewardRecord.id.in_(base))).scalars().all()
    reversed_ = session.execute(select(RewardRecord.points).where(
        RewardRecord.reverses_id.in_(base))).scalars().all()
    return sum(granted) + sum(reversed_)
