"""POST /v1/events and POST /v1/quote (what a user has is read in wallet_reads.py)."""
from __future__ import annotations

import math

from flask import Response, g, request

from promo_engine.api import bp
from promo_engine.api.errors import ApiError
from promo_engine.api.recording import record_event_body, validated_event
from promo_engine.api.requests import json_body
from promo_engine.coordination.reservations import NotReady
from promo_engine.ledger.outcomes import LedgerError
from promo_engine.ledger.responses import dumps
from promo_engine.metrics import metrics
from promo_engine.service import promo_service


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


def _explain_flag() -> bool:
    """`?explain=true` adds why each candidate campaign did or did not apply; other query
    parameters are not read (as before explain existed)."""
    values = request.args.getlist("explain")
    if not values:
        return False
    if len(values) > 1:
        raise ApiError(422, "validation_error", "invalid query parameters",
                       fields={"explain": ["give it once"]})
    if values[0] not in ("true", "false"):
        raise ApiError(422, "validation_error", "invalid query parameters",
                       fields={"explain": ["must be true or false"]})
    return values[0] == "true"


@bp.post("/v1/quote")
def quote():
    explain = _explain_flag()
    body = json_body()
    service = promo_service()
    event = validated_event(service, body, quote=True)
    try:
        quoted = service.ledger.quote(event, service.engine(), explain=explain)
    except LedgerError as exc:  # refused as the event would be: the same 422
        raise ApiError(422, exc.code, exc.message, fields=exc.fields) from None
    return _json_text(dumps(quoted), 200)
