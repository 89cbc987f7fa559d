"""Operations endpoints, unsigned: liveness, readiness and Prometheus metrics."""
from __future__ import annotations

import logging

from flask import Response, current_app, jsonify
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from .. import metrics as promo_metrics
from ..extensions import db
from . import bp
from .errors import error_response

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
    checks = {"database": _check_database()}
    if _settings().redis_url:
        checks["redis"] = _check_redis()
    failed = sorted(name for name, result in checks.items() if result != "ok")
    if failed:
        return error_response(503, "unavailable", f"not ready: {', '.join(failed)} unreachable",
                              checks=checks)
    return jsonify(status="ready", checks=checks)


@bp.get("/metrics")
def prometheus_metrics():
    body = promo_metrics.metrics().exposition()
    return Response(body, content_type=promo_metrics.CONTENT_TYPE)


def _check_database() -> str:
    try:
        db.session.execute(text("SELECT 1"))
        db.session.rollback()
        return "ok"
    except SQLAlchemyError as exc:
        log.warning("readiness: database unreachable: %s", type(exc).__name__)
        db.session.rollback()
        return "unreachable"


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
