"""Per-device limits and the risk policy's velocity caps under concurrency, on PostgreSQL
with campaign counters in the database and in Redis: several processes of several threads
post payments from many users on a few devices at once, and what the ledger holds
afterwards is exact (a device's lock serialises its events as a user's does the user's)."""
from __future__ import annotations

import json
import multiprocessing
from collections import Counter

import pytest

from conftest import make_redis_settings, make_settings
from test_risk_caps import apply_yaml, rows
from wallet import OPEN_RANGE, new_wallet_client, payment

PROCESSES = 4
THREADS = 8
DAY = "2026-06-15T12:00:00+08:00"
NEXT_DAY = "2026-06-16T12:00:00+08:00"


@pytest.fixture(params=["database-counters", "redis-counters"])
def settings(request, postgres_url):
    if request.param == "database-counters":
        return make_settings(postgres_url)
    return make_redis_settings(postgres_url, request.getfixturevalue("redis_prefix"))


def run_worker(settings, key_id, secret, bodies, threads, barrier, results):
    """One process of the race: its own app (own pools), `threads` wallets at once."""
    from concurrent.futures import ThreadPoolExecutor

    from promo_engine.app import create_app
    from wallet import WalletClient

    app = create_app(settings)
    with app.app_context():
        app.extensions["promo"].engine()  # compiled before the barrier, not in the race
    wallets = [WalletClient(app.test_client(), key_id, secret) for _ in range(threads)]

    def send(index_body):
        index, body = index_body
        response = wallets[index % threads].post("/v1/events", json.dumps(body))
        return body, response.status_code, response.get_data(as_text=True)

    barrier.wait(timeout=60)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        results.put(list(pool.map(send, enumerate(bodies))))
    with app.app_context():
        from promo_engine.ledger.extensions import db
        db.engine.dispose()
    app.extensions["promo"].close()


def fire(settings, wallet, bodies: list[dict]) -> list[tuple[dict, list]]:
    """Every body sent once, from PROCESSES x THREADS wallets released together; each body
    with the campaign ids of the rewards it got."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    results = context.Queue()
    workers = [context.Process(target=run_worker, args=(
        settings, wallet.key_id, wallet.secret, bodies[i::PROCESSES], THREADS, barrier,
        results)) for i in range(PROCESSES)]
    for worker in workers:
        worker.start()
    collected = []
    for _ in workers:
        collected.extend(results.get(timeout=300))
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    answered = []
    for body, status, text in collected:
        assert status == 201, text
        answered.append((body, [r["campaign_id"] for r in json.loads(text)["rewards"]]))
    assert len(answered) == len(bodies)
    return answered


@pytest.fixture
def program(app, tmp_path):
    def install(yaml_text: str):
        apply_yaml(app, yaml_text, tmp_path)
        return new_wallet_client(app)
    return install


def granted(answered, campaign_id, key) -> Counter:
    """How many events got the campaign's reward, by key(body)."""
    return Counter(key(body) for body, campaigns in answered if campaign_id in campaigns)


@pytest.mark.slow
def test_device_limits_hold_exactly_across_processes(program, app, settings):
    wallet = program(f"""
id: ever
type: holiday_discount
{OPEN_RANGE}limits: {{per_device: 3}}
params: {{amount_off: "1.00"}}
---
id: daily
type: holiday_discount
timezone: Asia/Shanghai
{OPEN_RANGE}limits: {{per_device_daily: 2}}
params: {{amount_off: "2.00"}}
""")
    # 4 devices x 12 users, half of them paying one day and half the next; 8 more users
    # without a device, who are neither limited nor counted.
    bodies = [payment(f"p{d}-{n}", "50.00", user_id=f"u{d}-{n}", device_id=f"d{d}",
                      at=DAY if n % 2 else NEXT_DAY) for d in range(4) for n in range(12)]
    bodies += [payment(f"q{n}", "50.00", user_id=f"v{n}") for n in range(8)]
    answered = fire(settings, wallet, bodies)
    device = lambda body: body.get("device_id")  # noqa: E731
    assert granted(answered, "ever", device) == {"d0": 3, "d1": 3, "d2": 3, "d3": 3, None: 8}
    assert granted(answered, "daily", lambda b: (device(b), b["occurred_at"])) == {
        **{(f"d{d}", at): 2 for d in range(4) for at in (DAY, NEXT_DAY)},
        (None, DAY): 8}
    # the ledger agrees with the answers, and the counters with the ledger
    assert rows(app, "SELECT e.device_id, r.campaign_id, count(*) FROM rewards r "
                     "JOIN events e ON e.id = r.event_pk WHERE r.campaign_id IS NOT NULL "
                     "AND e.device_id IS NOT NULL GROUP BY e.device_id, r.campaign_id "
                     "ORDER BY e.device_id, r.campaign_id") == [
        (f"d{d}", campaign, n) for d in range(4) for campaign, n in (("daily", 4), ("ever", 3))]
    assert rows(app, "SELECT device_id, campaign_id, uses FROM device_campaign_usage "
                     "ORDER BY device_id, campaign_id") == [
        (f"d{d}", campaign, n) for d in range(4) for campaign, n in (("daily", 4), ("ever", 3))]
    assert rows(app, "SELECT device_id, CAST(day AS TEXT), uses FROM device_campaign_daily_usage "
                     "WHERE campaign_id = 'daily' ORDER BY device_id, day") == [
        (f"d{d}", day, 2) for d in range(4) for day in ("2026-06-15", "2026-06-16")]


