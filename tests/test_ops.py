"""Operations endpoints: /healthz, /readyz, /metrics (no signature needed)."""
from __future__ import annotations

import os

import pytest

from promo_engine.metrics import init_app, metrics

from conftest import make_settings, service_missing

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
CLOSED_PORT_REDIS = "redis://127.0.0.1:1/0"


def build_app(database_url: str, **overrides):
    from promo_engine.app import create_app
    return create_app(make_settings(database_url, **overrides), test_config={"TESTING": True})


@pytest.fixture
def make_app():
    apps = []

    def make(database_url: str, **overrides):
        app = build_app(database_url, **overrides)
        apps.append(app)
        return app
    yield make
    from promo_engine.ledger.extensions import db
    for app in apps:
        with app.app_context():
            db.engine.dispose()


def test_healthz(client):
    response = client.get("/healthz")
    assert (response.status_code, response.get_json()) == (200, {"status": "ok"})


def test_readyz_checks_the_database(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ready", "checks": {"database": "ok"}}


@pytest.mark.parametrize("url", ["sqlite:////nonexistent-directory/promo.db",
                                 "postgresql+psycopg://postgres@127.0.0.1:1/promo"])
def test_readyz_is_503_when_the_database_is_unreachable(make_app, url):
    response = make_app(url).test_client().get("/readyz")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.get_json() == {
        "error": {"code": "unavailable", "message": "not ready: database unreachable"},
        "checks": {"database": "unreachable"}}


@pytest.mark.services
def test_readyz_checks_redis_when_configured(make_app, sqlite_url):
    import redis
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        service_missing("Redis", exc)
    from promo_engine.ledger.schema import upgrade
    upgrade(sqlite_url)
    response = make_app(sqlite_url, redis_url=REDIS_URL).test_client().get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ready",
                                   "checks": {"database": "ok", "redis": "ok", "counters": "ok"}}


def test_readyz_is_503_naming_redis_when_it_is_unreachable(make_app, sqlite_url):
    response = make_app(sqlite_url, redis_url=CLOSED_PORT_REDIS).test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {
        "error": {"code": "unavailable", "message": "not ready: redis unreachable"},
        "checks": {"database": "ok", "redis": "unreachable"}}


def test_metrics_is_prometheus_text(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = response.get_data(as_text=True)
    for family in ("promo_events_total counter", "promo_rewards_total counter",
                   "promo_campaign_errors_total counter", "promo_http_requests_total counter",
                   "promo_http_request_duration_seconds histogram", "promo_open_campaigns gauge"):
        assert f"# TYPE {family}\n" in text


def test_metrics_count_requests_by_route_and_status(client):
    client.get("/healthz")
    client.get("/healthz")
    client.get("/v1/users/u_1/points")  # unsigned: 401
    client.get("/no/such/page")
    text = client.get("/metrics").get_data(as_text=True)
    assert ('promo_http_requests_total{endpoint="/healthz",method="GET",status="200"} 2.0'
            in text)
    assert ('promo_http_requests_total{endpoint="/v1/users/<user_id>/points",method="GET",'
            'status="401"} 1.0' in text)
    assert ('promo_http_requests_total{endpoint="<unmatched>",method="GET",status="404"} 1.0'
            in text)
    assert ('promo_http_request_duration_seconds_count{endpoint="/healthz",method="GET"} 2.0'
            in text)


def test_metrics_recorded_by_the_app_are_exported(app, client):
    with app.app_context():
        metrics().events.labels(type="payment", outcome="recorded").inc()
        metrics().rewards.labels(kind="points").inc(2)
        metrics().open_campaigns.set(3)
    text = client.get("/metrics").get_data(as_text=True)
    assert 'promo_events_total{outcome="recorded",type="payment"} 1.0' in text
    assert 'promo_rewards_total{kind="points"} 2.0' in text
    assert "promo_open_campaigns 3.0" in text


def test_each_app_has_its_own_metrics(make_app, sqlite_url):
    first, second = make_app(sqlite_url), make_app(sqlite_url)
    first.test_client().get("/healthz")
    text = second.test_client().get("/metrics").get_data(as_text=True)
    assert 'endpoint="/healthz"' not in text


def test_init_app_twice_keeps_one_set_of_metrics(app):
    assert init_app(app) is metrics(app)
