"""The program's risk policy through POST /v1/events: its caps across campaigns per user and
per device and day, the distinct users of a device, the monthly cashback cap (AML) and the
rewards it holds for review; with counters in the database and in Redis, on SQLite and
PostgreSQL. A reward that does not fit a money cap is skipped, never cut down; base points
are always earned."""
from __future__ import annotations

import pytest
from sqlalchemy import text

from wallet import OPEN_RANGE, activation, new_wallet_client, payment
from test_webhook_outbox import add_endpoint, deliveries

DAY = "2026-06-15T12:00:00+08:00"
NEXT_DAY = "2026-06-16T12:00:00+08:00"
NEXT_MONTH = "2026-07-01T12:00:00+08:00"


@pytest.fixture
def settings(counters_settings):
    """Every rule holds with campaign counters in the database and in Redis."""
    return counters_settings


def apply_yaml(app, yaml_text: str, tmp_path, name: str = "program.yaml"):
    """Validate and apply campaigns and the risk policy written as YAML, as `campaigns
    apply` does."""
    from promo_engine.campaigns.files import load_paths
    from promo_engine.campaigns.store import apply_campaigns
    from promo_engine.service import promo_service
    path = tmp_path / name
    path.write_text(yaml_text)
    with app.app_context():
        service = promo_service(app)
        loaded = load_paths([path], registry=service.registry,
                            currency=service.settings.currency,
                            default_timezone=service.settings.timezone)
        assert not loaded.problems, [str(p) for p in loaded.problems]
        apply_campaigns(loaded.campaigns, risk_policy=loaded.risk_policy)
        service.invalidate()


def rows(app, sql: str, **params) -> list[tuple]:
    from promo_engine.ledger.extensions import db
    with app.app_context():
        result = [tuple(row) for row in db.session.execute(text(sql), params)]
        db.session.rollback()
        return result


def campaigns_of(response) -> list:
    assert response.status_code == 201, response.get_json()
    return [r["campaign_id"] for r in response.get_json()["rewards"]]


TENNER = f"""
id: tenner
type: holiday_discount
{OPEN_RANGE}params: {{amount_off: "10.00"}}
"""


@pytest.fixture
def program(app, tmp_path):
    def install(yaml_text: str):
        apply_yaml(app, yaml_text, tmp_path)
        return new_wallet_client(app)
    return install


def test_user_daily_rewarded_events(program, app):
    wallet = program(TENNER + """---
risk_policy:
  per_user_daily: {rewarded_events: 2}
""")
    got = [campaigns_of(wallet.event(**payment(f"p{n}", "50.00"))) for n in range(3)]
    assert got == [[None, "tenner"], [None, "tenner"], [None]]  # base points still
    assert campaigns_of(wallet.event(**payment("other", "50.00", user_id="u_2"))) == \
        [None, "tenner"]
    assert campaigns_of(wallet.event(**payment("tomorrow", "50.00", at=NEXT_DAY))) == \
        [None, "tenner"]
    assert rows(app, "SELECT subject, period, rewarded_events, reward_minor, cashback_minor "
                     "FROM risk_counters ORDER BY subject, period") == [
        ("user:u_1", "2026-06", 3, 3000, 0), ("user:u_1", "2026-06-15", 2, 2000, 0),
        ("user:u_1", "2026-06-16", 1, 1000, 0), ("user:u_2", "2026-06", 1, 1000, 0),
        ("user:u_2", "2026-06-15", 1, 1000, 0)]


def test_user_daily_reward_amount_skips_a_reward_that_does_not_fit(program):
    wallet = program(TENNER + """---
risk_policy:
  per_user_daily: {reward_amount: "25.00"}
""")
    assert campaigns_of(wallet.event(**payment("p1", "50.00"))) == [None, "tenner"]
    assert campaigns_of(wallet.event(**payment("p2", "50.00"))) == [None, "tenner"]
    assert campaigns_of(wallet.event(**payment("p3", "50.00"))) == [None]  # 5.00 left: skipped
    small = wallet.event(**payment("p4", "4.00")).get_json()["rewards"]
    assert [(r["campaign_id"], r.get("amount")) for r in small] == [
        (None, None), ("tenner", "4.00")]  # amount_off capped at the payment: 24.00 in all
    assert campaigns_of(wallet.event(**payment("p5", "50.00"))) == [None]
    assert campaigns_of(wallet.event(**payment("p6", "1.00"))) == [None, "tenner"]  # 25.00
    assert campaigns_of(wallet.event(**payment("p7", "1.00"))) == [None]


