"""Exactly-once events and exact limits under concurrency: several processes, each with
several threads, against the same SQLite file or PostgreSQL database."""
from __future__ import annotations

import json
import multiprocessing

import pytest
from sqlalchemy import func, select

from concurrent_wallets import run_worker
from wallet import OPEN_RANGE, install_campaigns, new_wallet_client, payment

PROCESSES = 4
THREADS = 8


def fire(app, wallet, bodies: list[dict]) -> list[tuple[int, str]]:
    """Send the bodies from PROCESSES processes x THREADS threads, all released together."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    results = context.Queue()
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    shares = [bodies[i::PROCESSES] for i in range(PROCESSES)]
    workers = [context.Process(target=run_worker, args=(url, wallet.key_id, wallet.secret, share,
                                                        THREADS, barrier, results))
               for share in shares]
    for worker in workers:
        worker.start()
    collected = []
    for _ in workers:
        collected.extend(results.get(timeout=240))
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    return collected


def count(app, statement):
    from promo_engine.ledger.extensions import db
    with app.app_context():
        return db.session.execute(statement).scalar_one()


@pytest.fixture
def setup(app, tmp_path):
    def _setup(yaml_text):
        install_campaigns(app, yaml_text, tmp_path)
        return new_wallet_client(app)
    return _setup


@pytest.mark.slow
def test_fifty_copies_of_one_event_give_one_set_of_rewards(app, setup):
    from promo_engine.ledger.models import EventRecord, RewardRecord
    wallet = setup(f"""
id: triple
type: points_multiplier
{OPEN_RANGE}params: {{multiplier: 3}}
""")
    results = fire(app, wallet, [payment("evt_same", "100.00")] * 50)
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] * 49 + [201]
    assert len({body for _, body in results}) == 1
    assert json.loads(results[0][1])["points_balance"] == 300
    assert count(app, select(func.count()).select_from(EventRecord)) == 1
    assert count(app, select(func.count()).select_from(RewardRecord)) == 2


@pytest.mark.slow
def test_forty_payments_against_a_budget_for_ten_give_exactly_ten(app, setup):
    from promo_engine.ledger.models import CampaignUsage, RewardRecord
    wallet = setup(f"""
id: tenner
type: holiday_discount
{OPEN_RANGE}budget: {{amount: "100.00"}}
params: {{amount_off: "10.00"}}
""")
    bodies = [payment(f"p{n}", "50.00", user_id=f"u{n}") for n in range(40)]
    results = fire(app, wallet, bodies)
    assert sorted(status for status, _ in results) == [201] * 40
    granted = [r for _, body in results for r in json.loads(body)["rewards"]
               if r["campaign_id"] == "tenner"]
    assert len(granted) == 10
    assert count(app, select(func.count()).select_from(RewardRecord)
                 .where(RewardRecord.campaign_id == "tenner")) == 10
    assert count(app, select(CampaignUsage.spent).where(CampaignUsage.campaign_id == "tenner")) == 10000


@pytest.mark.slow
def test_per_user_limit_holds_for_one_user_paying_concurrently(app, setup):
    wallet = setup(f"""
id: thrice
type: holiday_discount
{OPEN_RANGE}limits: {{per_user: 3, per_user_daily: 3}}
params: {{amount_off: "1.00"}}
""")
    bodies = [payment(f"p{n}", "10.00", user_id="same-user") for n in range(24)]
    results = fire(app, wallet, bodies)
    granted = [r for _, body in results for r in json.loads(body)["rewards"]
               if r["campaign_id"] == "thrice"]
    assert len(granted) == 3
    balances = sorted(json.loads(body)["points_balance"] for _, body in results)
    assert balances == list(range(10, 250, 10))  # each payment saw the one before it


@pytest.mark.slow
def test_max_redemptions_hold_across_processes(app, setup):
    wallet = setup(f"""
id: first-seven
type: holiday_discount
{OPEN_RANGE}limits: {{max_redemptions: 7}}
params: {{amount_off: "2.00"}}
""")
    bodies = [payment(f"p{n}", "10.00", user_id=f"u{n}") for n in range(32)]
    results = fire(app, wallet, bodies)
    granted = [r for _, body in results for r in json.loads(body)["rewards"]
               if r["campaign_id"] == "first-seven"]
    assert len(granted) == 7
