"""POST /v1/events, POST /v1/quote, GET /v1/users/{user_id}/points."""
from __future__ import annotations

import base64
import json
import math
import re

from flask import Response, g, jsonify, request
from sqlalchemy import select

from promo_engine.api import bp
from promo_engine.api.errors import ApiError
from promo_engine.api.recording import record_event_body, validated_event
from promo_engine.api.requests import json_body
from promo_engine.api.schemas import ID_MESSAGE, ID_PATTERN
from promo_engine.coordination.reservations import NotReady
from promo_engine.ledger.extensions import db
from promo_engine.ledger.models import EventRecord, RewardRecord, UserRecord
from promo_engine.ledger.responses import dumps, iso
from promo_engine.metrics import metrics
from promo_engine.service import promo_service

DEFAULT_PAGE = 50
MAX_PAGE = 500
MAX_ROW_ID = 2**63 - 1  # BIGINT
# Our cursors are short base64url text: anything else is refused before decoding (a crafted
# one could nest JSON deep enough to exhaust the stack). 16 characters hold the shortest,
# {"before":1}.
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{16,64}$"


def _json_text(text: str, status: int, **headers) -> Response:
    return Response(text, status=status, mimetype="application/json", headers=headers)


@bp.post("/v1/events")
def record_event():
    body = json_body()
    try:
        event, recorded = record_event_body(promo_service(), g.client_id, body)
    except NotReady as exc:
        raise ApiError(503, "unavailable", str(exc),
                       headers={"Retry-After": str(max(1, math.ceil(exc.retry_after_ms / 1000)))}
                       ) from None
    counters = metrics()
    counters.events.labels(type=event.type,
                           outcome="replayed" if recorded.replayed else "recorded").inc()
    if recorded.decision is not None:
        for grant in recorded.decision.grants:
            counters.rewards.labels(kind=grant.reward.kind).inc()
    if recorded.replayed:
        return _json_text(recorded.body, 200, **{"Idempotent-Replayed": "true"})
    return _json_text(recorded.body, 201)


@bp.post("/v1/quote")
def quote():
    body = json_body()
    service = promo_service()
    event = validated_event(service, body, quote=True)
    return _json_text(dumps(service.ledger.quote(event, service.engine())), 200)


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


@bp.get("/v1/users/<user_id>/points")
def user_points(user_id: str):
    if not re.fullmatch(ID_PATTERN, user_id):
        raise ApiError(422, "validation_error", "invalid user_id", fields={"user_id": [ID_MESSAGE]})
    limit, before = _page_arguments()
    user = db.session.get(UserRecord, user_id)
    query = (select(RewardRecord, EventRecord.event_id)
             .join(EventRecord, EventRecord.id == RewardRecord.event_pk)
             .where(RewardRecord.user_id == user_id, RewardRecord.points.is_not(None))
             .order_by(RewardRecord.id.desc()).limit(limit + 1))
    if before is not None:
        query = query.where(RewardRecord.id < before)
    rows = db.session.execute(query).all()
    entries = [{"reward_id": reward.reward_id, "event_id": event_id,
                "campaign_id": reward.campaign_id, "kind": reward.kind,
                "points": reward.points, "created_at": iso(reward.created_at)}
               for reward, event_id in rows[:limit]]
    next_cursor = _cursor(rows[limit - 1][0].id) if len(rows) > limit else None
    db.session.rollback()
    return jsonify({"user_id": user_id,
                    "points_balance": user.points_balance if user else 0,
                    "entries": entries, "next_cursor": next_cursor})
