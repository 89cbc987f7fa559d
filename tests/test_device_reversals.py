"""Refunds and cancels give a device its uses back as they give a user's: once a payment is
refunded in full, or a redemption cancelled, its campaign grants stop counting against
`limits.per_device` and `per_device_daily` of the device the ORIGINAL event named (a refund
may name another device, or none: its own device_id is only stored). A partial refund
frees nothing. With counters in the database and in Redis, on SQLite and PostgreSQL.
"""
from __future__ import annotations

import pytest
from sqlalchemy import text

from conftest import reused_schema_url
from wallet import OPEN_RANGE, install_campaigns, new_wallet_client, payment, refund

DAY = "2026-06-15T12:00:00+08:00"
LATER = "2026-06-15T14:00:00+08:00"
NEXT_DAY = "2026-06-16T12:00:00+08:00"

CAMPAIGNS = f"""
id: five-off
type: holiday_discount
merchants: [m_100]
{OPEN_RANGE}limits: {{per_device: 1}}
params: {{amount_off: "5.00"}}
---
id: daily-double
type: points_multiplier
merchants: [m_100]
{OPEN_RANGE}limits: {{per_device_daily: 1}}
params: {{multiplier: 2}}
---
id: mall
type: points_exchange
{OPEN_RANGE}limits: {{per_device: 1}}
params: {{cost_points: 50, cashback: "3.00"}}
"""
BASE = {"campaign_id": None, "kind": "points", "points": 100}
DOUBLE = {"campaign_id": "daily-double", "kind": "points", "points": 100}
FIVE_OFF = {"campaign_id": "five-off", "kind": "discount", "amount": "5.00", "currency": "CNY"}
ALL_PAYMENT_REWARDS = [BASE, DOUBLE, FIVE_OFF]  # same priority: by campaign id


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    return reused_schema_url(request, tmp_path)


@pytest.fixture
def settings(counters_settings):
    """The device's counts are the database's in both modes; the campaigns' counters are
    in the database, then in Redis."""
    return counters_settings


@pytest.fixture
def wallet(app, tmp_path):
    install_campaigns(app, CAMPAIGNS, tmp_path)
    return new_wallet_client(app)


def rows(app, sql: str) -> list[tuple]:
    from promo_engine.ledger.extensions import db
    with app.app_context():
        result = [tuple(row) for row in db.session.execute(text(sql))]
        db.session.rollback()
        return result


def device_uses(app) -> list[tuple]:
    return rows(app, "SELECT device_id, campaign_id, uses FROM device_campaign_usage "
                     "ORDER BY device_id, campaign_id")


def device_daily_uses(app) -> list[tuple]:
    return rows(app, "SELECT device_id, campaign_id, CAST(day AS TEXT), uses "
                     "FROM device_campaign_daily_usage ORDER BY device_id, campaign_id, day")


def rewards(response) -> list[dict]:
    assert response.status_code == 201, response.get_json()
    return [{k: v for k, v in r.items() if k not in ("reward_id", "reverses")}
            for r in response.get_json()["rewards"]]


def pay(wallet, event_id, user_id, at=DAY, **extra):
    return rewards(wallet.event(**payment(event_id, "100.00", user_id=user_id, at=at, **extra)))


