"""Shared fixtures: a fresh database per test on SQLite, and on PostgreSQL when reachable.

PROMO_REQUIRE_SERVICES=1 (set by CI) turns "PostgreSQL/Redis not reachable" from a skip
into a failure, so a green CI run always means the service tests ran.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import uuid
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import pytest

from promo_engine.config import Settings

PG_ADMIN_URL = os.environ.get("PROMO_TEST_PG_ADMIN_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REQUIRE_SERVICES = os.environ.get("PROMO_REQUIRE_SERVICES") == "1"
TEST_REDIS_URL = "redis://127.0.0.1:6379/0"  # tests keep to their own key prefixes
BENCH_DIR = Path(__file__).resolve().parent.parent / "bench"


def service_missing(what: str, why: object):
    message = f"{what} not reachable: {why}"
    if REQUIRE_SERVICES:
        pytest.fail(message + " (PROMO_REQUIRE_SERVICES=1)")
    pytest.skip(message)


def _pg_admin_engine():
    from sqlalchemy import create_engine
    return create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")


def _create_postgres_database() -> tuple[str, str]:
    """A new, empty PostgreSQL database: (its name, its URL); skips or fails when unreachable."""
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError
    name = f"promo_test_{uuid.uuid4().hex[:12]}"
    admin = _pg_admin_engine()
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        service_missing("PostgreSQL", exc.orig)
    finally:
        admin.dispose()
    return name, f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"


def _drop_postgres_database(name: str) -> None:
    from sqlalchemy import text
    admin = _pg_admin_engine()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def postgres_url():
    """A PostgreSQL database of this test's own, dropped afterwards."""
    name, url = _create_postgres_database()
    yield url
    _drop_postgres_database(name)


@pytest.fixture(scope="module")
def shared_postgres_url():
    """One migrated PostgreSQL database for a whole module (creating one per test costs
    about 1 s); `reused_schema_url` empties it before each test."""
    from promo_engine.ledger.schema import upgrade
    name, url = _create_postgres_database()
    upgrade(url)
    yield url
    _drop_postgres_database(name)


@pytest.fixture(scope="module")
def sqlite_template(tmp_path_factory):
    """A migrated SQLite database, copied for each test (migrating costs about 0.25 s)."""
    from promo_engine.ledger.schema import upgrade
    path = tmp_path_factory.mktemp("template") / "promo.db"
    upgrade(f"sqlite:///{path}")
    return path


def reused_schema_url(request, tmp_path) -> str:
    """For a module's `database_url` fixture parametrized over sqlite/postgresql: an empty,
    migrated database per test, made from one schema per module instead of migrating anew."""
    if request.param == "sqlite":
        import shutil
        path = tmp_path / "promo.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("shared_postgres_url")
    from sqlalchemy import create_engine, text

    from promo_engine.ledger.schema import target_metadata
    engine = create_engine(url)
    with engine.begin() as conn:
        for table in reversed(target_metadata().sorted_tables):
            if table.name != "program_state":
                conn.execute(text(f'DELETE FROM "{table.name}"'))
        # Its one row as the migrations leave it (the program id kept: each test has a
        # Redis prefix of its own).
        conn.execute(text("UPDATE program_state SET campaigns_revision = 0, scheduler_fence = 0"))
    engine.dispose()
    return url


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


@contextmanager
def running_app(settings, registry=None):
    """A migrated database and an app on it (with `registry`, e.g. extra plugins, if given)."""
    from promo_engine.app import create_app
    from promo_engine.ledger.extensions import db
    from promo_engine.ledger.schema import upgrade
    upgrade(settings.database_url)
    app = create_app(settings, test_config={"TESTING": True}, registry=registry)
    try:
        yield app
    finally:
        from promo_engine.service import promo_service
        promo_service(app).close()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@contextmanager
def bench_script(name: str):
    """bench/<name>.py imported as the module `bench_<name>`, for its smoke test; the
    module is forgotten afterwards."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def bench_admin_url() -> str:
    """The libpq admin URL the benchmarks take, checked reachable; skips (or fails under
    PROMO_REQUIRE_SERVICES=1) without PostgreSQL."""
    import psycopg
    admin_url = PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://", 1)
    try:
        psycopg.connect(admin_url, connect_timeout=3).close()
    except psycopg.Error as exc:
        service_missing("PostgreSQL", exc)
    return admin_url


def bench_services(redis_url: str) -> tuple[str, str]:
    """(libpq admin URL, Redis URL) for a benchmark's smoke test, both checked reachable;
    skips (or fails under PROMO_REQUIRE_SERVICES=1) without them."""
    import redis
    admin_url = bench_admin_url()
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        service_missing("Redis", exc)
    finally:
        client.close()
    return admin_url, redis_url


@pytest.fixture
def app(settings):
    with running_app(settings) as app:
        yield app


@pytest.fixture
def redis_client():
    """A Redis client for tests that use their own key prefix; skips or fails without Redis."""
    import redis
    client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        service_missing("Redis", exc)
    yield client
    client.close()


@pytest.fixture
def redis_prefix(redis_client):
    """A key prefix of this test's own in the shared Redis, its keys deleted afterwards.

    Its epoch is marked settled: a Redis that never held reservations has none in flight,
    so the tests need not wait out the settle period that follows a real data loss."""
    prefix = "{t-" + uuid.uuid4().hex[:12] + "}"
    redis_client.set(f"{prefix}:epoch", 0)
    yield prefix
    keys = list(redis_client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        redis_client.delete(*keys)


def make_redis_settings(database_url: str, prefix: str, **overrides) -> Settings:
    """Settings for the Redis hot path (budgets in Redis, replay cache, broadcasts)."""
    return make_settings(database_url, **{"redis_url": TEST_REDIS_URL, "redis_prefix": prefix,
                                          **overrides})


@pytest.fixture(params=["database-counters", "redis-counters"])
def counters_settings(request, database_url):
    """Settings with campaign counters in the database, then in Redis: for tests of rules
    that must hold the same either way."""
    if request.param == "database-counters":
        return make_settings(database_url)
    return make_redis_settings(database_url, request.getfixturevalue("redis_prefix"))


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def receiver():
    """A real webhook receiver on 127.0.0.1 (`webhook_receiver.py`), stopped afterwards."""
    from webhook_receiver import Receiver
    receiver = Receiver().start()
    yield receiver
    receiver.stop()