def test_device_daily_rewarded_events(program, app):
    wallet = program(TENNER + """---
risk_policy:
  per_device_daily: {rewarded_events: 2}
""")
    assert campaigns_of(wallet.event(**payment("p1", "50.00", user_id="a", device_id="d_1"))) \
        == [None, "tenner"]
    assert campaigns_of(wallet.event(**payment("p2", "50.00", user_id="b", device_id="d_1"))) \
        == [None, "tenner"]
    assert campaigns_of(wallet.event(**payment("p3", "50.00", user_id="c", device_id="d_1"))) \
        == [None]
    # another device, no device at all, and the next day are not capped by it
    assert campaigns_of(wallet.event(**payment("p4", "50.00", user_id="c", device_id="d_2"))) \
        == [None, "tenner"]
    assert campaigns_of(wallet.event(**payment("p5", "50.00", user_id="c"))) == [None, "tenner"]
    assert campaigns_of(wallet.event(**payment("p6", "50.00", user_id="c", device_id="d_1",
                                               at=NEXT_DAY))) == [None, "tenner"]
    assert rows(app, "SELECT subject, period, rewarded_events, reward_minor FROM risk_counters "
                     "WHERE subject LIKE 'device:%' ORDER BY subject, period") == [
        ("device:d_1", "2026-06-15", 2, 2000), ("device:d_1", "2026-06-16", 1, 1000),
        ("device:d_2", "2026-06-15", 1, 1000)]
    assert rows(app, "SELECT device_id, CAST(day AS TEXT), user_id FROM device_day_users "
                     "ORDER BY device_id, day, user_id") == [
        ("d_1", "2026-06-15", "a"), ("d_1", "2026-06-15", "b"), ("d_1", "2026-06-16", "c"),
        ("d_2", "2026-06-15", "c")]
    assert rows(app, "SELECT event_id, device_id FROM events ORDER BY event_id") == [
        ("p1", "d_1"), ("p2", "d_1"), ("p3", "d_1"), ("p4", "d_2"), ("p5", None), ("p6", "d_1")]


def test_device_daily_reward_amount(program):
    wallet = program(TENNER + """---
risk_policy:
  per_device_daily: {reward_amount: "15.00"}
""")
    assert campaigns_of(wallet.event(**payment("p1", "50.00", user_id="a", device_id="d_1"))) \
        == [None, "tenner"]
    assert campaigns_of(wallet.event(**payment("p2", "50.00", user_id="b", device_id="d_1"))) \
        == [None]  # 10.00 more would make 20.00: skipped, not cut to 5.00
    assert campaigns_of(wallet.event(**payment("p3", "5.00", user_id="b", device_id="d_1"))) \
        == [None, "tenner"]  # 5.00 off a 5.00 payment: 15.00 in all
    assert campaigns_of(wallet.event(**payment("p4", "50.00", user_id="b"))) == [None, "tenner"]


def test_device_distinct_users_per_day(program):
    wallet = program(TENNER + """---
risk_policy:
  per_device_daily: {users: 2}
""")
    def on_device(event_id, user_id, at=DAY):
        return campaigns_of(wallet.event(**payment(event_id, "50.00", user_id=user_id,
                                                   device_id="d_1", at=at)))
    assert on_device("p1", "a") == [None, "tenner"]
    assert on_device("p2", "b") == [None, "tenner"]
    assert on_device("p3", "c") == [None]  # a third user on the device today
    assert on_device("p4", "a") == [None, "tenner"]  # a user it already rewarded today
    assert on_device("p5", "c", at=NEXT_DAY) == [None, "tenner"]


CASHBACKS = f"""
id: welcome-cash
type: first_activation_bonus
{OPEN_RANGE}params: {{cashback: "12.00"}}
---
id: first-pay-cash
type: first_activation_bonus
{OPEN_RANGE}params: {{on: first_payment, cashback: "10.00"}}
---
id: first-pay-cash-2
type: first_activation_bonus
{OPEN_RANGE}params: {{on: first_payment, cashback: "8.00"}}
priority: -1
---
"""


def test_monthly_cashback_cap_across_campaigns(program, app):
    wallet = program(CASHBACKS + TENNER + """---
risk_policy:
  per_user_monthly: {cashback: "20.00"}
""")
    assert campaigns_of(wallet.event(**activation("a1"))) == ["welcome-cash"]  # 12.00
    # 12.00 + 10.00 passes 20.00: that one is skipped; 8.00 makes exactly 20.00. A
    # discount is not cashback: the cap leaves it be.
    answer = wallet.event(**payment("p1", "50.00"))
    assert sorted(campaigns_of(answer), key=str) == [None, "first-pay-cash-2", "tenner"]
    assert rows(app, "SELECT period, cashback_minor, reward_minor FROM risk_counters "
                     "WHERE subject = 'user:u_1' ORDER BY period") == [
        ("2026-06", 2000, 3000), ("2026-06-15", 2000, 3000)]
    # The next user's month is their own.
    assert campaigns_of(wallet.event(**activation("a2", user_id="u_2"))) == ["welcome-cash"]