def test_a_full_refund_frees_the_payments_device_a_partial_one_does_not(app, wallet):
    assert pay(wallet, "p1", "u_1", device_id="d_1") == ALL_PAYMENT_REWARDS
    # another user on the same device: both campaigns' device limits are used
    assert pay(wallet, "p2", "u_2", device_id="d_1") == [BASE]
    assert device_uses(app) == [("d_1", "daily-double", 1), ("d_1", "five-off", 1)]

    # a partial refund (naming another device) reverses in proportion, frees nothing
    partial = wallet.event(**refund("r1", "p1", "40.00"), device_id="d_9")
    assert rewards(partial) == [
        {"campaign_id": None, "kind": "points", "points": -40},
        {"campaign_id": "daily-double", "kind": "points", "points": -40},
        {"campaign_id": "five-off", "kind": "discount", "amount": "-2.00", "currency": "CNY"},
    ]
    assert device_uses(app) == [("d_1", "daily-double", 1), ("d_1", "five-off", 1)]
    assert device_daily_uses(app) == [("d_1", "daily-double", "2026-06-15", 1),
                                      ("d_1", "five-off", "2026-06-15", 1)]
    assert pay(wallet, "p3", "u_3", at=LATER, device_id="d_1") == [BASE]

    # the rest refunded: the payment's device (d_1, not the refund's) gets both uses back,
    # its day's use included
    full = wallet.event(**refund("r2", "p1", "60.00"))
    assert rewards(full) == [
        {"campaign_id": None, "kind": "points", "points": -60},
        {"campaign_id": "daily-double", "kind": "points", "points": -60},
        {"campaign_id": "five-off", "kind": "discount", "amount": "-3.00", "currency": "CNY"},
    ]
    assert device_uses(app) == [("d_1", "daily-double", 0), ("d_1", "five-off", 0)]
    assert device_daily_uses(app) == [("d_1", "daily-double", "2026-06-15", 0),
                                      ("d_1", "five-off", "2026-06-15", 0)]
    assert pay(wallet, "p4", "u_2", at=LATER, device_id="d_1") == ALL_PAYMENT_REWARDS
    assert device_uses(app) == [("d_1", "daily-double", 1), ("d_1", "five-off", 1)]

    # each refund keeps the device it named
    assert rows(app, "SELECT event_id, type, device_id FROM events "
                     "WHERE type = 'refund' ORDER BY event_id") == [
        ("r1", "refund", "d_9"), ("r2", "refund", None)]
    # the user's uses came back as well (the refund frees every limit)
    assert rows(app, "SELECT user_id, campaign_id, uses FROM user_campaign_usage "
                     "WHERE user_id = 'u_1' ORDER BY campaign_id") == [
        ("u_1", "daily-double", 0), ("u_1", "five-off", 0)]


def test_a_full_refund_of_a_payment_without_a_device_frees_no_device(app, wallet):
    assert pay(wallet, "p1", "u_1") == ALL_PAYMENT_REWARDS
    assert pay(wallet, "p2", "u_2", device_id="d_1") == ALL_PAYMENT_REWARDS
    # a refund naming d_1 of the payment without a device: d_1's uses stay
    rewards(wallet.event(**refund("r1", "p1", "100.00"), device_id="d_1"))
    assert device_uses(app) == [("d_1", "daily-double", 1), ("d_1", "five-off", 1)]
    assert pay(wallet, "p3", "u_3", at=LATER, device_id="d_1") == [BASE]


def test_the_daily_use_freed_is_the_payments_day(app, wallet):
    assert pay(wallet, "p1", "u_1", device_id="d_1") == ALL_PAYMENT_REWARDS
    # per_device used; per_device_daily has a new day
    assert pay(wallet, "p2", "u_2", at=NEXT_DAY, device_id="d_1") == [BASE, DOUBLE]
    rewards(wallet.event(**refund("r1", "p1", "100.00")))
    assert device_daily_uses(app) == [("d_1", "daily-double", "2026-06-15", 0),
                                      ("d_1", "daily-double", "2026-06-16", 1),
                                      ("d_1", "five-off", "2026-06-15", 0)]
    assert pay(wallet, "p3", "u_3", at=NEXT_DAY, device_id="d_1") == [BASE, FIVE_OFF]
    assert pay(wallet, "p4", "u_3", at=LATER, device_id="d_1") == [BASE, DOUBLE]


def redeem(wallet, event_id, user_id, **extra):
    return wallet.event(event_id=event_id, type="redemption", user_id=user_id,
                        occurred_at=LATER, campaign_id="mall", **extra)


def cancel(wallet, event_id, original, user_id, **extra):
    return wallet.event(event_id=event_id, type="cancel", user_id=user_id,
                        occurred_at=NEXT_DAY, original_event_id=original, **extra)


