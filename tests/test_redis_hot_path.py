"""The API with REDIS_URL set: budgets reserved in Redis, replays answered from Redis,
campaign changes broadcast, per-client rate limits, and what happens when Redis is away.
Real Redis and the real database (SQLite and PostgreSQL) throughout."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from conftest import make_redis_settings, running_app
from wallet import (OPEN_RANGE, activation, install_campaigns, new_wallet_client, payment,
                    without_ids)

pytestmark = pytest.mark.services

TEN_OFF_TWICE = f"""
id: tenner
type: holiday_discount
{OPEN_RANGE}budget: {{amount: "20.00"}}
params: {{amount_off: "10.00"}}
"""


@pytest.fixture
def settings(database_url, redis_prefix):
    return make_redis_settings(database_url, redis_prefix)


def campaign_ids(response) -> list:
    return [r["campaign_id"] for r in response.get_json()["rewards"]]


def counters(app, *campaign_ids):
    from promo_engine.service import promo_service
    return promo_service(app).reservations.counters(campaign_ids)


def table_counts(app) -> tuple[int, int]:
    from promo_engine.ledger.extensions import db
    from promo_engine.ledger.models import EventRecord, RewardRecord
    with app.app_context():
        counts = (db.session.scalar(select(func.count()).select_from(EventRecord)),
                  db.session.scalar(select(func.count()).select_from(RewardRecord)))
        db.session.rollback()
        return counts


@pytest.fixture
def wallet(app, tmp_path):
    install_campaigns(app, TEN_OFF_TWICE, tmp_path)
    return new_wallet_client(app)


def test_an_event_is_confirmed_after_redis_lost_its_scripts(app, wallet, redis_client,
                                                            redis_prefix):
    """Confirmations go in a pipeline by digest alone; a Redis that restarted (or flushed
    its scripts) meanwhile answers NOSCRIPT, and the confirmation is sent again with it."""
    from promo_engine.service import promo_service
    reservations = promo_service(app).reservations
    reserve = reservations.reserve

    def reserve_then_lose_the_scripts(requests):
        outcome = reserve(requests)
        redis_client.script_flush()
        return outcome
    reservations.reserve = reserve_then_lose_the_scripts
    try:
        first = wallet.event(**payment("p1", "50.00", user_id="a"))
    finally:
        del reservations.reserve
    assert first.status_code == 201 and campaign_ids(first) == [None, "tenner"]
    assert counters(app, "tenner") == {"tenner": (1000, 1)}
    assert redis_client.zcard(f"{redis_prefix}:inflight") == 0  # confirmed, not left in flight
    assert redis_client.zcard(f"{redis_prefix}:confirmed") == 1
    replay = wallet.event(**payment("p1", "50.00", user_id="a"))  # and the replay answered
    assert replay.status_code == 200 and replay.data == first.data

def test_budget_is_counted_in_redis_and_the_database_rows_are_left_alone(app, wallet):
    from promo_engine.ledger.extensions import db
    from promo_engine.ledger.models import CampaignUsage
    assert campaign_ids(wallet.event(**payment("p1", "50.00", user_id="a"))) == [None, "tenner"]
    assert campaign_ids(wallet.event(**payment("p2", "50.00", user_id="b"))) == [None, "tenner"]
    assert campaign_ids(wallet.event(**payment("p3", "50.00", user_id="c"))) == [None]
    assert counters(app, "tenner") == {"tenner": (2000, 2)}
    with app.app_context():  # no event locked this row: reconciliation rebuilds it
        assert (db.session.get(CampaignUsage, "tenner").spent,
                db.session.get(CampaignUsage, "tenner").redemptions) == (0, 0)


def test_counters_are_built_from_the_ledger_when_redis_has_none(app, wallet, redis_client,
                                                               redis_prefix):
    wallet.event(**payment("p1", "50.00", user_id="a"))
    redis_client.delete(f"{redis_prefix}:usage:tenner")  # e.g. evicted, or a new Redis
    assert campaign_ids(wallet.event(**payment("p2", "50.00", user_id="b"))) == [None, "tenner"]
    assert campaign_ids(wallet.event(**payment("p3", "50.00", user_id="c"))) == [None]
    assert counters(app, "tenner") == {"tenner": (2000, 2)}


def test_an_event_waits_briefly_for_another_workers_counter_build(app, wallet, redis_client,
                                                                  redis_prefix, monkeypatch):
    from promo_engine.ledger import reserving as ledger
    wallet.event(**payment("p1", "50.00", user_id="a"))
    redis_client.delete(f"{redis_prefix}:usage:tenner")
    redis_client.set(f"{redis_prefix}:building", "another-worker", px=30_000)
    waits = []

    def another_worker_finishes(seconds):  # as the other worker would, after its ledger read
        waits.append(seconds)
        if len(waits) == 3:
            redis_client.hset(f"{redis_prefix}:usage:tenner", mapping={"s": 1000, "r": 1})
            redis_client.delete(f"{redis_prefix}:building")
    monkeypatch.setattr(ledger.time, "sleep", another_worker_finishes)
    assert campaign_ids(wallet.event(**payment("p2", "50.00", user_id="b"))) == [None, "tenner"]
    assert waits == [0.02, 0.02, 0.02]
    assert counters(app, "tenner") == {"tenner": (2000, 2)}


def test_a_counter_build_that_takes_long_answers_503(app, wallet, redis_client, redis_prefix,
                                                     monkeypatch):
    from promo_engine.ledger import reserving as ledger
    wallet.event(**payment("p1", "50.00", user_id="a"))
    redis_client.delete(f"{redis_prefix}:usage:tenner")
    redis_client.set(f"{redis_prefix}:building", "another-worker", px=30_000)
    monkeypatch.setattr(ledger.time, "sleep", lambda seconds: None)
    busy = wallet.event(**payment("p2", "50.00", user_id="b"))
    assert (busy.status_code, busy.headers["Retry-After"]) == (503, "1")
    assert table_counts(app) == (1, 2)
    redis_client.delete(f"{redis_prefix}:building")
    assert campaign_ids(wallet.post("/v1/events", wallet.last_body)) == [None, "tenner"]
    assert counters(app, "tenner") == {"tenner": (2000, 2)}


def test_a_full_exclusive_campaign_lets_lower_ones_apply(app, tmp_path):
    install_campaigns(app, f"""
