"""Retention (PROMO_RETENTION_DAYS) with a fixed clock, on SQLite and PostgreSQL: exactly
what is older than the period is purged (device ids, users per device and day, risk
counters of past days and months, daily device usage, sent or failed webhook deliveries),
and events, their stored responses, rewards and sums are kept. The scheduler's leader runs
it, once, however many schedulers there are."""
from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from promo_engine.ledger.extensions import db
from promo_engine.ledger.retention import Cutoff, Purged, purge_expired

from conftest import make_settings
from wallet import OPEN_RANGE, install_campaigns, new_wallet_client, payment

UTC = timezone.utc
NOW = datetime(2027, 3, 20, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai
JANUARY = NOW - timedelta(days=60)  # 2027-01-19: its day and its month go
FEBRUARY = NOW - timedelta(days=40)  # 2027-02-08: its day goes, its month (the previous) stays
RECENT = NOW - timedelta(days=1)  # kept
CAMPAIGN = f"""
id: tenner
type: holiday_discount
{OPEN_RANGE}limits: {{per_device_daily: 5}}
params: {{amount_off: "10.00"}}
"""


@pytest.fixture
def settings(database_url):
    return make_settings(database_url, retention_days=30)


@pytest.fixture
def history(app, tmp_path):
    """Three rewarded payments on devices, recorded at their own time, each with its
    webhook deliveries; those of the two old ones sent (the first) and given up (the
    second), the third left pending."""
    from promo_engine.service import promo_service
    from promo_engine.webhooks.endpoints import add_endpoint
    install_campaigns(app, CAMPAIGN, tmp_path)
    with app.app_context():
        add_endpoint("https://wallet.example/hooks")
    wallet = new_wallet_client(app)
    service = promo_service(app)
    for event_id, user, device, at in (("jan", "old-user", "dev-old", JANUARY),
                                       ("feb", "old-user", "dev-old", FEBRUARY),
                                       ("recent", "new-user", "dev-new", RECENT)):
        service.clock = lambda at=at: at
        response = wallet.event(**payment(event_id, "50.00", user_id=user, device_id=device,
                                          at=at.isoformat()))
        assert response.status_code == 201, response.get_json()
    with app.app_context():
        ids = db.session.scalars(text("SELECT id FROM webhook_deliveries ORDER BY id")).all()
        assert len(ids) == 6  # two reward.granted per payment (base points, the discount)
        for delivery_id, status in zip(ids, ["delivered", "failed", "delivered", "pending",
                                             "delivered", "failed"]):
            db.session.execute(text("UPDATE webhook_deliveries SET status = :s WHERE id = :i"),
                               {"s": status, "i": delivery_id})
        db.session.commit()
    return wallet


def snapshot(app) -> dict:
    with app.app_context():
        run = lambda sql: [tuple(r) for r in db.session.execute(text(sql))]  # noqa: E731
        result = {
            "events": run("SELECT event_id, device_id FROM events ORDER BY event_id"),
            "responses": run("SELECT event_id, response FROM events ORDER BY event_id"),
            "rewards": run("SELECT reward_id, user_id, amount_minor, points FROM rewards "
                           "ORDER BY reward_id"),
            "device_day_users": run("SELECT device_id, day, user_id FROM device_day_users "
                                    "ORDER BY day"),
            "risk_counters": run("SELECT subject, period, rewarded_events, reward_minor "
                                 "FROM risk_counters ORDER BY subject, period"),
            "device_daily_usage": run("SELECT device_id, day, uses FROM "
                                      "device_campaign_daily_usage ORDER BY day"),
            "deliveries": run("SELECT status, count(*) FROM webhook_deliveries "
                              "GROUP BY status ORDER BY status"),
            "usage": run("SELECT campaign_id, spent, redemptions FROM campaign_usage"),
            "users": run("SELECT user_id, payments, points_balance FROM users ORDER BY user_id"),
        }
        db.session.rollback()
    for name in ("device_day_users", "device_daily_usage"):  # dates as text on either database
        result[name] = [tuple(str(v) for v in row) for row in result[name]]
    return result


def test_the_cutoff_in_days_and_months_of_the_program():
    cutoff = Cutoff.of(NOW, 30, "Asia/Shanghai")
    assert (cutoff.instant, str(cutoff.day), cutoff.month) == (
        datetime(2027, 2, 18, 4, 0, tzinfo=UTC), "2027-02-18", "2027-02")
    # A long period keeps months further back than the previous one.
    assert Cutoff.of(NOW, 100, "Asia/Shanghai").month == "2026-12"
    # 23:30 UTC is already the next day in Shanghai.
    assert str(Cutoff.of(datetime(2027, 3, 20, 23, 30, tzinfo=UTC), 1,
                         "Asia/Shanghai").day) == "2027-03-20"


def test_purges_exactly_what_is_older_than_the_period(app, history):
    before = snapshot(app)
    assert before["events"] == [("feb", "dev-old"), ("jan", "dev-old"), ("recent", "dev-new")]
    assert before["device_day_users"] == [("dev-old", "2027-01-19", "old-user"),
                                          ("dev-old", "2027-02-08", "old-user"),
                                          ("dev-new", "2027-03-19", "new-user")]
    with app.app_context():
        purged = purge_expired(db.session, NOW, days=30, timezone="Asia/Shanghai",
                               batch_size=2)  # batches smaller than the work
    assert purged == Purged(event_device_ids=2, device_day_users=2, risk_counters=5,
                            device_daily_usage=2, webhook_deliveries=3)
    after = snapshot(app)
    assert after["events"] == [("feb", None), ("jan", None), ("recent", "dev-new")]
    assert after["device_day_users"] == [("dev-new", "2027-03-19", "new-user")]
    assert after["risk_counters"] == [
        ("device:dev-new", "2027-03-19", 1, 1000),
        ("user:new-user", "2027-03", 1, 1000),
        ("user:new-user", "2027-03-19", 1, 1000),
        ("user:old-user", "2027-02", 1, 1000),  # the previous month: the cap may read it
    ]
    assert after["device_daily_usage"] == [("dev-new", "2027-03-19", "1")]
    # The delivered and failed ones of the old payments go; pending and recent ones stay.
    assert after["deliveries"] == [("delivered", 1), ("failed", 1), ("pending", 1)]
    for kept in ("responses", "rewards", "usage", "users"):
        assert after[kept] == before[kept], kept
    # Old events are still answered as replays, from their stored response.
    replay = history.event(**payment("jan", "50.00", user_id="old-user", device_id="dev-old",
                                     at=JANUARY.isoformat()))
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
    with app.app_context():  # nothing more the second time
        assert purge_expired(db.session, NOW, days=30, timezone="Asia/Shanghai") == Purged()


def test_the_leading_scheduler_purges_once_however_many_run(app, history, redis_client,
                                                            caplog):
    from promo_engine.campaigns.scheduler import CampaignScheduler
    from promo_engine.campaigns.scheduler.campaign_scheduler import RETENTION_JOB
    from promo_engine.coordination.leader import RedisLease
    key = f"promo-test-{uuid.uuid4().hex}:leader"
    schedulers = [CampaignScheduler(app, lease=RedisLease(redis_client, key, 5000, owner),
                                    clock=lambda: NOW) for owner in ("a", "b")]
    caplog.set_level(logging.INFO, logger="promo_engine.campaigns.scheduler.acting")
    try:
        for scheduler in schedulers:
            scheduler.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(s.ready.is_set() for s in schedulers):
            time.sleep(0.05)
        while time.monotonic() < deadline and snapshot(app)["events"][0][1] is not None:
            time.sleep(0.05)  # the leader's purge runs as soon as it is elected
        [leader] = [s for s in schedulers if s.leading]
        [follower] = [s for s in schedulers if not s.leading]
        assert leader.aps.get_job(RETENTION_JOB).trigger.interval == timedelta(hours=1)
        assert follower.purge_expired() is None  # not leading: does nothing
        assert leader.purge_expired() == Purged()  # nothing left to purge
    finally:
        for scheduler in schedulers:
            scheduler.stop()
        redis_client.delete(key, f"{key}:token")
    assert snapshot(app)["events"] == [("feb", None), ("jan", None), ("recent", "dev-new")]
    purges = [r.getMessage() for r in caplog.records if "retention" in r.getMessage()]
    assert purges == ["retention (30 days): purged 2 event device ids, 2 device day users, "
                      "5 risk counters, 2 device daily usage, 3 webhook deliveries"]


def test_without_a_period_there_is_no_retention_job(database_url):
    from conftest import running_app
    from promo_engine.campaigns.scheduler import CampaignScheduler
    from promo_engine.campaigns.scheduler.campaign_scheduler import RETENTION_JOB
    with running_app(make_settings(database_url)) as app:
        scheduler = CampaignScheduler(app, clock=lambda: NOW)
        scheduler.aps.start(paused=True)
        try:
            scheduler._add_periodic_jobs()
            assert scheduler.aps.get_job(RETENTION_JOB) is None
            scheduler.on_elected(None)
            assert scheduler.purge_expired() is None
        finally:
            scheduler.aps.shutdown(wait=False)