def test_a_cancel_frees_the_redemptions_device(app, wallet):
    for user_id in ("u_1", "u_2"):  # points to spend, earned without a device
        pay(wallet, f"p-{user_id}", user_id)
    assert rewards(redeem(wallet, "x1", "u_1", device_id="d_1")) == [
        {"campaign_id": "mall", "kind": "points", "points": -50},
        {"campaign_id": "mall", "kind": "cashback", "amount": "3.00", "currency": "CNY"},
    ]
    refused = redeem(wallet, "x2", "u_2", device_id="d_1")
    assert refused.status_code == 422
    assert refused.get_json()["error"]["code"] == "offer_unavailable"
    assert device_uses(app) == [("d_1", "mall", 1)]

    cancelled = cancel(wallet, "c1", "x1", "u_1", device_id="d_7")
    assert rewards(cancelled) == [
        {"campaign_id": "mall", "kind": "points", "points": 50},
        {"campaign_id": "mall", "kind": "cashback", "amount": "-3.00", "currency": "CNY"},
    ]
    assert device_uses(app) == [("d_1", "mall", 0)]
    assert rows(app, "SELECT device_id FROM events WHERE event_id = 'c1'") == [("d_7",)]
    assert rewards(redeem(wallet, "x3", "u_2", device_id="d_1")) == [
        {"campaign_id": "mall", "kind": "points", "points": -50},
        {"campaign_id": "mall", "kind": "cashback", "amount": "3.00", "currency": "CNY"},
    ]
    assert device_uses(app) == [("d_1", "mall", 1)]
    assert rows(app, "SELECT event_id, device_id FROM events WHERE type = 'redemption' "
                     "ORDER BY event_id") == [("x1", "d_1"), ("x3", "d_1")]


def test_refunds_and_cancels_never_lower_the_risk_counters(app, wallet):
    """What the risk policy counts is what was rewarded: a refund takes none of it back."""
    pay(wallet, "p1", "u_1", device_id="d_1")
    before = rows(app, "SELECT subject, period, rewarded_events, reward_minor "
                       "FROM risk_counters ORDER BY subject, period")
    assert before == [("device:d_1", "2026-06-15", 1, 500), ("user:u_1", "2026-06", 1, 500),
                      ("user:u_1", "2026-06-15", 1, 500)]
    rewards(wallet.event(**refund("r1", "p1", "100.00")))
    assert rows(app, "SELECT subject, period, rewarded_events, reward_minor "
                     "FROM risk_counters ORDER BY subject, period") == before


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_full_refunds_racing_payments_on_the_device_keep_its_uses_exact(app, settings,
                                                                         tmp_path):
    """Full refunds of a device's rewarded payments race other users' payments on it, from
    several processes: every event is answered (the refund takes the device's lock before
    any usage row, as payments do, so none deadlocks), and the device's uses are exactly
    its rewards not fully refunded."""
    from test_abuse_concurrency import fire
    install_campaigns(app, f"""
id: once
type: holiday_discount
{OPEN_RANGE}limits: {{per_device: 4, per_device_daily: 4}}
params: {{amount_off: "1.00"}}
""", tmp_path, name="race.yaml")
    wallet = new_wallet_client(app)
    for n in range(4):
        assert [r["campaign_id"] for r in rewards(wallet.event(**payment(
            f"p-a{n}", "10.00", user_id=f"a{n}", device_id="d_1")))] == [None, "once"]
    bodies = [refund(f"r-a{n}", f"p-a{n}", "10.00", user_id=f"a{n}") for n in range(4)]
    bodies += [payment(f"p-b{n}", "10.00", user_id=f"b{n}", device_id="d_1", at=LATER)
               for n in range(12)]
    answered = fire(settings, wallet, bodies)
    won = sorted(body["user_id"] for body, campaigns in answered
                 if body["type"] == "payment" and "once" in campaigns)
    assert len(won) <= 4  # never more than the device's limit at any moment
    not_refunded = rows(app, "SELECT e.user_id FROM rewards r JOIN events e "
                             "ON e.id = r.event_pk WHERE r.campaign_id = 'once' "
                             "AND r.reverses_id IS NULL AND e.device_id = 'd_1' "
                             "AND e.refunded_minor < e.amount_minor ORDER BY e.user_id")
    assert [user for user, in not_refunded] == won
    assert device_uses(app) == [("d_1", "once", len(won))]
    assert device_daily_uses(app) == [("d_1", "once", "2026-06-15", len(won))]
