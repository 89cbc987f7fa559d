"""The webhooks outbox under concurrency, on PostgreSQL, with campaign counters in the
database and in Redis: payments, refunds and exchanges sent at once from 3 worker processes
of 10 threads each (`concurrent_wallets.WalletPool`). Every reward of every accepted event
has exactly one delivery per endpoint, with the very reward the event answered, and each
budget threshold (80% and 100% of a budget, of a stock) exactly one.
"""
from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone

import pytest

from concurrent_wallets import WalletPool
from conftest import TEST_REDIS_URL, make_settings, reused_schema_url, running_app
from processes import LedgerView
from test_webhook_outbox import add_endpoint
from wallet import OPEN_RANGE, install_campaigns, new_wallet_client, payment, refund

pytestmark = [pytest.mark.slow, pytest.mark.services]

CAMPAIGNS = f"""
id: cash
type: holiday_discount
merchants: [m_100]
{OPEN_RANGE}params: {{amount_off: "1.00"}}
budget: {{amount: "50.50"}}  # stops short: 100% is announced when a reward is refused
---
id: double
type: points_multiplier
{OPEN_RANGE}params: {{multiplier: 2}}
budget: {{points: 2000}}
---
id: stock
type: points_exchange
{OPEN_RANGE}params: {{cost_points: 10, cashback: "0.10"}}
limits: {{max_redemptions: 30}}
"""


@pytest.fixture(scope="module")
def pool():
    pool = WalletPool(3, 10).start()
    yield pool
    pool.close()


@pytest.fixture(params=["postgresql"])
def database_url(request, tmp_path):
    return reused_schema_url(request, tmp_path)


@pytest.fixture(params=["database-counters", "redis-counters"])
def counters(request) -> dict:
    if request.param == "database-counters":
        return {}
    return {"redis_url": TEST_REDIS_URL, "redis_prefix": request.getfixturevalue("redis_prefix")}


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


def test_every_change_is_written_once_and_each_threshold_once(database_url, counters, pool,
                                                              tmp_path):
    settings = dict(database_url=database_url, **counters)
    with running_app(make_settings(**settings)) as app:
        install_campaigns(app, CAMPAIGNS, tmp_path)
        wallet = new_wallet_client(app)
        add_endpoint(app, "we_a")
        add_endpoint(app, "we_b", "campaign.budget_threshold,reward.reversed")
        # 120 payments of 60 users at once: the cash budget (50.50) and the points budget
        # (2,000 = 100 payments' 20) both run out; each event is sent twice.
        payments = [payment(f"p{n}", "20.00", user_id=f"u_{n % 60}", at=now_iso())
                    for n in range(120)]
        answers = pool.fire(settings, wallet.key_id, wallet.secret, payments + payments)
        assert {status for status, _ in answers} <= {200, 201}, answers[:3]
        # Then refunds and exchanges of the stock (30) at once: 60 users try.
        burst = [refund(f"r{n}", f"p{n}", "20.00", user_id=f"u_{n % 60}", at=now_iso())
                 for n in range(0, 120, 4)]
        burst += [{"event_id": f"x{n}", "type": "redemption", "user_id": f"u_{n}",
                   "occurred_at": now_iso(), "campaign_id": "stock"} for n in range(60)]
        more = pool.fire(settings, wallet.key_id, wallet.secret, burst)
        assert {status for status, _ in more} <= {201, 422}, more[:3]

    ledger = LedgerView(database_url)
    try:
        rewards = {reward_id: (event_id, body) for reward_id, event_id, body in ledger.rows(
            "SELECT r.reward_id, e.event_id, e.response FROM rewards r "
            "JOIN events e ON e.id = r.event_pk")}
        deliveries = ledger.rows("SELECT endpoint_id, type, message_id, payload "
                                 "FROM webhook_deliveries ORDER BY id")
        thresholds = ledger.rows("SELECT campaign_id, threshold, measure "
                                 "FROM campaign_thresholds ORDER BY campaign_id, threshold")
    finally:
        ledger.close()

    # Each reward row once per endpoint that wants it, with the reward as answered.
    answered = {}
    for event_id, response in {v for v in rewards.values()}:
        for reward in json.loads(response)["rewards"]:
            answered[reward["reward_id"]] = (event_id, reward)
    assert set(answered) == set(rewards)
    seen = Counter()
    for endpoint_id, kind, message_id, payload in deliveries:
        body = json.loads(payload)
        assert body["id"] == message_id and body["type"] == kind
        if kind.startswith("reward."):
            reward = body["data"]["reward"]
            assert answered[reward["reward_id"]] == (body["data"]["event_id"], reward)
            assert kind == ("reward.reversed" if "reverses" in reward else "reward.granted")
            seen[(endpoint_id, reward["reward_id"])] += 1
    reversals = {rid for rid, (_, reward) in answered.items() if "reverses" in reward}
    expected = Counter({("we_a", rid): 1 for rid in answered})
    expected.update({("we_b", rid): 1 for rid in reversals})
    assert seen == expected
    assert len(reversals) > 0

    # Each threshold once, announced once to each endpoint.
    assert [tuple(row) for row in thresholds] == [
        ("cash", "0.8", "budget"), ("cash", "1.0", "budget"),
        ("double", "0.8", "budget"), ("double", "1.0", "budget"),
        ("stock", "0.8", "max_redemptions"), ("stock", "1.0", "max_redemptions")]
    announced = Counter((endpoint_id, json.loads(payload)["data"]["campaign_id"],
                         json.loads(payload)["data"]["threshold"])
                        for endpoint_id, kind, _, payload in deliveries
                        if kind == "campaign.budget_threshold")
    assert announced == Counter({(e, c, t): 1 for e in ("we_a", "we_b")
                                 for c in ("cash", "double", "stock") for t in (0.8, 1.0)})
