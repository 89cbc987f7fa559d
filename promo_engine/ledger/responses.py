"""The JSON text the ledger answers with: rewards, timestamps and the encoding itself.

Apart because one shape serves new events, refunds and quotes alike, and because a new
event's answer is stored verbatim and replayed byte for byte: its formatting is fixed here,
once.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone

from promo_engine.core import money
from promo_engine.core.rewards import POINTS, VOUCHER, Reward


def iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def dumps(body: dict) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(", ", ": "))


def reward_json(reward: Reward, *,
                reward_id: str | None = None, voucher_code: str | None = None,
                voucher_expires_at: datetime | None = None,
                reverses: str | None = None, held: bool = False) -> dict:
    """One reward as the API shows it (money with exactly the currency's minor digits).
    `held`: the risk policy holds it for an admin's review (`"held": true`; the key is
    absent for every other reward)."""
    body: dict = {}
    if reward_id is not None:
        body["reward_id"] = reward_id
    body["campaign_id"] = reward.campaign_id
    body["kind"] = reward.kind
    if reward.kind == POINTS:
        body["points"] = reward.points
    elif reward.kind == VOUCHER:
        body["voucher"] = {"code": voucher_code,
                           "amount": money.format_amount(reward.amount, reward.currency),
                           "currency": reward.currency,
                           "expires_at": iso(voucher_expires_at) if voucher_expires_at else None}
    else:
        body["amount"] = money.format_amount(reward.amount, reward.currency)
        body["currency"] = reward.currency
        if voucher_code is not None:  # the discount of a voucher used on a payment
            body["voucher_code"] = voucher_code
    if reverses is not None:
        body["reverses"] = reverses
    if held:
        body["held"] = True
    return body
