"""GET /v1/users/{user_id}/points and GET /v1/users/{user_id}/vouchers: what a wallet shows
a user of their points and vouchers.

Read-only views of the ledger's rows, apart from the endpoints that record events: nothing
here takes a lock or changes a row, and every answer is built from one read.
"""
from __future__ import annotations

import base64
import json
import re
from datetime import datetime

from flask import jsonify, request
from sqlalchemy import and_, func, select

from promo_engine.api import bp
from promo_engine.api.errors import ApiError
from promo_engine.api.schemas import ID_MESSAGE, ID_PATTERN
from promo_engine.core.campaign_views import rfc3339_local
from promo_engine.core.money import format_amount, from_minor
from promo_engine.ledger.extensions import db
from promo_engine.ledger.models import EventRecord, PointsLot, RewardRecord, UserRecord, Voucher
from promo_engine.ledger.responses import iso
from promo_engine.service import promo_service

DEFAULT_PAGE = 50
MAX_PAGE = 500
MAX_ROW_ID = 2**63 - 1  # BIGINT
# Our cursors are short base64url text: anything else is refused before decoding (a crafted
# one could nest JSON deep enough to exhaust the stack). 16 characters hold the shortest,
# {"before":1}.
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{16,64}$"

ACTIVE, USED, VOIDED, EXPIRED = "active", "used", "voided", "expired"
# ?status= of the vouchers endpoint: one status, or all of them (voided ones included)
VOUCHER_FILTERS = (ACTIVE, USED, EXPIRED, "all")
VOUCHER_PARAMETERS = ("status",)


def _checked_user_id(user_id: str) -> str:
    if not re.fullmatch(ID_PATTERN, user_id):
        raise ApiError(422, "validation_error", "invalid user_id", fields={"user_id": [ID_MESSAGE]})
    return user_id


def _page_arguments() -> tuple[int, int | None]:
    errors = {}
    limit_text = request.args.get("limit", str(DEFAULT_PAGE))
    limit = int(limit_text) if re.fullmatch(r"[0-9]{1,4}", limit_text) else 0
    if not 1 <= limit <= MAX_PAGE:
        errors["limit"] = [f"must be a whole number from 1 to {MAX_PAGE}"]
    before = None
    cursor = request.args.get("cursor")
    if cursor is not None:
        try:
            if not re.fullmatch(CURSOR_PATTERN, cursor):
                raise ValueError
            before = json.loads(base64.urlsafe_b64decode(cursor.encode() + b"==").decode())["before"]
            if not isinstance(before, int) or isinstance(before, bool) or \
                    not 1 <= before <= MAX_ROW_ID:
                raise ValueError
        except (ValueError, KeyError, TypeError, UnicodeError, RecursionError):
            errors["cursor"] = ["is not a cursor returned by this endpoint"]
    if errors:
        raise ApiError(422, "validation_error", "invalid query parameters", fields=errors)
    return limit, before


def _cursor(before: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"before": before}).encode()).decode().rstrip("=")


def _points_entry(reward: RewardRecord, event_id: str | None) -> dict:
    entry = {"reward_id": reward.reward_id, "event_id": event_id,
             "campaign_id": reward.campaign_id, "kind": reward.kind, "points": reward.points}
    if reward.reason is not None:
        entry["reason"] = reward.reason
    entry["created_at"] = iso(reward.created_at)
    return entry


def _expiring(user_id: str, zone: str) -> list[dict]:
    """The user's available points by the instant they expire, soonest first, written in
    the program's zone (lots expire at its local midnight, which reads as such). A lot
    whose instant has passed stays listed until its expiry entry is written (within 60 s):
    until then its points are still in the balance."""
    rows = db.session.execute(
        select(PointsLot.expires_at, func.sum(PointsLot.remaining))
        .where(PointsLot.user_id == user_id, PointsLot.pending.is_(False),
               PointsLot.remaining > 0, PointsLot.expires_at.is_not(None))
        .group_by(PointsLot.expires_at).order_by(PointsLot.expires_at)).all()
    return [{"points": int(points), "expires_at": rfc3339_local(expires_at, zone)}
            for expires_at, points in rows]