id: vip
type: holiday_discount
{OPEN_RANGE}priority: 10
exclusive: true
limits: {{max_redemptions: 1}}
params: {{amount_off: "5.00"}}
---
id: everyone
type: holiday_discount
{OPEN_RANGE}params: {{amount_off: "1.00"}}
---
id: triple
type: points_multiplier
{OPEN_RANGE}budget: {{points: 200}}
params: {{multiplier: 3}}
---
id: double
type: points_multiplier
{OPEN_RANGE}params: {{multiplier: 2}}
""", tmp_path)
    wallet = new_wallet_client(app)
    assert campaign_ids(wallet.event(**payment("p1", "100.00", user_id="a"))) == [None, "vip"]
    # vip is full now: evaluated again without it, the lower campaigns apply, and the
    # multiplier group falls to its next member when the highest has no budget left.
    assert campaign_ids(wallet.event(**payment("p2", "100.00", user_id="b"))) == \
        [None, "everyone", "triple"]
    assert campaign_ids(wallet.event(**payment("p3", "100.00", user_id="c"))) == \
        [None, "double", "everyone"]  # equal priority: in id order
    assert counters(app, "vip", "everyone", "triple", "double") == {
        "vip": (500, 1), "everyone": (200, 2), "triple": (200, 1), "double": (100, 1)}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_replay_is_answered_from_redis_without_the_database(app, wallet):
    """On SQLite Redis answers replays; on PostgreSQL a payment's replay is found in the
    user lock's round trip instead (the next test)."""
    from promo_engine.ledger.extensions import db
    first = wallet.event(**payment("p1", "50.00"))
    assert first.status_code == 201
    statements = []

    def count(_conn, _cursor, statement, *_args):
        if statement != "BEGIN":  # SQLite's, sent by the engine
            statements.append(statement)
    with app.app_context():
        engine = db.engine
    sa_event.listen(engine, "before_cursor_execute", count)
    try:
        again = wallet.post("/v1/events", wallet.last_body)
    finally:
        sa_event.remove(engine, "before_cursor_execute", count)
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.data == first.data
    # At most the polls of the campaigns' revision and of the API clients (their secrets
    # are kept in memory): nothing reads the ledger.
    assert all("program_state" in statement or "FROM api_clients" in statement
               for statement in statements), statements


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_on_postgresql_a_payment_asks_redis_nothing_about_replays(app, wallet, redis_client,
                                                                 redis_prefix, monkeypatch):
    """On PostgreSQL a payment's stored copy is read in the round trip that locks its user
    (which it makes anyway), so a new payment sends Redis no replay lookup and keeps no
    answer there; its replay, and a changed body under its event_id, are answered from the
    database all the same."""
    from promo_engine.service import promo_service
    asked = []
    monkeypatch.setattr(promo_service(app).ledger.replays, "get",
                        lambda *args: asked.append(args))
    first = wallet.event(**payment("p1", "50.00"))
    assert first.status_code == 201
    again = wallet.post("/v1/events", wallet.last_body)
    assert (again.status_code, again.data) == (200, first.data)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert wallet.event(**payment("p1", "51.00")).status_code == 409
    assert asked == []
    assert list(redis_client.scan_iter(match=f"{redis_prefix}:replay:*")) == []
    assert counters(app, "tenner") == {"tenner": (1000, 1)}  # the replay reserved nothing
    assert table_counts(app) == (1, 2)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_on_postgresql_an_activation_replay_is_answered_by_the_database(app, wallet,
                                                                        redis_client,
                                                                        redis_prefix,
                                                                        monkeypatch):
    """An activation, like a payment, finds its stored copy in the user lock's read: the
    replay is byte-identical with `Idempotent-Replayed`, a changed body is a 409, and Redis
    is neither asked nor given an answer to keep."""
    from promo_engine.service import promo_service
    asked = []
    monkeypatch.setattr(promo_service(app).ledger.replays, "get",
                        lambda *args: asked.append(args))
    first = wallet.event(**activation("act-1"))
    assert first.status_code == 201
    again = wallet.post("/v1/events", wallet.last_body)
    assert (again.status_code, again.data) == (200, first.data)
    assert again.headers["Idempotent-Replayed"] == "true"
    changed = wallet.event(**activation("act-1", at="2026-06-15T09:00:01+08:00"))
    assert changed.status_code == 409
    assert changed.get_json()["error"]["code"] == "idempotency_conflict"
    assert asked == []
    assert list(redis_client.scan_iter(match=f"{redis_prefix}:replay:*")) == []


