"""Per-device limits and the denylist through POST /v1/events, with counters in the database
and in Redis, on SQLite and PostgreSQL: `limits.per_device` and `per_device_daily` count a
campaign's rewards on a device whoever the user, an event without a device_id is neither
counted nor limited, a full refund frees a use; a denied user or device earns base points
only."""
from __future__ import annotations

import pytest

from wallet import OPEN_RANGE, new_wallet_client, payment, refund
from test_risk_caps import DAY, apply_yaml, campaigns_of, rows


@pytest.fixture
def settings(counters_settings):
    return counters_settings


@pytest.fixture
def program(app, tmp_path):
    def install(yaml_text: str):
        apply_yaml(app, yaml_text, tmp_path)
        return new_wallet_client(app)
    return install


def limited(limits: str) -> str:
    return f"""
id: once
type: holiday_discount
timezone: Asia/Shanghai
{OPEN_RANGE}limits: {{{limits}}}
params: {{amount_off: "1.00"}}
"""


def test_per_device_counts_every_user_of_the_device(program, app):
    wallet = program(limited("per_device: 2"))

    def pay(event_id, user_id, **extra):
        return campaigns_of(wallet.event(**payment(event_id, "10.00", user_id=user_id, **extra)))
    assert pay("p1", "a", device_id="d_1") == [None, "once"]
    assert pay("p2", "b", device_id="d_1") == [None, "once"]
    assert pay("p3", "c", device_id="d_1") == [None]  # the device's two are used
    assert pay("p4", "c", device_id="d_2") == [None, "once"]
    assert pay("p5", "c") == [None, "once"]  # without a device: not limited ...
    assert pay("p6", "d") == [None, "once"]
    assert pay("p7", "e", device_id="d_2") == [None, "once"]  # ... nor counted
    assert rows(app, "SELECT device_id, campaign_id, uses FROM device_campaign_usage "
                     "ORDER BY device_id") == [("d_1", "once", 2), ("d_2", "once", 2)]
    assert rows(app, "SELECT device_id, CAST(day AS TEXT), uses "
                     "FROM device_campaign_daily_usage ORDER BY device_id") == [
        ("d_1", "2026-06-15", 2), ("d_2", "2026-06-15", 2)]
    assert rows(app, "SELECT device_id FROM devices ORDER BY device_id") == [("d_1",), ("d_2",)]


def test_per_device_daily_follows_the_campaign_timezone(program):
    wallet = program(limited("per_device_daily: 1"))

    def pay(event_id, user_id, at):
        return campaigns_of(wallet.event(**payment(event_id, "10.00", user_id=user_id,
                                                   device_id="d_1", at=at)))
    # 23:30 and 23:59 Shanghai time are the same local day; 00:10 is the next.
    assert pay("p1", "a", "2026-06-15T23:30:00+08:00") == [None, "once"]
    assert pay("p2", "b", "2026-06-15T15:59:00Z") == [None]
    assert pay("p3", "b", "2026-06-15T16:10:00Z") == [None, "once"]


def test_a_full_refund_frees_the_device_use_and_a_partial_one_does_not(program, app):
    wallet = program(limited("per_device: 1"))
    assert campaigns_of(wallet.event(**payment("p1", "10.00", user_id="a",
                                               device_id="d_1"))) == [None, "once"]
    assert campaigns_of(wallet.event(**payment("p2", "10.00", user_id="b",
                                               device_id="d_1"))) == [None]
    # a refund names no device: the payment's is freed
    assert wallet.event(**refund("r1", "p1", "4.00", user_id="a")).status_code == 201
    assert campaigns_of(wallet.event(**payment("p3", "10.00", user_id="b",
                                               device_id="d_1"))) == [None]
    assert wallet.event(**refund("r2", "p1", "6.00", user_id="a")).status_code == 201
    assert rows(app, "SELECT uses FROM device_campaign_usage") == [(0,)]
    assert campaigns_of(wallet.event(**payment("p4", "10.00", user_id="b",
                                               device_id="d_1"))) == [None, "once"]
    assert campaigns_of(wallet.event(**payment("p5", "10.00", user_id="c",
                                               device_id="d_1"))) == [None]


def test_a_payment_with_points_counts_and_is_limited_on_its_device(program, app):
    wallet = program(limited("per_device: 1"))
    assert campaigns_of(wallet.event(**payment("p1", "100.00", user_id="a"))) == [None, "once"]
    paid = wallet.event(**payment("p2", "50.00", user_id="a", device_id="d_1",
                                  redeem_points=10))
    assert [r["campaign_id"] for r in paid.get_json()["rewards"]][-1] == "once"
    assert campaigns_of(wallet.event(**payment("p3", "10.00", user_id="b",
                                               device_id="d_1"))) == [None]
    assert rows(app, "SELECT event_id, device_id FROM events ORDER BY event_id") == [
        ("p1", None), ("p2", "d_1"), ("p3", "d_1")]
    assert rows(app, "SELECT device_id, uses FROM device_campaign_usage") == [("d_1", 1)]


def deny(app, kind: str, value: str, *, remove: bool = False) -> None:
    from promo_engine.ledger import denylist
    from promo_engine.ledger.extensions import db
    with app.app_context():
        if remove:
            denylist.remove(db.session, kind, value, actor="risk@bank")
        else:
            denylist.add(db.session, kind, value, reason="reward hunting", actor="risk@bank")
        db.session.commit()
        denylist.directory.invalidate()  # this process changed it: read at the next event


EXCHANGE = f"""
---
id: mall-voucher
type: points_exchange
{OPEN_RANGE}params: {{cost_points: 5, cashback: "1.00"}}
"""


def test_a_denied_user_or_device_earns_base_points_only(program, app):
    wallet = program(limited("per_user: 100") + EXCHANGE)
    assert campaigns_of(wallet.event(**payment("p1", "10.00", user_id="a"))) == [None, "once"]
    deny(app, "user", "a")
    deny(app, "device", "d_bad")
    answer = wallet.event(**payment("p2", "10.00", user_id="a")).get_json()
    assert [r["campaign_id"] for r in answer["rewards"]] == [None]
    assert answer["rewards"][0]["points"] > 0
    assert campaigns_of(wallet.event(**payment("p3", "10.00", user_id="b",
                                               device_id="d_bad"))) == [None]
    assert campaigns_of(wallet.event(**payment("p4", "10.00", user_id="b",
                                               device_id="d_ok"))) == [None, "once"]
    # an exchange is refused as an unavailable offer; nothing is written
    refused = wallet.event(event_id="x1", type="redemption", user_id="a", occurred_at=DAY,
                           campaign_id="mall-voucher")
    assert refused.status_code == 422
    assert refused.get_json()["error"]["code"] == "offer_unavailable"
    assert refused.get_json()["error"]["message"] == \
        "the user or the device is on the denylist"
    assert rows(app, "SELECT count(*) FROM events WHERE event_id = 'x1'") == [(0,)]
    # nothing counted for the events it refused
    assert rows(app, "SELECT subject, rewarded_events FROM risk_counters "
                     "WHERE period = '2026-06-15' ORDER BY subject") == [
        ("device:d_ok", 1), ("user:a", 1), ("user:b", 1)]
    deny(app, "user", "a", remove=True)
    assert campaigns_of(wallet.event(**payment("p5", "10.00", user_id="a"))) == [None, "once"]
