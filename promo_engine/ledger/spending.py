"""Events that spend: redemptions (a burn of points, or an exchange for a `points_exchange`
campaign's reward) and payments paid partly with points (`redeem_points`) or vouchers.

They are recorded like any payment (`grants.py` builds the rows, `event_writes.py` writes
them), through the ORM session, with what they spend put in front of the campaigns'
rewards: the spent points, the discount they pay, and each voucher's discount. Before the
balance is judged, the user's lots that came due are matured and those past expiry expired,
so that only points that are really available can be spent. Everything is refused before
anything is written: a refused event leaves no trace.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import timezone
from decimal import Decimal

from promo_engine.core import money
from promo_engine.core.campaign_type import UserState
from promo_engine.core.engine import Decision, RulesEngine
from promo_engine.core.event import PAYMENT, REDEMPTION, Event
from promo_engine.core.rewards import DISCOUNT, POINTS, money_reward, points_reward
from promo_engine.ledger import lots, vouchers
from promo_engine.ledger.event_writes import SqlEventWrites
from promo_engine.ledger.grants import grant_rows
from promo_engine.ledger.lots import LotPolicy
from promo_engine.ledger.models import SPENT, VOUCHER_USED, UserRecord, utcnow
from promo_engine.ledger.outcomes import LedgerError, Recorded
from promo_engine.ledger.responses import reward_json
from promo_engine.ledger.reward_ids import new_reward_id
from promo_engine.ledger.usage import ledger_usage

_NO_DECISION = Decision((), 0)


class Spending:
    """What one spending event takes, worked out under the user's lock before any write."""

    def __init__(self, event: Event, engine: RulesEngine, state: UserState):
        self.event, self.engine, self.state = event, engine, state
        self.points = 0  # points spent
        self.field = "points"  # the request field the points come from
        self.exchange = None  # the CompiledCampaign exchanged for
        self.points_discount = Decimal(0)
        self.voucher_uses: list[vouchers.VoucherUse] = []

    def judge(self, session, *, lock: bool = True) -> None:
        """Raise LedgerError if the event cannot be recorded now; else know what it spends.
        `lock`: the vouchers' rows are locked for the use (not for a quote)."""
        event, engine = self.event, self.engine
        if event.type == REDEMPTION:
            if event.campaign_id is not None:
                self.field = "campaign_id"
                reason = engine.unavailable_reason(event, self.state)
                if reason is not None:  # not open, not an exchange, not now, not for this user
                    raise _unavailable(reason)
                self.exchange = engine.exchange_campaign(event.campaign_id)
                self.points = self.exchange.cost_points
            else:
                self.points = event.points
        elif event.redeem_points:
            self.field = "redeem_points"
            self.points = event.redeem_points
            self.points_discount = engine.points_discount(event)
            if self.points_discount > event.amount:
                raise LedgerError(
                    "validation_error",
                    f"{event.redeem_points} points pay {self.points_discount}, more than the "
                    f"amount {event.amount}", field="redeem_points")
        if self.points and self.points > self.state.points_balance:
            raise LedgerError("insufficient_points",
                              f"{self.points} points are needed and "
                              f"{max(self.state.points_balance, 0)} are available",
                              field=self.field)
        if event.type == PAYMENT and event.vouchers:
            self.voucher_uses = vouchers.vouchers_for_payment(
                session, event, payable=event.amount - self.points_discount, lock=lock)

    def decide(self, evaluate) -> Decision:
        """The campaigns' decision: none for a burn; for a payment or an exchange,
        `evaluate(event, state, discounted)` (the recorder's gate, or a quote's); an
        exchange whose reward found no room in its budget or stock is refused."""
        if self.event.type == REDEMPTION and self.exchange is None:
            return _NO_DECISION  # a burn: no campaign applies to it
        decision = evaluate(self.event, self.state, self.voucher_discounts)
        if self.exchange is not None and not decision.grants:
            raise _unavailable(_why_full(self.exchange))
        return decision

    @property
    def voucher_discounts(self) -> Decimal:
        return sum((use.discount for use in self.voucher_uses), Decimal(0))

    def lead(self, *, currency: str, now) -> tuple[list[dict], list[dict], str | None]:
        """The rows (and their bodies) in front of the campaigns' rewards: points spent,
        the discount they pay, each voucher's discount; and the reward_id of the spend."""
        rows, bodies, spent_id = [], [], None
        user_id = self.event.user_id

        def add(reward, *, reason, voucher_code=None) -> str:
            row = {"reward_id": new_reward_id(), "user_id": user_id,
                   "campaign_id": reward.campaign_id, "kind": reward.kind,
                   "points": reward.points, "currency": reward.currency,
                   "amount_minor": (money.to_minor(reward.amount, reward.currency)
                                    if reward.kind != POINTS else None),
                   "voucher_code": voucher_code, "voucher_expires_at": None,
                   "local_day": None, "reverses_id": None, "reason": reason,
                   "created_at": now}
            rows.append(row)
            bodies.append(reward_json(reward, reward_id=row["reward_id"],
                                      voucher_code=voucher_code))
            return row["reward_id"]

        if self.points:
            campaign_id = self.exchange.id if self.exchange is not None else None
            spent_id = add(points_reward(-self.points, campaign_id), reason=SPENT)
        if self.points_discount:
            add(money_reward(DISCOUNT, self.points_discount, currency, None), reason=None)
        for use in self.voucher_uses:
            add(money_reward(DISCOUNT, use.discount, currency, use.voucher.campaign_id),
                reason=VOUCHER_USED, voucher_code=use.voucher.code)
        return rows, bodies, spent_id


