"""Helpers of the points lifecycle tests (test_points_lifecycle.py, test_points_expiry.py):
an app with the points settings, the events that spend, and the points ledger read back
from its rows alone, to check it against what the users' rows and the API say.

Time is the service's clock (`Clock`), standing at NOW unless a test moves it: every date
in these tests is written against NOW, so they mean the same whenever they run.

The derivation here uses nothing the ledger code computes: every user's available and
pending points come from `rewards`, `points_lots` and `points_lot_moves` only (see
`derived_points`), so a bug that keeps the users' sums and the lots out of step shows.
"""
from __future__ import annotations

from collections import defaultdict
from contextlib import contextmanager
from datetime import datetime, timezone

from conftest import make_settings, running_app
from wallet import OPEN_RANGE, install_campaigns, new_wallet_client

UTC = timezone.utc
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)  # the service's "now" in these tests


class Clock:
    """The service's clock: records, lots, expiry and voucher states go by it."""

    def __init__(self, now: datetime = NOW):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

EXCHANGES = f"""
id: mall-voucher
type: points_exchange
{OPEN_RANGE}params: {{cost_points: 50, voucher: {{amount: "10.00", valid_days: 365}}}}
---
id: mall-cash
type: points_exchange
{OPEN_RANGE}params: {{cost_points: 40, cashback: "5.00"}}
"""
TRIPLE = f"""
id: triple
type: points_multiplier
merchants: [m_100]
{OPEN_RANGE}params: {{multiplier: 3}}
"""
WELCOME = f"""
id: welcome
type: first_activation_bonus
{OPEN_RANGE}params: {{points: 30}}
"""


@contextmanager
def points_app(settings_or_url, tmp_path, campaigns: str | None = None, **overrides):
    """(app, signed wallet client) on `settings_or_url` (Settings or a database URL) with
    the points settings in `overrides`, and `campaigns` (YAML) applied."""
    if isinstance(settings_or_url, str):
        settings = make_settings(settings_or_url, **overrides)
    else:
        settings = settings_or_url.with_(**overrides)
    with running_app(settings) as app:
        from promo_engine.service import promo_service
        promo_service(app).clock = Clock()
        if campaigns:
            install_campaigns(app, campaigns, tmp_path, name=f"c{id(campaigns)}.yaml")
        yield app, new_wallet_client(app)


def redemption(event_id: str, *, user_id: str = "u_1", at: str = "2026-06-20T12:00:00+08:00",
               **fields) -> dict:
    return {"event_id": event_id, "type": "redemption", "user_id": user_id,
            "occurred_at": at, **fields}


def cancel(event_id: str, original: str, *, user_id: str = "u_1",
           at: str = "2026-06-21T12:00:00+08:00") -> dict:
    return {"event_id": event_id, "type": "cancel", "user_id": user_id, "occurred_at": at,
            "original_event_id": original}


def points_view(wallet, user_id: str = "u_1") -> dict:
    body = wallet.get(f"/v1/users/{user_id}/points?limit=500").get_json()
    assert body["next_cursor"] is None
    return body


def error(response) -> tuple[int, str, dict]:
    body = response.get_json()["error"]
    return response.status_code, body["code"], body.get("fields", {})


def set_now(app, instant: datetime) -> None:
    from promo_engine.service import promo_service
    promo_service(app).clock.now = instant


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def sweep(app, now: datetime) -> tuple[int, int]:
    """(lots expired, lots matured) by the points sweep as of `now`."""
    from promo_engine.ledger.extensions import db
    from promo_engine.ledger.lot_expiry import sweep_points
    with app.app_context():
        try:
            return sweep_points(db.session, now)
        finally:
            db.session.remove()


def lots(app, user_id: str = "u_1") -> list[dict]:
    """The user's lots in the order they were made: the event and campaign of each, and
    its state."""
    from sqlalchemy import select

    from promo_engine.ledger.extensions import db
    from promo_engine.ledger.models import EventRecord, PointsLot, RewardRecord
    with app.app_context():
        rows = db.session.execute(
            select(PointsLot, RewardRecord.campaign_id, EventRecord.event_id)
            .join(RewardRecord, RewardRecord.id == PointsLot.reward_pk)
            .join(EventRecord, EventRecord.id == RewardRecord.event_pk)
            .where(PointsLot.user_id == user_id).order_by(PointsLot.reward_pk)).all()
        result = [{"event_id": event_id, "campaign_id": campaign_id, "points": lot.points,
                   "remaining": lot.remaining, "debt_paid": lot.debt_paid,
                   "pending": lot.pending, "available_at": lot.available_at,
                   "expires_at": lot.expires_at}
                  for lot, campaign_id, event_id in rows]
        db.session.remove()
    return result


def remaining(app, user_id: str = "u_1") -> dict[str, int]:
    """What is left of each lot, keyed `event_id` (or `event_id/campaign_id`)."""
    return {lot["event_id"] + (f"/{lot['campaign_id']}" if lot["campaign_id"] else ""):
            lot["remaining"] for lot in lots(app, user_id)}


