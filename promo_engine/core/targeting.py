"""Who a campaign is for: targeting by the user's history (`conditions.user`) and the
holdout (a stable control group that never gets the campaign's reward).

Pure functions, in the core, because every place that judges a user must judge the same
way: events and quotes (through the engine), the wallet's offers, back-tests and the
campaign report, in any process and any version. That is why the holdout is a documented
hash (SHA-256) and not Python's `hash()`, which is salted per process.

History (`UserState`): `payments` is the user's payments recorded before this event
(refunded ones included: a refund does not undo a payment) and `last_payment_at` the
latest `occurred_at` among them. "Days since the last payment" is the exact time between
that instant and the event's `occurred_at`, in whole periods of 24 hours:
`inactive_days: N` holds when `occurred_at - last_payment_at >= N x 24 h`. A user who never
paid has no last payment, so `inactive_days` never holds for them (`max_payments: 0`
targets them).
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from promo_engine.core.campaign import UserConditions

HOLDOUT_BUCKETS = 10_000  # a percent is 100 buckets, so a whole percent is exact


def holdout_bucket(campaign_id: str, user_id: str) -> int:
    """The user's bucket for the campaign, 0 to 9,999: the first 8 bytes of SHA-256 of
    "campaign_id:user_id" (UTF-8), read as a big-endian unsigned integer, mod 10,000.

    Campaign ids are slugs without ":", so the text names one pair only. A user's bucket
    differs from campaign to campaign: the control groups of two campaigns are independent."""
    digest = hashlib.sha256(f"{campaign_id}:{user_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % HOLDOUT_BUCKETS


def held_out(campaign_id: str, user_id: str, percent: int) -> bool:
    """Whether the user is in the campaign's control group: its bucket is below
    percent x 100 (so `holdout: 10` holds out buckets 0 to 999)."""
    return percent > 0 and holdout_bucket(campaign_id, user_id) < percent * 100


def history_matches(conditions: UserConditions, payments: int,
                    last_payment_at: datetime | None, occurred_at: datetime) -> bool:
    """Whether a user with this history before an event at `occurred_at` matches
    `conditions.user` (every condition given must hold; see the module's docstring)."""
    if conditions.min_payments is not None and payments < conditions.min_payments:
        return False
    if conditions.max_payments is not None and payments > conditions.max_payments:
        return False
    if conditions.inactive_days is not None:
        if last_payment_at is None:
            return False
        return occurred_at - last_payment_at >= timedelta(days=conditions.inactive_days)
    return True