def _unavailable(why: str) -> LedgerError:
    return LedgerError("offer_unavailable", why, field="campaign_id")


def _why_full(exchange) -> str:
    """Which limit refused the exchange's reward, for the message (the gate only says no).
    Read from the committed ledger, which counts what the gate counts; with Redis,
    reservations still in flight are not in it, so a campaign with both limits whose stock
    is taken only in flight is said to be out of budget."""
    _, redemptions = ledger_usage([exchange.id])[exchange.id]
    if exchange.max_redemptions is not None and redemptions >= exchange.max_redemptions:
        return f"campaign {exchange.id} is out of stock ({exchange.max_redemptions} given)"
    if exchange.budget_limit is not None:
        return f"campaign {exchange.id} has no budget left for this reward"
    return f"campaign {exchange.id} has no stock or budget left"


def record_spending(client_id: str, event: Event, request_hash: str, *,
                    engine: RulesEngine, writes: SqlEventWrites, policy: LotPolicy,
                    currency: str, evaluate, now=None, zone=timezone.utc) -> Recorded:
    """Record a redemption, or a payment that spends points or vouchers (not committed).

    `evaluate(event, state, discounted)` is the recorder's evaluation with its gate (the
    database's, or Redis reservations); it returns the decision."""
    now = now or utcnow()
    session = writes.session
    state, _, _ = writes.lock_user(user_id=event.user_id, occurred_at=event.occurred_at,
                                   now=now, client_id=client_id, event_id=event.event_id,
                                   device_id=event.device_id, zone=zone,
                                   with_risk=engine.risk is not None)
    user = session.get(UserRecord, event.user_id, populate_existing=True)
    # Pending lots that came due were matured with the lock (`lock_user`): what is past
    # its expiry goes now, before the balance is judged.
    if lots.expire(session, user, now):
        session.flush()
    state = replace(state, points_balance=user.points_balance)
    spending = Spending(event, engine, state)
    spending.judge(session)
    decision = spending.decide(evaluate)
    lead_rows, lead_bodies, spent_id = spending.lead(currency=currency, now=now)
    extra = {"reference": event.reference} if event.reference is not None else None
    rows = grant_rows(client_id, event, request_hash, decision,
                      replace(state, points_balance=user.points_balance - spending.points),
                      currency=currency, now=now, policy=policy,
                      pending=user.pending_points, lead=(lead_rows, lead_bodies), extra=extra,
                      zone=zone)
    event_pk, pks = writes.write(rows)
    if spent_id is not None:
        lots.draw(session, event.user_id, spending.points, pks[spent_id], now)
    vouchers.mark_used(spending.voucher_uses, event_pk)
    session.flush()
    return Recorded(status=201, body=rows.event["response"], replayed=False, decision=decision)