def ledger_counts(app) -> dict[str, int]:
    """Rows per table that an event may write: a refused event changes none of them."""
    from sqlalchemy import func, select

    from promo_engine.ledger.extensions import db
    from promo_engine.ledger.models import (CampaignUsage, EventRecord, PointsLot,
                                            PointsLotMove, RewardRecord, UserCampaignUsage,
                                            UserRecord, Voucher)
    with app.app_context():
        counts = {model.__tablename__: db.session.execute(
            select(func.count()).select_from(model)).scalar_one()
            for model in (EventRecord, RewardRecord, PointsLot, PointsLotMove, Voucher,
                          UserCampaignUsage)}
        counts["usage"] = sorted(db.session.execute(
            select(CampaignUsage.campaign_id, CampaignUsage.spent,
                   CampaignUsage.redemptions)).all())
        counts["users"] = sorted(db.session.execute(
            select(UserRecord.user_id, UserRecord.points_balance,
                   UserRecord.pending_points, UserRecord.payments)).all())
        counts["lot_state"] = sorted(db.session.execute(
            select(PointsLot.reward_pk, PointsLot.remaining, PointsLot.debt_paid,
                   PointsLot.pending)).all())
        db.session.remove()
    return counts


def derived_points(app) -> dict[str, dict]:
    """Every user's points as the rows alone say, checking each row on the way.

    - each lot: remaining == points - debt_paid + its moves, 0 <= remaining <= points;
    - a spent, returned or expired row moved exactly its points between lots; a grant's
      reversal took what it could from lots (the rest of it is a debt);
    - debt: what grant reversals could not take, less what lots paid back (debt_paid);
    - available: what is left in the lots that are not pending, less the debt; pending: what
      is left in pending lots; and with a debt, no lot has available points left.
    Returns {user_id: {"available", "pending", "total", "debt", "expiring"}}, "total"
    being the sum of the user's points rows."""
    from sqlalchemy import select

    from promo_engine.ledger.extensions import db
    from promo_engine.ledger.models import (PointsLot, PointsLotMove, RewardRecord,
                                            UserRecord)
    with app.app_context():
        users = db.session.execute(select(UserRecord.user_id)).scalars().all()
        rewards = db.session.execute(
            select(RewardRecord.id, RewardRecord.user_id, RewardRecord.points,
                   RewardRecord.reason, RewardRecord.reverses_id)
            .where(RewardRecord.points.is_not(None))).all()
        all_lots = db.session.execute(select(PointsLot)).scalars().all()
        moves = db.session.execute(select(PointsLotMove.lot_pk, PointsLotMove.entry_pk,
                                          PointsLotMove.points)).all()
        db.session.remove()
    by_lot, by_entry = defaultdict(int), defaultdict(int)
    for lot_pk, entry_pk, points in moves:
        by_lot[lot_pk] += points
        by_entry[entry_pk] += points
    result = {user_id: {"available": 0, "pending": 0, "total": 0, "debt": 0, "left": 0,
                        "expiring": defaultdict(int)} for user_id in users}
    lot_pks = {lot.reward_pk for lot in all_lots}
    for reward_pk, user_id, points, reason, reverses_id in rewards:
        user = result[user_id]
        user["total"] += points
        moved = by_entry.get(reward_pk, 0)
        if reason is None and points > 0:
            assert reward_pk in lot_pks and moved == 0, f"grant {reward_pk} has no lot of its own"
        elif reason is None:  # a grant's reversal
            assert reverses_id is not None and points <= moved <= 0, (reward_pk, points, moved)
            user["debt"] += moved - points
        else:
            assert moved == points, f"{reason} row {reward_pk}: {points} points, moved {moved}"
    for lot in all_lots:
        assert lot.remaining == lot.points - lot.debt_paid + by_lot.get(lot.reward_pk, 0), \
            f"lot {lot.reward_pk}: the invariant does not hold"
        assert 0 <= lot.remaining <= lot.points and lot.debt_paid >= 0, lot.reward_pk
        user = result[lot.user_id]
        user["debt"] -= lot.debt_paid
        if lot.pending:
            user["pending"] += lot.remaining
        else:
            user["left"] += lot.remaining
            if lot.remaining and lot.expires_at is not None:
                user["expiring"][lot.expires_at] += lot.remaining
    for user_id, user in result.items():
        assert user["debt"] >= 0, f"{user_id}: more debt paid than ever owed"
        assert not (user["debt"] and user["left"]), f"{user_id}: a debt and points in lots"
        user["available"] = user.pop("left") - user["debt"]
        assert user["available"] + user["pending"] == user["total"], user_id
        user["expiring"] = sorted(user["expiring"].items())
    return result


def check_ledger(app, wallet) -> dict[str, dict]:
    """The derivation of every user agrees with the users' rows and with GET points; the
    expiring list never shows points the balance does not have."""
    from sqlalchemy import select

    from promo_engine.core.campaign_views import rfc3339_local
    from promo_engine.ledger.extensions import db
    from promo_engine.ledger.models import UserRecord
    derived = derived_points(app)
    with app.app_context():
        zone = _program_zone(app)
        stored = {user_id: (balance, pending) for user_id, balance, pending in db.session.execute(
            select(UserRecord.user_id, UserRecord.points_balance, UserRecord.pending_points))}
        db.session.remove()
    for user_id, user in derived.items():
        assert stored[user_id] == (user["available"], user["pending"]), user_id
        view = points_view(wallet, user_id)
        assert (view["points_balance"], view["pending_points"]) == \
            (user["available"], user["pending"]), user_id
        assert sum(entry["points"] for entry in view["entries"]) == user["total"], user_id
        expected = [{"points": points, "expires_at": rfc3339_local(at, zone)}
                    for at, points in user["expiring"]]
        assert view["expiring"] == expected, user_id
        assert sum(group["points"] for group in view["expiring"]) <= max(user["available"], 0)
    return derived


def _program_zone(app) -> str:
    from promo_engine.service import promo_service
    return promo_service(app).settings.timezone
