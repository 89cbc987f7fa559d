"""Quotes: the rewards an event would get now, from the user's and campaigns' counters as
committed, without locking, reserving, recording or counting anything.

Apart from the recorder because a quote shares none of its transaction: only the engine,
the read-only gate and the shape of the answer.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from promo_engine.coordination.reservations import Reservations
from promo_engine.core.campaign_type import UserState
from promo_engine.core.engine import RulesEngine
from promo_engine.core.event import Event
from promo_engine.core.rewards import VOUCHER
from promo_engine.ledger.event_writes import read_campaign_uses
from promo_engine.ledger.extensions import db
from promo_engine.ledger.gates import ReadOnlyGate
from promo_engine.ledger.models import UserRecord
from promo_engine.ledger.responses import reward_json


def load_user_state(user_id: str, occurred_at: datetime) -> UserState:
    """The user's counters as committed now, without locking (for quotes)."""
    user = db.session.get(UserRecord, user_id)
    if user is None:
        return UserState(user_id=user_id)
    uses, daily = read_campaign_uses(db.session, user_id, occurred_at)
    return UserState(user_id=user_id, activations=user.activations, payments=user.payments,
                     points_balance=user.points_balance, campaign_uses=uses, daily_uses=daily)


def quote_event(event: Event, engine: RulesEngine, minor_digits: int,
          reservations: Reservations | None) -> dict:
    """The rewards the event would get now; reserves, records and counts nothing."""
    state = load_user_state(event.user_id, event.occurred_at)
    decision = engine.evaluate(event, state, ReadOnlyGate(minor_digits, reservations))
    db.session.rollback()
    rewards = []
    for grant in decision.grants:
        reward = grant.reward
        expires = (event.occurred_at + timedelta(days=reward.voucher_valid_days)
                   if reward.kind == VOUCHER else None)
        rewards.append(reward_json(reward, voucher_expires_at=expires))
    return {"event_id": event.event_id, "rewards": rewards,
            "points_balance": state.points_balance + decision.points, "dry_run": True}
