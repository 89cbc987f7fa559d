"""Shared fixtures: a fresh database per test on SQLite, and on PostgreSQL when reachable.

PROMO_REQUIRE_SERVICES=1 (set by CI) turns "PostgreSQL/Redis not reachable" from a skip
into a failure, so a green CI run always means the service tests ran.
"""
from __future__ import annotations

import os
import uuid
from decimal import Decimal

import pytest

from promo_engine.config import Settings

PG_ADMIN_URL = os.environ.get("PROMO_TEST_PG_ADMIN_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REQUIRE_SERVICES = os.environ.get("PROMO_REQUIRE_SERVICES") == "1"


def service_missing(what: str, why: object):
    message = f"{what} not reachable: {why}"
    if REQUIRE_SERVICES:
        pytest.fail(message + " (PROMO_REQUIRE_SERVICES=1)")
    pytest.skip(message)


def _pg_admin_engine():
    from sqlalchemy import create_engine
    return create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")


@pytest.fixture
def postgres_url():
    """A PostgreSQL database of this test's own, dropped afterwards."""
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError
    name = f"promo_test_{uuid.uuid4().hex[:12]}"
    admin = _pg_admin_engine()
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        service_missing("PostgreSQL", exc.orig)
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'promo.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request):
    """Runs the test once on SQLite and once on PostgreSQL."""
    return request.getfixturevalue({"sqlite": "sqlite_url", "postgresql": "postgres_url"}[request.param])


def make_settings(database_url: str, **overrides) -> Settings:
    values = dict(database_url=database_url, redis_url=None,
                  secret_key="test-secret-key-0123456789", timezone="Asia/Shanghai",
                  currency="CNY", points_per_unit=Decimal(1))
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(database_url):
    return make_settings(database_url)


@pytest.fixture
def app(settings):
    from promo_engine.app import create_app
    from promo_engine.schema import upgrade
    upgrade(settings.database_url)
    app = create_app(settings, test_config={"TESTING": True})
    yield app
    with app.app_context():
        from promo_engine.extensions import db
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()
