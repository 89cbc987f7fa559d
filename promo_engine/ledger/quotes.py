"""Quotes: the rewards an event would get now, from the user's and campaigns' counters as
committed, without locking, reserving, recording or counting anything.

Apart from the recorder because a quote shares none of its transaction: only the engine,
the read-only gate and the shape of the answer. What an event spends (points, vouchers, an
exchange's price) is judged by the recorder's own `Spending` (`spending.py`), so a quote
shows and refuses exactly what the event would; here it only reads, never locks. The abuse
controls are read as an event reads them (`abuse_counts.py`, the denylist), so a quote shows
a device's limit reached, a denied user or the risk policy's caps as the event would.

The user's available points are those the event would find once its lock is held: the
pending lots that came due count, the lots past their expiry do not, even before the
scheduler's sweep or the user's next event writes it (`available_points`).
"""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import and_, or_, select

from promo_engine.coordination.reservations import Reservations
from promo_engine.core.campaign_type import UserState
from promo_engine.core.engine import RulesEngine
from promo_engine.core.event import REDEMPTION, Event
from promo_engine.core.explain import explain_evaluation
from promo_engine.core.rewards import VOUCHER
from promo_engine.ledger import denylist
from promo_engine.ledger.abuse_counts import read_device_and_risk
from promo_engine.ledger.event_writes import read_campaign_uses
from promo_engine.ledger.extensions import db
from promo_engine.ledger.gates import ReadOnlyGate
from promo_engine.ledger.lots import LotPolicy, new_lots
from promo_engine.ledger.models import PointsLot, UserRecord, utcnow
from promo_engine.ledger.responses import reward_json
from promo_engine.ledger.spending import Spending



def load_user_state(user_id: str, occurred_at: datetime, *, device_id: str | None = None,
                    risk_zone: tzinfo | None = None) -> UserState:
    """The user's counters as committed now, without locking (for quotes and offers): with
    the device's uses when `device_id` is given, whether the denylist names the user or the
    device, and with `risk_zone` (the program's timezone, given when a risk policy is in
    force) the risk policy's counters, as the event would read them under its locks."""
    session = db.session
    connection = session.connection()
    device_uses, device_daily, risk = read_device_and_risk(
        connection, user_id=user_id, device_id=device_id, occurred_at=occurred_at,
        zone=risk_zone or timezone.utc, with_risk=risk_zone is not None)
    abuse = dict(device_uses=device_uses, device_daily_uses=device_daily, risk=risk,
                 denied=denylist.directory.denied(connection, user_id, device_id))
    user = session.get(UserRecord, user_id)
    if user is None:
        return UserState(user_id=user_id, **abuse)
    uses, daily = read_campaign_uses(session, user_id, occurred_at)
    return UserState(user_id=user_id, activations=user.activations, payments=user.payments,
                     points_balance=user.points_balance, campaign_uses=uses, daily_uses=daily,
                     last_payment_at=user.last_paid_at, **abuse)


def available_points(session, user_id: str, now: datetime) -> tuple[int, int]:
    """The user's (available, pending) points as an event recorded `now` would find them:
    `lots.mature` then `lots.expire` worked out on the committed rows, writing nothing.

    A lot that came due pays a negative balance first, as `mature` does; what a lot past its
    expiry still holds leaves the balance (or the pending points), as `expire` does."""
    user = session.get(UserRecord, user_id)
    if user is None:
        return 0, 0
    balance, pending = user.points_balance, user.pending_points
    # Only the lots that change: those come due, and those past expiry.
    lots = [[lot.remaining, lot.pending, lot] for lot in session.execute(
        select(PointsLot).where(PointsLot.user_id == user_id, PointsLot.remaining > 0,
                                or_(and_(PointsLot.pending.is_(True),
                                         PointsLot.available_at <= now),
                                    PointsLot.expires_at <= now))
        .order_by(PointsLot.available_at, PointsLot.reward_pk)).scalars()]
    for entry in lots:  # mature, in the order the lots come due
        remaining, is_pending, lot = entry
        if is_pending and lot.available_at <= now:
            paid = min(remaining, max(0, -balance))
            balance += remaining
            pending -= remaining
            entry[:2] = remaining - paid, False
    for remaining, is_pending, lot in lots:  # then expire
        if lot.expires_at is not None and lot.expires_at <= now:
            if is_pending:
                pending -= remaining
            else:
                balance -= remaining
    return balance, pending


def _spends(event: Event) -> bool:
    """Events the recorder records through `spending.py`: the same here."""
    return event.type == REDEMPTION or bool(event.redeem_points or event.vouchers)


def quote_event(event: Event, engine: RulesEngine, minor_digits: int,
                reservations: Reservations | None, *,
                policy: LotPolicy | None = None, now: datetime | None = None,
                explain: bool = False) -> dict:
    """The rewards the event would get now; reserves, records and counts nothing.

    Raises LedgerError where recording the event would (insufficient_points,
    voucher_unavailable, offer_unavailable). `policy`: when the points it earns become
    available (the recorder's; without it, at once)."""
    policy = policy or LotPolicy()
    now = now or utcnow()
    session = db.session
    gate = ReadOnlyGate(minor_digits, reservations)
    try:
        balance, pending = available_points(session, event.user_id, now)
        risk_zone = ZoneInfo(policy.timezone) if engine.risk is not None else None
        state = replace(load_user_state(event.user_id, event.occurred_at,
                                        device_id=event.device_id, risk_zone=risk_zone),
                        points_balance=balance)
        lead: list[dict] = []
        spent = 0
        explained: list = []  # a burn (points spent on no exchange) has no candidates

        def evaluate(event, state, discounted=Decimal(0)):
            if not explain:
                return engine.evaluate(event, state, gate, discounted=discounted)
            decision, explained[:] = explain_evaluation(engine, event, state, gate,
                                                        discounted=discounted)
            return decision

        if _spends(event):
            spends = Spending(event, engine, state)
            spends.judge(session, lock=False)
            decision = spends.decide(evaluate)
            lead = _lead_bodies(spends, currency=engine.currency, now=now)
            spent = spends.points
        else:
            decision = evaluate(event, state)
    finally:
        session.rollback()
    rewards = list(lead)
    for grant in decision.grants:
        reward = grant.reward
        expires = (event.occurred_at + timedelta(days=reward.voucher_valid_days)
                   if reward.kind == VOUCHER else None)
        # held: the risk policy would hold it for review, as the event's answer says
        rewards.append(reward_json(reward, voucher_expires_at=expires, held=grant.held))
    # The balance after the event: its points become available as the recorder's would.
    rows = [{"reward_id": None, "user_id": event.user_id, "kind": grant.reward.kind,
             "points": grant.reward.points} for grant in decision.grants]
    _, balance, _ = new_lots(rows, policy, event_type=event.type,
                             occurred_at=event.occurred_at, now=now,
                             balance=balance - spent, pending=pending)
    body = {"event_id": event.event_id, "rewards": rewards, "points_balance": balance}
    if event.reference is not None:
        body["reference"] = event.reference
    body["dry_run"] = True
    if explain:
        body["explain"] = [entry.as_json() for entry in explained]
    return body


def _lead_bodies(spends: Spending, *, currency: str, now: datetime) -> list[dict]:
    """What `Spending.lead` puts in front of the campaigns' rewards (points spent, the
    discount they pay, each voucher's discount), without reward ids: nothing is granted."""
    _, bodies, _ = spends.lead(currency=currency, now=now)
    return [{key: value for key, value in body.items() if key != "reward_id"}
            for body in bodies]
