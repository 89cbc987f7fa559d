"""Readiness with Redis: /readyz answers 503 exactly when events would, a brand-new
deployment is ready at once, and after Redis lost its data the wait is the settle period.
Real Redis and the real database (SQLite and PostgreSQL) throughout."""
from __future__ import annotations

import threading
import time
import uuid

import pytest
import redis
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from conftest import make_redis_settings, make_settings, running_app
from wallet import OPEN_RANGE, install_campaigns, new_wallet_client, payment

pytestmark = pytest.mark.services

# A Redis database of this module's own, so that a test may FLUSHDB it as an operator's
# mistake or a restart without persistence would.
FLUSHABLE_REDIS_URL = "redis://127.0.0.1:6379/13"

TEN_OFF = f"""
id: tenner
type: holiday_discount
{OPEN_RANGE}budget: {{amount: "100.00"}}
params: {{amount_off: "10.00"}}
"""


@pytest.fixture
def flushable_redis():
    client = redis.Redis.from_url(FLUSHABLE_REDIS_URL, socket_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        from conftest import service_missing
        service_missing("Redis", exc)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def new_prefix(redis_client):
    """A prefix no test has used, without the settled epoch `redis_prefix` gives."""
    prefix = "{new-" + uuid.uuid4().hex[:12] + "}"
    yield prefix
    keys = list(redis_client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        redis_client.delete(*keys)


def readiness(app):
    response = app.test_client().get("/readyz")
    return response.status_code, response.get_json(), response.headers.get("Retry-After")


def test_a_brand_new_deployment_is_ready_and_rewards_at_once(database_url, new_prefix,
                                                             redis_client, tmp_path):
    settings = make_redis_settings(database_url, new_prefix)
    with running_app(settings) as app:
        install_campaigns(app, TEN_OFF, tmp_path)
        assert redis_client.get(f"{new_prefix}:epoch") is None  # nothing has run yet
        status, body, _ = readiness(app)
        assert (status, body) == (200, {"status": "ready", "checks": {
            "database": "ok", "redis": "ok", "counters": "ok"}})
        wallet = new_wallet_client(app)
        first = wallet.event(**payment("p1", "50.00"))
        assert first.status_code == 201
        assert [r["campaign_id"] for r in first.get_json()["rewards"]] == [None, "tenner"]


def test_the_first_event_of_a_new_deployment_is_not_refused(database_url, new_prefix,
                                                            tmp_path):
    """Without anyone asking /readyz first: the event itself begins the epoch."""
    settings = make_redis_settings(database_url, new_prefix)
    with running_app(settings) as app:
        install_campaigns(app, TEN_OFF, tmp_path)
        wallet = new_wallet_client(app)
        first = wallet.event(**payment("p1", "50.00"))
        assert first.status_code == 201
        assert [r["campaign_id"] for r in first.get_json()["rewards"]] == [None, "tenner"]


def test_readiness_and_events_wait_out_the_settle_after_a_flushdb(database_url,
                                                                  flushable_redis, tmp_path):
    settings = make_redis_settings(database_url, "{promo}", redis_url=FLUSHABLE_REDIS_URL,
                                   reservation_ttl_ms=1000, reservation_grace_ms=500)
    with running_app(settings) as app:
        install_campaigns(app, TEN_OFF, tmp_path)
        wallet = new_wallet_client(app)
        assert wallet.event(**payment("p1", "50.00", user_id="a")).status_code == 201
        assert readiness(app)[0] == 200
        flushable_redis.flushdb()  # every reservation in flight is gone with it

        status, body, retry_after = readiness(app)
        assert status == 503
        assert body["checks"] == {"database": "ok", "redis": "ok", "counters": "settling"}
        assert body["error"]["code"] == "unavailable"
        assert body["error"]["message"].startswith("not ready: budget counters are being "
                                                   "rebuilt; retry in ")
        assert retry_after == "2"  # 1.5 s of settling, rounded up
        refused = wallet.event(**payment("p2", "50.00", user_id="b"))
        assert (refused.status_code, refused.headers["Retry-After"]) == (503, "2")

        time.sleep(1.6)
        assert readiness(app)[0] == 200
        again = wallet.post("/v1/events", wallet.last_body)
        assert (again.status_code,
                [r["campaign_id"] for r in again.get_json()["rewards"]]) == (201, [None, "tenner"])
        from promo_engine.service import promo_service
        assert promo_service(app).reservations.counters(["tenner"]) == {"tenner": (2000, 2)}


def test_events_recorded_before_the_prefix_was_make_it_settle(database_url, new_prefix,
                                                             tmp_path):
    """A database with a ledger that never recorded this prefix (an upgrade from a version
    that did not record prefixes, or a changed PROMO_REDIS_PREFIX) may have reservations
    in flight under it: it waits, as after a data loss."""
    with running_app(make_settings(database_url)) as app:
        wallet = new_wallet_client(app)
        assert wallet.event(**payment("p1", "50.00")).status_code == 201
    settings = make_redis_settings(database_url, new_prefix, reservation_ttl_ms=1000,
                                   reservation_grace_ms=500)
    with running_app(settings) as app:
        install_campaigns(app, TEN_OFF, tmp_path)
        status, body, retry_after = readiness(app)
        assert (status, body["checks"]["counters"], retry_after) == (503, "settling", "2")


def test_a_new_counter_is_built_by_the_readiness_check(database_url, redis_prefix,
                                                       redis_client, tmp_path):
    settings = make_redis_settings(database_url, redis_prefix)
    with running_app(settings) as app:
        install_campaigns(app, TEN_OFF, tmp_path)
        assert not redis_client.exists(f"{redis_prefix}:usage:tenner")
        assert readiness(app)[0] == 200
        assert redis_client.hgetall(f"{redis_prefix}:usage:tenner") == {b"s": b"0", b"r": b"0"}


def test_a_foreign_prefix_is_not_ready(database_url, redis_prefix, redis_client, tmp_path):
    redis_client.set(f"{redis_prefix}:owner", "another-program")
    settings = make_redis_settings(database_url, redis_prefix)
    with running_app(settings) as app:
        install_campaigns(app, TEN_OFF, tmp_path)
        status, body, retry_after = readiness(app)
        assert (status, body["checks"]["counters"], retry_after) == (503, "foreign_prefix", "60")
        assert "holds the counters of another program database" in body["error"]["message"]


def test_without_campaigns_a_settling_prefix_is_ready(database_url, new_prefix, tmp_path):
    """Events reserve nothing then, so none would be refused."""
    settings = make_redis_settings(database_url, new_prefix)
    with running_app(settings) as app:
        new_wallet_client(app).event(**payment("p1", "50.00"))
    with running_app(settings) as app:
        assert readiness(app)[0] == 200


def test_processes_judging_a_new_prefix_at_once_begin_one_settled_epoch(postgres_url,
                                                                        new_prefix,
                                                                        redis_client):
    """Twelve workers find the epoch missing together: one records the prefix and begins
    the epoch settled now; the others wait on the lock and find it begun."""
    from promo_engine.ledger.extensions import db
    from promo_engine.ledger.models import RedisCounterPrefix
    from promo_engine.service import promo_service
    settings = make_redis_settings(postgres_url, new_prefix)
    with running_app(settings) as app:
        reservations = promo_service(app).reservations
        errors: list[BaseException] = []
        start = threading.Barrier(12)

        def judge():
            try:
                with app.app_context():
                    start.wait()
                    reservations.begin_epoch()
                    db.session.remove()
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=judge) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        epoch = int(redis_client.get(f"{new_prefix}:epoch"))
        assert epoch <= reservations.clock_ms()  # settled: no wait for a new deployment
        with app.app_context():
            assert db.session.scalar(select(func.count()).select_from(RedisCounterPrefix)) == 1


def test_a_failed_record_of_the_prefix_takes_its_epoch_back(sqlite_url, new_prefix,
                                                            redis_client):
    from promo_engine.ledger.counter_epochs import judge_epoch
    from promo_engine.ledger.extensions import db
    from promo_engine.service import promo_service
    settings = make_redis_settings(sqlite_url, new_prefix)
    with running_app(settings) as app:
        reservations = promo_service(app).reservations
        with app.app_context():
            db.session.execute(db.text(  # the record fails after the epoch was set
                "CREATE TRIGGER refuse BEFORE INSERT ON redis_counter_prefixes "
                "BEGIN SELECT RAISE(ABORT, 'disk full'); END"))
            db.session.commit()
            with pytest.raises(IntegrityError, match="disk full"):
                judge_epoch(reservations)
        assert redis_client.get(f"{new_prefix}:epoch") is None


@pytest.mark.slow
def test_a_new_deployment_of_three_workers_rewards_its_first_events(postgres_url, new_prefix,
                                                                   tmp_path):
    """As a deploy script sees it: `serve --workers 3` on a new database and a new prefix;
    /readyz is 200 as soon as the workers answer, and the first events, sent together to
    every worker, are all rewarded on their first attempt."""
    import json
    from concurrent.futures import ThreadPoolExecutor

    import requests

    from promo_engine.api.auth import signed_headers

    from conftest import TEST_REDIS_URL
    from processes import Processes, Server, deploy, service_env
    env = service_env(postgres_url, redis_url=TEST_REDIS_URL, redis_prefix=new_prefix)
    with Processes() as processes:
        [(key_id, secret)] = deploy(env, tmp_path, TEN_OFF, clients=1)
        server = processes.add(Server(env, tmp_path, workers=3)).start()
        ready = requests.get(f"{server.base}/readyz", timeout=5)
        assert (ready.status_code, ready.json()["checks"]) == (
            200, {"database": "ok", "redis": "ok", "counters": "ok"})

        def first_event(n: int):
            body = json.dumps(payment(f"p{n}", "50.00", user_id=f"u{n}")).encode()
            return requests.post(f"{server.base}/v1/events", data=body, timeout=10, headers={
                **signed_headers(key_id, secret, "POST", "/v1/events", body),
                "Content-Type": "application/json"})

        with ThreadPoolExecutor(9) as pool:
            answers = list(pool.map(first_event, range(9)))
        assert [a.status_code for a in answers] == [201] * 9
        assert sum(r["campaign_id"] == "tenner" for a in answers
                   for r in a.json()["rewards"]) == 9