def test_a_changed_body_under_a_cached_event_id_is_a_conflict(app, wallet):
    assert wallet.event(**payment("p1", "50.00")).status_code == 201
    conflict = wallet.event(**payment("p1", "51.00"))
    assert conflict.status_code == 409
    assert conflict.get_json()["error"]["code"] == "idempotency_conflict"
    assert table_counts(app) == (1, 2)


def test_the_database_answers_replays_the_cache_does_not_hold(app, wallet, redis_client,
                                                             redis_prefix):
    first = wallet.event(**payment("p1", "50.00"))
    for key in redis_client.scan_iter(match=f"{redis_prefix}:replay:*"):
        redis_client.delete(key)
    again = wallet.post("/v1/events", wallet.last_body)
    assert (again.status_code, again.data) == (200, first.data)
    assert counters(app, "tenner") == {"tenner": (1000, 1)}


def test_a_transaction_that_fails_gives_its_reservation_back(app, wallet, monkeypatch):
    from promo_engine.ledger.recorder import Ledger
    reserving = Ledger._evaluate_reserving
    taken = []

    def reserve_then_lose_the_database(self, *args, **kwargs):
        reserving(self, *args, **kwargs)
        taken.append(counters(app, "tenner")["tenner"])
        raise OperationalError("INSERT INTO rewards", {}, Exception("server closed the connection"))
    monkeypatch.setattr(Ledger, "_evaluate_reserving", reserve_then_lose_the_database)
    response = wallet.event(**payment("p1", "50.00"))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert taken == [(1000, 1)]  # reserved, then given back
    assert counters(app, "tenner") == {"tenner": (0, 0)}
    assert table_counts(app) == (0, 0)
    monkeypatch.setattr(Ledger, "_evaluate_reserving", reserving)
    assert campaign_ids(wallet.post("/v1/events", wallet.last_body)) == [None, "tenner"]
    assert counters(app, "tenner") == {"tenner": (1000, 1)}