def test_cashback_above_the_hold_value_is_held(program, app, tmp_path):
    add_endpoint(app, "we_1")
    wallet = program(f"""
id: big-cash
type: first_activation_bonus
{OPEN_RANGE}params: {{cashback: "150.00"}}
---
id: small-cash
type: first_activation_bonus
{OPEN_RANGE}params: {{on: first_payment, cashback: "100.00"}}
---
risk_policy:
  hold: {{cashback_above: "100.00"}}
""")
    answer = wallet.event(**activation("a1"))
    held = answer.get_json()["rewards"]
    # `held` is a documented extension of the reward shape
    from openapi_core import OpenAPI
    from test_openapi import conforms
    conforms(OpenAPI.from_dict(app.test_client().get("/v1/openapi.json").get_json()), answer,
             request_too=False)
    assert [{k: v for k, v in r.items() if k != "reward_id"} for r in held] == [
        {"campaign_id": "big-cash", "kind": "cashback", "amount": "150.00", "currency": "CNY",
         "held": True}]
    paid = wallet.event(**payment("p1", "50.00")).get_json()["rewards"]
    assert [r.get("held") for r in paid] == [None, None]  # 100.00 is not above 100.00
    assert rows(app, "SELECT r.reward_id, h.status, h.decided_by FROM reward_holds h "
                     "JOIN rewards r ON r.id = h.reward_pk") == [
        (held[0]["reward_id"], "held", None)]
    # the webhook carries the reward as the response shows it
    granted = [body["data"]["reward"] for _, kind, _, body in deliveries(app, "we_1")
               if kind == "reward.granted" and body["data"]["event_id"] == "a1"]
    assert granted == held
    # a replay answers the same
    assert wallet.event(**activation("a1")).get_json()["rewards"] == held


def test_an_exchange_for_cashback_above_the_hold_value_is_held(program, app):
    wallet = program(f"""
id: big-exchange
type: points_exchange
{OPEN_RANGE}params: {{cost_points: 5, cashback: "150.00"}}
---
risk_policy:
  hold: {{cashback_above: "100.00"}}
""")
    assert campaigns_of(wallet.event(**payment("p1", "50.00"))) == [None]  # points to spend
    answer = wallet.event(event_id="x1", type="redemption", user_id="u_1", occurred_at=DAY,
                          campaign_id="big-exchange", device_id="d_1")
    rewards = answer.get_json()["rewards"]
    assert [(r["campaign_id"], r["kind"], r.get("held")) for r in rewards] == [
        ("big-exchange", "points", None), ("big-exchange", "cashback", True)]
    assert rows(app, "SELECT r.reward_id, h.status FROM reward_holds h "
                     "JOIN rewards r ON r.id = h.reward_pk") == [(rewards[1]["reward_id"], "held")]
    assert rows(app, "SELECT subject, rewarded_events, reward_minor, cashback_minor "
                     "FROM risk_counters WHERE period = '2026-06-15' ORDER BY subject") == [
        ("device:d_1", 1, 15000, 15000), ("user:u_1", 1, 15000, 15000)]


def test_the_abuse_statements_are_short_enough_to_be_cached():
    import re

    import psycopg._queries

    from promo_engine.ledger import abuse_counts
    for name in ("PG_LOCK_DEVICE", "PG_DEVICE_USES", "PG_RISK", "PG_WRITE_COUNTS"):
        statement = getattr(abuse_counts, name)
        assert len(statement.encode()) <= psycopg._queries.MAX_CACHED_STATEMENT_LENGTH, name
        assert len(set(re.findall(r"%\((\w+)\)", statement))) <= \
            psycopg._queries.MAX_CACHED_STATEMENT_PARAMS, name


def test_the_policy_days_are_the_programs_timezone(program, app):
    wallet = program(TENNER + """---
risk_policy:
  per_user_daily: {rewarded_events: 1}
""")
    # PROMO_TIMEZONE is Asia/Shanghai: 15:30Z and 15:50Z are 23:30 and 23:50 there, the
    # same day; 16:10Z is the next day
    at = ("2026-06-15T15:30:00Z", "2026-06-15T15:50:00Z", "2026-06-15T16:10:00Z")
    assert [campaigns_of(wallet.event(**payment(f"p{n}", "50.00", at=when)))
            for n, when in enumerate(at)] == [[None, "tenner"], [None], [None, "tenner"]]
    assert rows(app, "SELECT period, rewarded_events FROM risk_counters ORDER BY period") == [
        ("2026-06", 2), ("2026-06-15", 1), ("2026-06-16", 1)]
