"""Operations endpoints, unsigned: liveness, readiness and Prometheus metrics."""
from __future__ import annotations

import logging
import math

from flask import Response, current_app, jsonify
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from promo_engine import metrics as promo_metrics
from promo_engine.api import bp
from promo_engine.api.errors import error_response
from promo_engine.coordination.reservations import NotReady
from promo_engine.ledger.extensions import db
from promo_engine.ledger.models import utcnow
from promo_engine.service import promo_service
from promo_engine.webhooks.deliveries import oldest_due

log = logging.getLogger(__name__)

REDIS_TIMEOUT_SECONDS = 1.0


@bp.record_once
def _init_metrics(state) -> None:
    # Registering the API also sets up its metrics; init_app is idempotent.
    promo_metrics.init_app(state.app)


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """Ready exactly when events would not be answered 503: the database and Redis reach,
    and with Redis the budget counters can be reserved from (see `counters_not_ready`)."""
    checks = {"database": _check_database()}
    if _settings().redis_url:
        checks["redis"] = _check_redis()
    failed = sorted(name for name, result in checks.items() if result != "ok")
    if failed:
        return error_response(503, "unavailable", f"not ready: {', '.join(failed)} unreachable",
                              checks=checks)
    if _settings().redis_url:
        problem = _counters_problem()
        checks["counters"] = "ok" if problem is None else problem.reason
        if problem is not None:
            retry_after = max(1, math.ceil(problem.retry_after_ms / 1000))
            return error_response(503, "unavailable", f"not ready: {problem}", checks=checks,
                                  headers={"Retry-After": str(retry_after)})
    return jsonify(status="ready", checks=checks)


@bp.get("/metrics")
def prometheus_metrics():
    _measure_webhook_lag()
    body = promo_metrics.metrics().exposition()
    return Response(body, content_type=promo_metrics.CONTENT_TYPE)


def _measure_webhook_lag() -> None:
    """The webhook lag as of this scrape, from the outbox itself: right wherever the
    dispatchers run (or if none runs at all, when it is the alert that matters most).
    One indexed read; a database that cannot answer leaves the last value."""
    try:
        due = oldest_due(db.engine, utcnow())
    except SQLAlchemyError as exc:
        log.warning("/metrics: could not read the webhook outbox: %s", exc)
        return
    lag = max(0.0, (utcnow() - due).total_seconds()) if due is not None else 0.0
    promo_metrics.metrics().webhook_oldest_pending.set(lag)


def _check_database() -> str:
    try:
        db.session.execute(text("SELECT 1"))
        db.session.rollback()
        return "ok"
    except SQLAlchemyError as exc:
        log.warning("readiness: database unreachable: %s", type(exc).__name__)
        db.session.rollback()
        return "unreachable"


def _counters_problem():
    try:
        return promo_service().counters_not_ready()
    except (RedisError, SQLAlchemyError) as exc:
        db.session.rollback()
        log.warning("readiness: budget counters unreachable: %s", type(exc).__name__)
        return NotReady(1000, "unreachable")


def _check_redis() -> str:
    try:
        _redis_client().ping()
        return "ok"
    except RedisError as exc:
        log.warning("readiness: redis unreachable: %s", type(exc).__name__)
        return "unreachable"


def _redis_client():
    clients = current_app.extensions.setdefault("promo_ops_redis", {})
    url = _settings().redis_url
    if url not in clients:
        import redis
        clients[url] = redis.Redis.from_url(url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                                            socket_timeout=REDIS_TIMEOUT_SECONDS)
    return clients[url]


def _settings():
    return current_app.config["PROMO_SETTINGS"]