def test_a_transaction_past_its_reservation_deadline_does_not_commit(database_url, redis_prefix,
                                                                     tmp_path, monkeypatch):
    from promo_engine.coordination import reservations
    from promo_engine.ledger.recorder import Ledger
    settings = make_redis_settings(database_url, redis_prefix, reservation_ttl_ms=100)
    with running_app(settings) as app:
        install_campaigns(app, TEN_OFF_TWICE, tmp_path)
        wallet = new_wallet_client(app)
        real_clock, reserving = reservations.now_ms, Ledger._evaluate_reserving

        def reserve_then_stall(self, *args, **kwargs):
            decision = reserving(self, *args, **kwargs)  # its deadline is 100 ms away
            monkeypatch.setattr(reservations, "now_ms", lambda: real_clock() + 400)
            return decision
        monkeypatch.setattr(Ledger, "_evaluate_reserving", reserve_then_stall)
        response = wallet.event(**payment("p1", "50.00"))
        assert response.status_code == 503
        assert response.get_json()["error"]["code"] == "unavailable"
        assert int(response.headers["Retry-After"]) >= 1
        assert table_counts(app) == (0, 0)
        assert counters(app, "tenner") == {"tenner": (0, 0)}


def test_quotes_read_the_redis_counters(app, wallet):
    wallet.event(**payment("p1", "50.00", user_id="a"))
    wallet.event(**payment("p2", "50.00", user_id="b"))
    quote = wallet.post("/v1/quote", {k: v for k, v in payment("q", "50.00").items()
                                      if k != "event_id"})
    assert quote.status_code == 200
    assert without_ids(quote.get_json()["rewards"]) == [
        {"campaign_id": None, "kind": "points", "points": 50}]
    assert counters(app, "tenner") == {"tenner": (2000, 2)}


# -- Redis away ------------------------------------------------------------------------------

@pytest.fixture
def unreachable_redis_app(database_url, redis_prefix, tmp_path):
    # Port 1 on localhost: connections are refused at once, as when Redis is stopped.
    settings = make_redis_settings(database_url, redis_prefix,
                                   redis_url="redis://127.0.0.1:1/0")
    with running_app(settings) as app:
        yield app


def test_without_redis_an_event_that_needs_a_reservation_gets_503(unreachable_redis_app, tmp_path):
    app = unreachable_redis_app
    install_campaigns(app, TEN_OFF_TWICE.replace("id: tenner", "id: tenner\nmerchants: [m_100]"),
                      tmp_path)
    wallet = new_wallet_client(app)
    refused = wallet.event(**payment("p1", "50.00", merchant_id="m_100"))
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "1"
    assert refused.get_json()["error"]["code"] == "unavailable"
    assert table_counts(app) == (0, 0)
    # Base points need no shared counter: those events are still recorded.
    plain = wallet.event(**payment("p2", "50.00", merchant_id="m_999"))
    assert plain.status_code == 201
    assert without_ids(plain.get_json()["rewards"]) == [
        {"campaign_id": None, "kind": "points", "points": 50}]
    again = wallet.post("/v1/events", wallet.last_body)  # the database answers the replay
    assert (again.status_code, again.data) == (200, plain.data)
    quote = wallet.post("/v1/quote", {k: v for k, v in payment("q", "50.00").items()
                                      if k != "event_id"})  # from the reconciled counts
    assert (quote.status_code, campaign_ids(quote)) == (200, [None, "tenner"])
    assert wallet.get("/v1/users/u_1/points").get_json()["points_balance"] == 50


def test_while_redis_settles_after_losing_its_data_events_get_503(database_url, redis_prefix,
                                                                   redis_client, tmp_path):
    settings = make_redis_settings(database_url, redis_prefix, reservation_ttl_ms=1000,
                                   reservation_grace_ms=500)
    with running_app(settings) as app:
        install_campaigns(app, TEN_OFF_TWICE, tmp_path)
        wallet = new_wallet_client(app)
        assert wallet.event(**payment("p1", "50.00", user_id="a")).status_code == 201
        for key in redis_client.scan_iter(match=f"{redis_prefix}*"):
            redis_client.delete(key)  # Redis restarted without persistence
        settling = wallet.event(**payment("p2", "50.00", user_id="b"))
        assert settling.status_code == 503
        assert settling.headers["Retry-After"] == "2"  # 1.5 s of settling, rounded up
        time.sleep(1.6)
        assert campaign_ids(wallet.post("/v1/events", wallet.last_body)) == [None, "tenner"]
        assert campaign_ids(wallet.event(**payment("p3", "50.00", user_id="c"))) == [None]
        assert counters(app, "tenner") == {"tenner": (2000, 2)}