@pytest.mark.slow
def test_velocity_caps_hold_exactly_across_processes(program, app, settings):
    wallet = program(f"""
id: tenner
type: holiday_discount
{OPEN_RANGE}params: {{amount_off: "10.00"}}
---
risk_policy:
  per_user_daily: {{rewarded_events: 3}}
  per_device_daily: {{rewarded_events: 5, users: 4}}
""")
    # 6 users paying 8 times each without a device: 3 rewarded each. 4 devices with 10
    # users each, one payment per user: 4 users rewarded per device. One device where 2
    # users pay 4 times each: 5 rewarded events there (each user at most 3).
    bodies = [payment(f"u{u}-{n}", "50.00", user_id=f"u{u}") for u in range(6) for n in range(8)]
    bodies += [payment(f"d{d}-{n}", "50.00", user_id=f"w{d}-{n}", device_id=f"d{d}")
               for d in range(4) for n in range(10)]
    bodies += [payment(f"s{u}-{n}", "50.00", user_id=f"s{u}", device_id="shared")
               for u in range(2) for n in range(4)]
    answered = fire(settings, wallet, bodies)
    by_user = granted(answered, "tenner", lambda body: body["user_id"])
    assert {u: by_user[f"u{u}"] for u in range(6)} == {u: 3 for u in range(6)}
    by_device = granted(answered, "tenner", lambda body: body.get("device_id"))
    assert by_device == {None: 18, "d0": 4, "d1": 4, "d2": 4, "d3": 4, "shared": 5}
    assert sorted([by_user["s0"], by_user["s1"]]) == [2, 3]  # 5 in all, at most 3 each
    # every event was answered with base points; the counters match the rewards
    assert all(campaigns[0] is None for _, campaigns in answered)
    assert rows(app, "SELECT subject, rewarded_events, reward_minor FROM risk_counters "
                     "WHERE subject LIKE 'device:%' ORDER BY subject") == [
        ("device:d0", 4, 4000), ("device:d1", 4, 4000), ("device:d2", 4, 4000),
        ("device:d3", 4, 4000), ("device:shared", 5, 5000)]
    assert rows(app, "SELECT device_id, count(*) FROM device_day_users GROUP BY device_id "
                     "ORDER BY device_id") == [
        ("d0", 4), ("d1", 4), ("d2", 4), ("d3", 4), ("shared", 2)]
    assert rows(app, "SELECT count(*) FROM rewards WHERE campaign_id = 'tenner'") == [(39,)]


@pytest.mark.slow
def test_the_user_daily_amount_cap_holds_exactly_across_processes(program, app, settings):
    wallet = program(f"""
id: tenner
type: holiday_discount
{OPEN_RANGE}params: {{amount_off: "10.00"}}
---
risk_policy:
  per_user_daily: {{reward_amount: "25.00"}}
""")
    # 8 users paying 6 times each, from 2 devices: 20.00 each fits, a third 10.00 does not.
    bodies = [payment(f"u{u}-{n}", "50.00", user_id=f"u{u}", device_id=f"d{n % 2}")
              for u in range(8) for n in range(6)]
    answered = fire(settings, wallet, bodies)
    assert granted(answered, "tenner", lambda body: body["user_id"]) == \
        {f"u{u}": 2 for u in range(8)}
    assert rows(app, "SELECT subject, rewarded_events, reward_minor FROM risk_counters "
                     "WHERE subject LIKE 'user:%' AND period = '2026-06-15' "
                     "ORDER BY subject") == [(f"user:u{u}", 2, 2000) for u in range(8)]
    assert rows(app, "SELECT sum(amount_minor) FROM rewards WHERE campaign_id = 'tenner'") == \
        [(16000,)]
