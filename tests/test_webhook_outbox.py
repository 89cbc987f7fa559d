"""The webhooks outbox (contract: "Webhooks"): every change a wallet may push is written as a
delivery row per endpoint in the change's own transaction: rewards granted and reversed
(payments, refunds, redemptions, cancels), vouchers redeemed, points expired (by an event
or the sweep), campaigns opened and closed, and budget thresholds once each. Nothing is
written for a replay, a refused event or a transaction that rolled back, and nothing at all
without endpoints. Sending is `test_webhook_dispatch.py`'s.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import pytest
from sqlalchemy import select, text

from promo_engine.ledger import webhook_outbox
from promo_engine.ledger.api_clients import encrypt_secret
from promo_engine.ledger.extensions import db
from promo_engine.ledger.models import (CampaignThreshold, RewardRecord, WebhookDelivery,
                                        WebhookEndpoint)

from conftest import make_settings, reused_schema_url, running_app
from wallet import (OPEN_RANGE, activation, install_campaigns, new_wallet_client, payment,
                    refund)

CAMPAIGNS = f"""
id: double
type: points_multiplier
{OPEN_RANGE}params: {{multiplier: 2}}
---
id: welcome
type: first_activation_bonus
{OPEN_RANGE}params: {{voucher: {{amount: "20.00", valid_days: 30}}}}
---
id: mall
type: points_exchange
{OPEN_RANGE}params: {{cost_points: 100, cashback: "5.00"}}
"""
PAID = "2026-06-20T12:00:00+08:00"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    return reused_schema_url(request, tmp_path)


def add_endpoint(app, endpoint_id: str, types: str | None = None) -> None:
    with app.app_context():
        db.session.add(WebhookEndpoint(id=endpoint_id, url=f"http://127.0.0.1:9/{endpoint_id}",
                                       event_types=types, secret_ciphertext=encrypt_secret(
                                           "whsec_c2VjcmV0", "test-secret-key-0123456789"),
                                       created_at=datetime.now(timezone.utc)))
        db.session.commit()
    webhook_outbox.directory.invalidate()


def deliveries(app, endpoint_id: str | None = None) -> list[tuple[str, str, str, dict]]:
    """(endpoint, type, message id, body) of every delivery written, in order."""
    with app.app_context():
        query = select(WebhookDelivery).order_by(WebhookDelivery.id)
        if endpoint_id is not None:
            query = query.where(WebhookDelivery.endpoint_id == endpoint_id)
        rows = db.session.execute(query).scalars().all()
        result = [(row.endpoint_id, row.type, row.message_id, json.loads(row.payload))
                  for row in rows]
        # Every body in one form, however it was built (in Python, or in SQL by the sweep).
        assert all(json.dumps(body, ensure_ascii=False, separators=(", ", ": ")) == row.payload
                   for (_, _, _, body), row in zip(result, rows))
        assert all(row.status == "pending" and row.attempts == 0 for row in rows)
        db.session.rollback()
    return result


def check_envelope(message_id: str, body: dict, kind: str) -> dict:
    assert set(body) == {"id", "type", "timestamp", "data"}
    assert body["id"] == message_id and body["type"] == kind
    assert re.fullmatch(r"msg_[0-9a-f]{24}", message_id)
    datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00"))
    assert body["timestamp"].endswith("Z")
    return body["data"]


@pytest.fixture
def program(database_url, tmp_path):
    with running_app(make_settings(database_url)) as app:
        install_campaigns(app, CAMPAIGNS, tmp_path)
        yield app, new_wallet_client(app)


def test_without_endpoints_nothing_is_written(program):
    app, wallet = program
    assert wallet.event(**payment("p1", "10.00", at=PAID)).status_code == 201
    assert deliveries(app) == []


def test_each_reward_of_a_payment_is_announced_to_every_endpoint(program):
    app, wallet = program
    add_endpoint(app, "we_all")
    add_endpoint(app, "we_reversals", "reward.reversed")
    response = wallet.event(**payment("p1", "10.00", at=PAID))
    assert response.status_code == 201
    rewards = response.get_json()["rewards"]
    assert [r["points"] for r in rewards] == [10, 10]  # base points, then the multiplier's
    written = deliveries(app)
    assert [(endpoint, kind) for endpoint, kind, _, _ in written] == [
        ("we_all", "reward.granted"), ("we_all", "reward.granted")]
    for (_, kind, message_id, body), reward in zip(written, rewards):
        assert check_envelope(message_id, body, kind) == {
            "event_id": "p1", "user_id": "u_1", "reward": reward}
    assert len({message_id for _, _, message_id, _ in written}) == 2

    # The replay answers from the first record and writes nothing more.
    assert wallet.event(**payment("p1", "10.00", at=PAID)).status_code == 200
    assert len(deliveries(app)) == 2

    refunded = wallet.event(**refund("r1", "p1", "10.00"))
    assert refunded.status_code == 201
    reversals = refunded.get_json()["rewards"]
    assert [r["points"] for r in reversals] == [-10, -10]
    for endpoint in ("we_all", "we_reversals"):
        mine = deliveries(app, endpoint)[-2:]
        assert [kind for _, kind, _, _ in mine] == ["reward.reversed", "reward.reversed"]
        assert [check_envelope(m, body, kind)["reward"] for _, kind, m, body in mine] == reversals
    # One message, one id, whichever endpoint gets it.
    ids = [m for _, _, m, _ in deliveries(app)[-4:]]
    assert sorted(ids[:2]) == sorted(ids[2:]) or len(set(ids)) == 2


def test_a_voucher_used_on_a_payment_is_redeemed(program):
    app, wallet = program
    voucher = wallet.event(**activation("a1", at=PAID)).get_json()["rewards"][0]["voucher"]
    add_endpoint(app, "we_vouchers", "voucher.redeemed")
    paid = wallet.event(**payment("p1", "100.00", at=PAID, vouchers=[voucher["code"]]))
    assert paid.status_code == 201, paid.get_json()
    [discount] = [r for r in paid.get_json()["rewards"] if r.get("voucher_code")]
    [(_, kind, message_id, body)] = deliveries(app)
    assert check_envelope(message_id, body, "voucher.redeemed") == {
        "event_id": "p1", "user_id": "u_1", "code": voucher["code"], "campaign_id": "welcome",
        "amount": "20.00", "currency": "CNY", "reward_id": discount["reward_id"]}


def test_spent_points_are_a_negative_grant_and_a_cancel_reverses_them(program):
    app, wallet = program
    wallet.event(**payment("p1", "50.00", at=PAID))
    add_endpoint(app, "we_all")
    exchanged = wallet.event(event_id="x1", type="redemption", user_id="u_1", occurred_at=PAID,
                             campaign_id="mall")
    assert exchanged.status_code == 201, exchanged.get_json()
    spent, cashback = exchanged.get_json()["rewards"]
    assert spent["points"] == -100 and cashback["amount"] == "5.00"
    written = deliveries(app)
    assert [(kind, body["data"]["reward"]) for _, kind, _, body in written] == [
        ("reward.granted", spent), ("reward.granted", cashback)]
    cancelled = wallet.event(event_id="c1", type="cancel", user_id="u_1", occurred_at=PAID,
                             original_event_id="x1")
    assert cancelled.status_code == 201, cancelled.get_json()
    reversals = cancelled.get_json()["rewards"]
    later = deliveries(app)[2:]
    assert [(kind, body["data"]) for _, kind, _, body in later] == [
        ("reward.reversed", {"event_id": "c1", "user_id": "u_1", "reward": reward})
        for reward in reversals]
    assert {r["reverses"] for r in reversals} == {spent["reward_id"], cashback["reward_id"]}


def test_a_refused_or_rolled_back_event_writes_no_delivery(program):
    app, wallet = program
    add_endpoint(app, "we_all")
    refused = wallet.event(event_id="x1", type="redemption", user_id="u_1", occurred_at=PAID,
                           points=5)
    assert refused.status_code == 422
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            db.session.execute(text("""
                CREATE FUNCTION doomed() RETURNS trigger LANGUAGE plpgsql AS
                $$ BEGIN RAISE EXCEPTION 'doomed event'; END $$;
                CREATE TRIGGER doomed AFTER INSERT ON events FOR EACH ROW
                WHEN (NEW.event_id = 'doomed') EXECUTE FUNCTION doomed();"""))
        else:
            db.session.execute(text("""
                CREATE TRIGGER doomed AFTER INSERT ON events WHEN NEW.event_id = 'doomed'
                BEGIN SELECT RAISE(ABORT, 'doomed event'); END"""))
        db.session.commit()
    app.config["PROPAGATE_EXCEPTIONS"] = False
    failed = wallet.event(**payment("doomed", "10.00", at=PAID))
    assert failed.status_code >= 500
    assert deliveries(app) == []
    assert wallet.event(**payment("p1", "10.00", at=PAID)).status_code == 201
    assert len(deliveries(app)) == 2
    with app.app_context():
        db.session.execute(text("DROP TRIGGER doomed" + (
            " ON events" if db.engine.dialect.name == "postgresql" else "")))
        db.session.commit()


def test_an_endpoint_removed_is_no_longer_written_for(program):
    app, wallet = program
    add_endpoint(app, "we_gone")
    wallet.event(**payment("p1", "10.00", at=PAID))
    with app.app_context():
        db.session.get(WebhookEndpoint, "we_gone").removed_at = datetime.now(timezone.utc)
        db.session.commit()
    webhook_outbox.directory.invalidate()
    wallet.event(**payment("p2", "10.00", at=PAID))
    assert [body["data"]["event_id"] for _, _, _, body in deliveries(app)] == ["p1", "p1"]


def test_the_endpoint_list_is_read_again_within_its_refresh_time(program):
    app, _ = program
    directory = webhook_outbox.EndpointDirectory(refresh_seconds=0.05)
    with app.app_context():
        assert directory.endpoints(db.engine) == ()
        add_endpoint(app, "we_new", "points.expired,reward.granted")
        assert directory.endpoints(db.engine) == ()  # cached
        import time
        time.sleep(0.06)
        [endpoint] = directory.endpoints(db.engine)
    assert endpoint.id == "we_new"
    assert endpoint.wants("points.expired") and not endpoint.wants("reward.reversed")


# -- points expired -----------------------------------------------------------------------

def test_expired_points_are_announced_once_per_user(database_url, tmp_path):
    from promo_engine.ledger.lot_expiry import sweep_points
    settings = make_settings(database_url, points_expire_months=1)
    with running_app(settings) as app:
        install_campaigns(app, CAMPAIGNS, tmp_path)
        wallet = new_wallet_client(app)
        for n, user in enumerate(["u_1", "u_1", "u_2"]):
            assert wallet.event(**payment(f"p{n}", "10.00", user_id=user,
                                          at="2026-06-20T12:00:00+08:00")).status_code == 201
        add_endpoint(app, "we_points", "points.expired")
        now = datetime(2026, 8, 2, tzinfo=timezone.utc)
        with app.app_context():
            assert sweep_points(db.session, now, batch_size=2) == (6, 0)
            entries = {}
            for user_id, reward_id in db.session.execute(
                    select(RewardRecord.user_id, RewardRecord.reward_id)
                    .where(RewardRecord.reason == "expired").order_by(RewardRecord.id)):
                entries.setdefault(user_id, []).append(reward_id)
            db.session.rollback()
        written = deliveries(app)
    got = {}
    for _, kind, message_id, body in written:
        data = check_envelope(message_id, body, "points.expired")
        assert body["timestamp"] == "2026-08-02T00:00:00Z" == data["expired_at"]
        got.setdefault(data["user_id"], []).append(data)
    # A batch announces each of its users once: u_1's four lots may span two batches of 2.
    assert sum(d["points"] for d in got["u_1"]) == 40
    assert [r for d in got["u_1"] for r in d["reward_ids"]] == entries["u_1"]
    assert got["u_2"] == [{"user_id": "u_2", "points": 20, "expired_at": "2026-08-02T00:00:00Z",
                           "reward_ids": entries["u_2"]}]


# -- campaigns opened and closed -------------------------------------------------------------

def test_campaigns_opening_and_closing_on_schedule_are_announced(program):
    from promo_engine.campaigns.lifecycle import advance_schedule
    app, wallet = program
    add_endpoint(app, "we_campaigns", "campaign.opened,campaign.closed")
    with app.app_context():
        from promo_engine.ledger.models import CampaignRecord
        spring = CampaignRecord(id="spring", type="points_multiplier", name="spring",
                                status="scheduled", spec={}, spec_hash="x",
                                starts_at=datetime(2027, 2, 1, tzinfo=timezone.utc),
                                ends_at=datetime(2027, 2, 8, tzinfo=timezone.utc))
        db.session.add(spring)
        db.session.commit()
        opened = datetime(2027, 2, 1, 0, 0, 1, tzinfo=timezone.utc)
        assert len(advance_schedule(db.session, opened, campaign_ids=["spring"])) == 1
        db.session.commit()
        assert advance_schedule(db.session, opened, campaign_ids=["spring"]) == []
        closed = datetime(2027, 2, 8, tzinfo=timezone.utc)
        assert len(advance_schedule(db.session, closed, campaign_ids=["spring"])) == 1
        db.session.commit()
    written = deliveries(app)
    assert [(kind, check_envelope(m, body, kind)) for _, kind, m, body in written] == [
        ("campaign.opened", {"campaign_id": "spring", "status": "open",
                             "previous_status": "scheduled", "at": "2027-02-01T00:00:01Z"}),
        ("campaign.closed", {"campaign_id": "spring", "status": "closed",
                             "previous_status": "open", "at": "2027-02-08T00:00:00Z"})]


# -- budget thresholds -----------------------------------------------------------------------

BUDGETED = f"""
id: both
type: holiday_discount
merchants: [m_300]
{OPEN_RANGE}params: {{amount_off: "4.00"}}
budget: {{amount: "10.00"}}
limits: {{max_redemptions: 5}}
---
id: short
type: holiday_discount
merchants: [m_200]
{OPEN_RANGE}params: {{amount_off: "3.00"}}
budget: {{amount: "10.00"}}
---
id: cash
type: holiday_discount
merchants: [m_100]
{OPEN_RANGE}params: {{amount_off: "1.00"}}
budget: {{amount: "10.00"}}
---
id: stock
type: points_exchange
{OPEN_RANGE}params: {{cost_points: 1, cashback: "0.01"}}
limits: {{max_redemptions: 5}}
"""


@pytest.mark.parametrize("counters", ["database-counters", "redis-counters"])
def test_each_budget_threshold_is_announced_once(counters, database_url, tmp_path, request):
    from conftest import make_redis_settings
    settings = (make_settings(database_url) if counters == "database-counters" else
                make_redis_settings(database_url, request.getfixturevalue("redis_prefix")))
    with running_app(settings) as app:
        install_campaigns(app, BUDGETED, tmp_path)
        wallet = new_wallet_client(app)
        add_endpoint(app, "we_budget", "campaign.budget_threshold")
        announced_after = []
        for n in range(12):  # 10 fit the budget, 2 find it spent
            wallet.event(**payment(f"p{n}", "5.00", user_id=f"u_{n}", at=PAID))
            announced_after.append(len(deliveries(app)))
        # 3.00 a payment from a 10.00 budget: 30%, 60%, 90% (0.8), then a reward refused for
        # want of room: used up, 1.0, though 1.00 of it is left.
        for n in range(4):
            wallet.event(**payment(f"s{n}", "5.00", user_id=f"s_{n}", merchant_id="m_200",
                                   at=PAID))
            announced_after.append(len(deliveries(app)))
        # With both limits, the one that refused is named: 4.00 and 8.00 (0.8), then the
        # budget refuses a third (redemptions would be 3 of 5).
        for n in range(3):
            wallet.event(**payment(f"b{n}", "5.00", user_id=f"b_{n}", merchant_id="m_300",
                                   at=PAID))
            announced_after.append(len(deliveries(app)))
        for n in range(6):  # the stock: 5 exchanges, then none
            exchanged = wallet.event(event_id=f"x{n}", type="redemption", user_id=f"u_{n}",
                                     occurred_at=PAID, campaign_id="stock")
            assert exchanged.status_code == (201 if n < 5 else 422), exchanged.get_json()
        written = deliveries(app)
        with app.app_context():
            recorded = db.session.execute(
                select(CampaignThreshold.campaign_id, CampaignThreshold.threshold,
                       CampaignThreshold.measure)
                .order_by(CampaignThreshold.campaign_id, CampaignThreshold.threshold)).all()
            db.session.rollback()
    # 0.8 at the 8th payment (8.00 of 10.00), 1.0 at the 10th.
    assert announced_after == [0] * 7 + [1, 1, 2, 2, 2] + [2, 2, 3, 4] + [4, 5, 6]
    assert [check_envelope(m, body, kind) for _, kind, m, body in written] == [
        {"campaign_id": "cash", "threshold": 0.8, "measure": "budget"},
        {"campaign_id": "cash", "threshold": 1.0, "measure": "budget"},
        {"campaign_id": "short", "threshold": 0.8, "measure": "budget"},
        {"campaign_id": "short", "threshold": 1.0, "measure": "budget"},
        {"campaign_id": "both", "threshold": 0.8, "measure": "budget"},
        {"campaign_id": "both", "threshold": 1.0, "measure": "budget"},
        {"campaign_id": "stock", "threshold": 0.8, "measure": "max_redemptions"},
        {"campaign_id": "stock", "threshold": 1.0, "measure": "max_redemptions"}]
    assert [tuple(row) for row in recorded] == [
        ("both", "0.8", "budget"), ("both", "1.0", "budget"),
        ("cash", "0.8", "budget"), ("cash", "1.0", "budget"),
        ("short", "0.8", "budget"), ("short", "1.0", "budget"),
        ("stock", "0.8", "max_redemptions"), ("stock", "1.0", "max_redemptions")]