# -- broadcasts ------------------------------------------------------------------------------

def test_a_campaign_change_reaches_other_workers_by_broadcast(settings, tmp_path):
    """Two apps on one database and Redis, as two worker processes: the first stops polling
    (its poll interval is an hour) and still sees the second's change at once."""
    with running_app(settings) as worker, running_app(settings) as operator:
        from promo_engine.service import promo_service
        service = promo_service(worker)
        service.reload_interval = service.broadcast_reload_interval = 3600
        wallet = new_wallet_client(worker)
        assert campaign_ids(wallet.event(**payment("p1", "50.00", user_id="a"))) == [None]
        assert service.listener.connected.wait(5)
        install_campaigns(operator, TEN_OFF_TWICE, tmp_path)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            quote = wallet.post("/v1/quote", {k: v for k, v in payment("q", "50.00").items()
                                              if k != "event_id"})
            if campaign_ids(quote) == [None, "tenner"]:
                break
            time.sleep(0.05)
        assert campaign_ids(wallet.event(**payment("p2", "50.00", user_id="b"))) == [None, "tenner"]


# -- rate limits -----------------------------------------------------------------------------

def test_each_client_is_limited_across_workers(database_url, redis_prefix):
    settings = make_redis_settings(database_url, redis_prefix, api_rate_limit="3/minute")
    with running_app(settings) as first, running_app(settings) as second:
        one = new_wallet_client(first)
        other = new_wallet_client(first)
        one_on_second = type(one)(second.test_client(), one.key_id, one.secret)
        assert one.get("/v1/users/u_1/points").status_code == 200
        assert one_on_second.get("/v1/users/u_1/points").status_code == 200
        assert one.get("/v1/users/u_1/points").status_code == 200
        limited = one_on_second.get("/v1/users/u_1/points")
        assert limited.status_code == 429
        assert limited.get_json()["error"]["code"] == "rate_limited"
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        assert other.get("/v1/users/u_1/points").status_code == 200  # its own allowance
        # An unsigned request with the client's key id spends nothing of its allowance.
        anonymous = first.test_client().get("/v1/users/u_1/points",
                                            headers={"X-Promo-Key": other.key_id})
        assert anonymous.status_code == 401
        assert other.get("/v1/users/u_1/points").status_code == 200
        assert other.get("/v1/users/u_1/points").status_code == 200
        assert other.get("/v1/users/u_1/points").status_code == 429


def test_leased_allowance_never_lets_more_than_the_limit_through(redis_client, redis_prefix):
    """Two workers share one client's 300 per minute: each takes leases of 3 from Redis,
    so together they let through at most 300 in a window, and at least 300 less what each
    may hold unspent (2); the next window starts afresh."""
    from promo_engine.api.errors import ApiError
    from promo_engine.api.rate_limit import LeasedRateLimit
    now = [6_000_000.0]  # a whole number of minutes: the window starts here
    workers = [LeasedRateLimit("300/minute", redis_client, redis_prefix, clock=lambda: now[0])
               for _ in range(2)]
    assert workers[0].lease == 3

    def allowed(count: int) -> int:
        passed = 0
        for n in range(count):
            try:
                workers[n % 2].check("pk_wallet")
                passed += 1
            except ApiError as exc:
                assert exc.status == 429 and exc.headers["Retry-After"] == str(60 - int(now[0] % 60))
        return passed
    assert 296 <= allowed(400) <= 300
    now[0] += 30.5
    assert allowed(50) == 0  # the same window
    now[0] += 29.5
    assert 296 <= allowed(400) <= 300  # the next one
    assert int(redis_client.get(f"{redis_prefix}:rate:9:pk_wallet:{int(now[0] // 60)}")) >= 300

def test_rate_limits_without_redis_count_per_process(database_url):
    from conftest import make_settings
    with running_app(make_settings(database_url, api_rate_limit="2/minute")) as app:
        wallet = new_wallet_client(app)
        assert [wallet.get("/v1/users/u_1/points").status_code for _ in range(3)] == [200, 200, 429]


