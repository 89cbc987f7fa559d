"""The rows a new payment, activation or plugin event writes once evaluated: its event row
with the stored response, a row per reward granted (voucher codes and expiry included), a
lot per positive points reward and a voucher row per voucher, the campaign uses to count
and the user's new counters.

Apart from the recorder because it is pure bookkeeping over the engine's decision: no
database, no Redis, no locks. The recorder decides when it is written (`event_writes.py`
writes it, all at once).
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone, tzinfo

from promo_engine.core import money
from promo_engine.core.campaign_type import UserState
from promo_engine.core.engine import Decision
from promo_engine.core.event import ACTIVATION, PAYMENT, Event
from promo_engine.core.rewards import VOUCHER
from promo_engine.ledger.abuse_counts import counts_for
from promo_engine.ledger.event_writes import EventRows
from promo_engine.ledger.lots import LotPolicy, new_lots
from promo_engine.ledger.responses import dumps, reward_json
from promo_engine.ledger.reward_ids import new_reward_id, new_voucher_code


def grant_rows(client_id: str, event: Event, request_hash: str, decision: Decision,
               state: UserState, *, currency: str, now: datetime, policy: LotPolicy,
               pending: int, lead: tuple[list[dict], list[dict]] = ((), ()),
               extra: dict | None = None, zone: tzinfo = timezone.utc) -> EventRows:
    """Every row the event writes; its response (the body replays answer with) is in
    `rows.event["response"]`. `lead`: rows and their bodies that come before the
    decision's (points paid and vouchers used, `payment_extras.py`); `extra`: more keys of
    the response; `zone`: the program's timezone (the days of the risk counters)."""
    rewards, bodies = list(lead[0]), list(lead[1])
    vouchers, held = [], []
    for grant in decision.grants:
        reward = grant.reward
        row = {"reward_id": new_reward_id(), "user_id": event.user_id,
               "campaign_id": reward.campaign_id, "kind": reward.kind,
               "points": reward.points, "currency": reward.currency,
               "amount_minor": (money.to_minor(reward.amount, reward.currency)
                                if reward.is_money else None),
               "voucher_code": None, "voucher_expires_at": None,
               "local_day": grant.local_day, "reverses_id": None, "reason": None,
               "created_at": now}
        if reward.kind == VOUCHER:
            row["voucher_code"] = new_voucher_code()
            row["voucher_expires_at"] = event.occurred_at + timedelta(days=reward.voucher_valid_days)
            vouchers.append(voucher_row(row, reward, issued_at=event.occurred_at))
        rewards.append(row)
        if grant.held:  # the risk policy holds it for review (a `reward_holds` row)
            held.append(row["reward_id"])
        bodies.append(reward_json(reward, reward_id=row["reward_id"],
                                  voucher_code=row["voucher_code"],
                                  voucher_expires_at=row["voucher_expires_at"],
                                  held=grant.held))
    lots, balance, pending = new_lots(rewards, policy, event_type=event.type,
                                      occurred_at=event.occurred_at, now=now,
                                      balance=state.points_balance, pending=pending)
    response = dumps({"event_id": event.event_id, "rewards": bodies,
                      "points_balance": balance, **(extra or {})})
    event_row = {
        "client_id": client_id, "event_id": event.event_id, "type": event.type,
        "user_id": event.user_id, "merchant_id": event.merchant_id,
        "amount_minor": (money.to_minor(event.amount, currency)
                         if event.amount is not None else None),
        "currency": event.currency, "occurred_at": event.occurred_at, "refunded_minor": 0,
        "original_event_id": None, "request_hash": request_hash, "response": response,
        "created_at": now, "device_id": event.device_id}
    uses = [(grant.reward.campaign_id, grant.local_day)
            for grant in decision.grants if grant.campaign is not None]
    return EventRows(event=event_row, rewards=rewards, uses=uses,
                     activated=int(event.type == ACTIVATION),
                     paid=int(event.type == PAYMENT), balance=balance, pending=pending,
                     lots=lots, vouchers=vouchers, bodies=bodies, held=held,
                     counts=counts_for(event, decision.grants, money.minor_digits(currency),
                                       zone))


def voucher_row(row: dict, reward, *, issued_at: datetime) -> dict:
    """The state of a voucher just granted (`models.Voucher`), keyed by its reward_id."""
    return {"reward_id": row["reward_id"], "code": row["voucher_code"],
            "user_id": row["user_id"], "campaign_id": row["campaign_id"],
            "amount_minor": row["amount_minor"], "currency": row["currency"],
            "min_amount_minor": (money.to_minor(reward.voucher_min_amount, reward.currency)
                                 if reward.voucher_min_amount is not None else None),
            "issued_at": issued_at, "expires_at": row["voucher_expires_at"]}