@bp.get("/v1/users/<user_id>/points")
def user_points(user_id: str):
    _checked_user_id(user_id)
    limit, before = _page_arguments()
    service = promo_service()
    user = db.session.get(UserRecord, user_id)
    # An outer join: expiry entries belong to no event (event_id null).
    query = (select(RewardRecord, EventRecord.event_id)
             .outerjoin(EventRecord, EventRecord.id == RewardRecord.event_pk)
             .where(RewardRecord.user_id == user_id, RewardRecord.points.is_not(None))
             .order_by(RewardRecord.id.desc()).limit(limit + 1))
    if before is not None:
        query = query.where(RewardRecord.id < before)
    rows = db.session.execute(query).all()
    entries = [_points_entry(reward, event_id) for reward, event_id in rows[:limit]]
    next_cursor = _cursor(rows[limit - 1][0].id) if len(rows) > limit else None
    expiring = _expiring(user_id, service.settings.timezone)
    db.session.rollback()
    return jsonify({"user_id": user_id,
                    "points_balance": user.points_balance if user else 0,
                    "pending_points": user.pending_points if user else 0,
                    "expiring": expiring,
                    "entries": entries, "next_cursor": next_cursor})


def _voucher_filter() -> str:
    errors = {name: ["is not a parameter of this endpoint; known: "
                     + ", ".join(VOUCHER_PARAMETERS)]
              for name in request.args if name not in VOUCHER_PARAMETERS}
    values = request.args.getlist("status")
    if len(values) > 1:
        errors["status"] = ["give it once"]
    elif values and values[0] not in VOUCHER_FILTERS:
        errors["status"] = [f"must be one of: {', '.join(VOUCHER_FILTERS)}"]
    if errors:
        raise ApiError(422, "validation_error", "invalid query parameters", fields=errors)
    return values[0] if values else ACTIVE


def voucher_status(voucher: Voucher, now: datetime) -> str:
    """Voided outranks used (a cancel voids what it gave), and used outranks expired
    (a voucher used in time stays used). Usable until expires_at, exclusive."""
    if voucher.voided_at is not None:
        return VOIDED
    if voucher.used_by_event_pk is not None:
        return USED
    return EXPIRED if voucher.expires_at <= now else ACTIVE


def _status_condition(status: str, now: datetime):
    """`voucher_status` as a condition on the rows, for the filters."""
    unused = and_(Voucher.voided_at.is_(None), Voucher.used_by_event_pk.is_(None))
    return {ACTIVE: and_(unused, Voucher.expires_at > now),
            USED: and_(Voucher.voided_at.is_(None), Voucher.used_by_event_pk.is_not(None)),
            EXPIRED: and_(unused, Voucher.expires_at <= now)}.get(status)


def _voucher_json(voucher: Voucher, used_by: str | None, now: datetime) -> dict:
    currency = voucher.currency
    return {"code": voucher.code,
            "amount": format_amount(from_minor(voucher.amount_minor, currency), currency),
            "currency": currency,
            "min_amount": (None if voucher.min_amount_minor is None else
                           format_amount(from_minor(voucher.min_amount_minor, currency),
                                         currency)),
            "status": voucher_status(voucher, now),
            "campaign_id": voucher.campaign_id,
            "issued_at": iso(voucher.issued_at),
            "expires_at": iso(voucher.expires_at),
            "used_by_event_id": used_by}


@bp.get("/v1/users/<user_id>/vouchers")
def user_vouchers(user_id: str):
    _checked_user_id(user_id)
    status = _voucher_filter()
    now = promo_service().clock()
    query = (select(Voucher, EventRecord.event_id)
             .outerjoin(EventRecord, EventRecord.id == Voucher.used_by_event_pk)
             .where(Voucher.user_id == user_id)
             .order_by(Voucher.reward_pk.desc()))
    condition = _status_condition(status, now)
    if condition is not None:
        query = query.where(condition)
    vouchers = [_voucher_json(voucher, used_by, now)
                for voucher, used_by in db.session.execute(query).all()]
    db.session.rollback()
    return jsonify({"user_id": user_id, "vouchers": vouchers})