# -- reconciliation --------------------------------------------------------------------------

def test_reconciliation_rebuilds_database_rows_and_redis_from_the_ledger(app, wallet, redis_client,
                                                                         redis_prefix):
    from promo_engine.campaigns.reconcile import reconcile
    from promo_engine.ledger.extensions import db
    from promo_engine.ledger.models import CampaignUsage
    from promo_engine.service import promo_service
    wallet.event(**payment("p1", "50.00", user_id="a"))
    # A worker killed between reserving and committing leaves its reservation behind.
    service = promo_service(app)
    from promo_engine.coordination.reservations import Request
    leaked = service.reservations.reserve([Request("tenner", 1000, 1, 2000, None)]).reservation
    assert leaked is not None
    assert campaign_ids(wallet.event(**payment("p2", "50.00", user_id="b"))) == [None]  # under-spend
    with app.app_context():
        done = reconcile(service.reservations)
        assert (done.campaigns, done.counters) == (1, 1)
        row = db.session.get(CampaignUsage, "tenner")
        assert (row.spent, row.redemptions) == (1000, 1)
    assert counters(app, "tenner") == {"tenner": (2000, 2)}  # in flight until its deadline
    redis_client.zadd(f"{redis_prefix}:inflight", {leaked.id: 0})  # its deadline long past
    with app.app_context():
        reconcile(service.reservations)
    assert counters(app, "tenner") == {"tenner": (1000, 1)}
    assert campaign_ids(wallet.event(**payment("p3", "50.00", user_id="c"))) == [None, "tenner"]


def test_the_leading_scheduler_reconciles_on_schedule(app, wallet):
    from promo_engine.campaigns.scheduler import RECONCILE_JOB, CampaignScheduler
    from promo_engine.ledger.extensions import db
    from promo_engine.ledger.models import CampaignUsage
    wallet.event(**payment("p1", "50.00", user_id="a"))
    scheduler = CampaignScheduler(app)
    assert scheduler.reconcile() is None  # not leading: does nothing
    scheduler.start()  # alone (no lease): it leads
    try:
        job = scheduler.aps.get_job(RECONCILE_JOB)
        assert job.trigger.interval.total_seconds() == 60
        done = scheduler.reconcile()
        assert (done.campaigns, done.counters) == (1, 1)
        with app.app_context():
            row = db.session.get(CampaignUsage, "tenner")
            assert (row.spent, row.redemptions) == (1000, 1)
    finally:
        scheduler.stop()


def test_reconcile_command(database_url, redis_prefix, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from promo_engine.cli import main
    settings = make_redis_settings(database_url, redis_prefix)
    with running_app(settings) as app:
        install_campaigns(app, TEN_OFF_TWICE, tmp_path)
        new_wallet_client(app).event(**payment("p1", "50.00", user_id="a"))
    monkeypatch.chdir(tmp_path)
    env = {"DATABASE_URL": database_url, "SECRET_KEY": settings.secret_key,
           "PROMO_REDIS_PREFIX": redis_prefix}
    with_redis = CliRunner(env={**env, "REDIS_URL": settings.redis_url}).invoke(main, ["reconcile"])
    assert (with_redis.exit_code, with_redis.output) == (0, "reconciled 1 campaigns, 1 Redis counters\n")
    without = CliRunner(env={**env, "REDIS_URL": None}).invoke(main, ["reconcile"])
    assert without.exit_code == 2
    assert "pass --offline, with every worker stopped" in without.output
    offline = CliRunner(env={**env, "REDIS_URL": None}).invoke(main, ["reconcile", "--offline"])
    assert (offline.exit_code, offline.output) == (0, "reconciled 1 campaigns\n")
    with running_app(make_redis_settings(database_url, redis_prefix)) as app:
        assert counters(app, "tenner") == {"tenner": (1000, 1)}


@pytest.fixture
def other_database_url(database_url, tmp_path):
    """A second program database of the same kind as this test's."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'other.db'}"
        return
    from conftest import _create_postgres_database, _drop_postgres_database
    name, url = _create_postgres_database()
    yield url
    _drop_postgres_database(name)


def test_a_second_program_database_on_the_same_prefix_is_refused(app, wallet, tmp_path,
                                                                 redis_prefix, other_database_url):
    """Two program databases given one PROMO_REDIS_PREFIX: the second may neither spend
    from the first's counters nor rebuild them from its own ledger; it answers 503 and
    writes nothing, and the first goes on as before."""
    from promo_engine.campaigns.reconcile import reconcile
    from promo_engine.coordination.reservations import ForeignPrefix
    from promo_engine.service import promo_service
    assert campaign_ids(wallet.event(**payment("p1", "50.00", user_id="a"))) == [None, "tenner"]
    with running_app(make_redis_settings(other_database_url, redis_prefix)) as other:
        install_campaigns(other, TEN_OFF_TWICE, tmp_path, name="other.yaml")
        other_wallet = new_wallet_client(other)
        refused = other_wallet.event(**payment("q1", "50.00", user_id="a"))
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "60"
        assert refused.get_json()["error"]["code"] == "unavailable"
        assert "holds the counters of another program database" in \
            refused.get_json()["error"]["message"]
        assert table_counts(other) == (0, 0)
        with other.app_context(), pytest.raises(ForeignPrefix):
            reconcile(promo_service(other).reservations)
    assert counters(app, "tenner") == {"tenner": (1000, 1)}
    assert campaign_ids(wallet.event(**payment("p2", "50.00", user_id="b"))) == [None, "tenner"]
    assert counters(app, "tenner") == {"tenner": (2000, 2)}


def test_budget_use_is_shown_as_redis_counts_it_before_reconciliation(app, wallet, redis_prefix,
                                                                      database_url):
    """With Redis the database's usage rows trail until reconciliation; `campaigns list`,
    the portal's budget and quotes read Redis's counters first."""
    import json

    from click.testing import CliRunner

    from merchant_portal.views import _budget
    from promo_engine.cli import main
    from promo_engine.ledger.extensions import db
    from promo_engine.ledger.models import CampaignUsage

    from conftest import TEST_REDIS_URL
    assert campaign_ids(wallet.event(**payment("p1", "50.00", user_id="a"))) == [None, "tenner"]
    with app.app_context():
        row = db.session.get(CampaignUsage, "tenner")
        assert (row.spent, row.redemptions) == (0, 0)  # not reconciled yet
        db.session.rollback()
    result = CliRunner().invoke(main, ["campaigns", "list", "--json"], env={
        "DATABASE_URL": database_url, "REDIS_URL": TEST_REDIS_URL,
        "PROMO_REDIS_PREFIX": redis_prefix, "SECRET_KEY": "test-secret-key-0123456789"})
    assert result.exit_code == 0, result.output
    [listed] = json.loads(result.stdout)
    assert listed["budget"] == {"unit": "money", "currency": "CNY", "total": "20.00",
                                "used": "10.00", "left": "10.00"}
    assert listed["redemptions"] == 1
    with app.test_request_context("/portal/"):
        shown = _budget({"budget": {"amount": "20.00"}}, "tenner", "CNY")
        assert (shown["used_minor"], shown["total_minor"], shown["percent"]) == (1000, 2000, 50)
    quoted = wallet.post("/v1/quote", payment("q1", "50.00", user_id="b")).get_json()
    assert [r["campaign_id"] for r in quoted["rewards"]] == [None, "tenner"]
    wallet.event(**payment("p2", "50.00", user_id="b"))
    quoted = wallet.post("/v1/quote", payment("q2", "50.00", user_id="c")).get_json()
    assert [r["campaign_id"] for r in quoted["rewards"]] == [None]  # the budget is spent


def test_a_lost_program_id_is_made_again_before_the_first_event(app, wallet, redis_client,
                                                                 redis_prefix):
    """The id is read (or, if its row was lost, made) in a transaction of its own before the
    first event's, so an event that then fails cannot take a claimed id back with it."""
    from promo_engine.ledger.extensions import db
    from promo_engine.ledger.models import ProgramState
    with app.app_context():
        db.session.execute(db.delete(ProgramState))
        db.session.commit()
    assert campaign_ids(wallet.event(**payment("p1", "50.00", user_id="a"))) == [None, "tenner"]
    with app.app_context():
        stored = db.session.scalar(select(ProgramState.program_id))
        db.session.rollback()
    assert len(stored) == 32
    assert redis_client.get(f"{redis_prefix}:owner") == stored.encode()
