"""The program report's figures (`promo_engine/campaigns/program_report.py`) on a small
posted history whose every number is worked out by hand in `program_history.py`; on SQLite
and PostgreSQL."""
from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from program_history import FIRST_DAY, LAST_DAY, LATER, post_history
from promo_engine.campaigns.program_report import (Cohort, RangeError, check_range,
                                                   default_range, program_report, report_csv,
                                                   report_json)


def run(app, now=LATER, first=FIRST_DAY, last=LAST_DAY):
    from promo_engine.ledger.extensions import db
    with app.app_context():
        return program_report(db.session, zone_name="Asia/Shanghai", currency="CNY",
                              first_day=first, last_day=last, now=now)


@pytest.fixture
def history(app, tmp_path):
    post_history(app, tmp_path)
    return app


def test_figures_by_hand(history):
    report = run(history)
    active = {d.day.isoformat(): d.activations for d in report.days if d.activations}
    # First activations only (u1's second one is not), by the Shanghai day: u3 at 23:59:30
    # on Jun 7, u4 at 00:00:10 on Jun 8 (Jun 7 in UTC); u7 (May) and u9 (Jun 22) outside.
    assert active == {"2026-06-01": 1, "2026-06-02": 1, "2026-06-07": 1, "2026-06-08": 1,
                      "2026-06-10": 1, "2026-06-16": 1, "2026-06-21": 1}
    assert len(report.days) == 21
    assert report.cohorts == [
        # u1 paid in 2 days; u2 in 18 (within 30, refunded, still a payment); u3 never.
        Cohort(date(2026, 6, 1), date(2026, 6, 1), date(2026, 6, 7), 3, 1, 2,
               Decimal("0.3333"), Decimal("0.6667")),
        # u4 paid 1 s short of 7 days, u5 1 s past them.
        Cohort(date(2026, 6, 8), date(2026, 6, 8), date(2026, 6, 14), 2, 1, 2,
               Decimal("0.5000"), Decimal("1.0000")),
        # u6 had paid before activating; u8 never paid.
        Cohort(date(2026, 6, 15), date(2026, 6, 15), date(2026, 6, 21), 2, 1, 1,
               Decimal("0.5000"), Decimal("0.5000"))]
    # W1: u1; W2: u1; W3: u4, u7, u5, u6, u2 (a refund is no payment).
    assert [(w.week, w.payers) for w in report.weeks] == [
        (date(2026, 6, 1), 1), (date(2026, 6, 8), 1), (date(2026, 6, 15), 5)]
    welcome, dining = sorted(report.campaigns, key=lambda c: c.campaign_id, reverse=True)
    # welcome: 10.00 to each of the 7 users activated in range (u9's is on Jun 22); the
    # first-paying among them: u1, u2, u4, u5 (u6 first paid in May).
    assert (welcome.campaign_id, welcome.name, welcome.cost, welcome.points, welcome.users,
            welcome.activated_users, welcome.first_paying_users) == (
        "welcome", "Welcome cashback", Decimal("70.00"), 0, 7, 7, 4)
    assert welcome.cost_per_activated_user == Decimal("10.00")
    assert welcome.cost_per_first_paying_user == Decimal("17.50")
    # dining: 10.00 + 3.00 (u1) + 4.00 (u4) + 8.00 (u6) + 5.00 (u7) + 20.00 - 20.00 (u2,
    # refunded: not a user) = 30.00 over u1, u4, u6, u7; activated in range: u1, u4, u6;
    # first payment in range: u1, u4.
    assert (dining.campaign_id, dining.cost, dining.users, dining.activated_users,
            dining.first_paying_users) == ("dining", Decimal("30.00"), 4, 3, 2)
    assert dining.cost_per_activated_user == Decimal("10.00")
    assert dining.cost_per_first_paying_user == Decimal("15.00")


def test_young_cohorts_are_not_yet_known(history):
    # Jul 10: W1's 30 days ended Jul 8 00:00 (Shanghai); W2's end Jul 15, W3's Jul 22.
    report = run(history, now=datetime(2026, 7, 10, tzinfo=timezone.utc))
    assert [(c.paid_7d, c.paid_30d, c.share_30d) for c in report.cohorts] == [
        (1, 2, Decimal("0.6667")), (1, None, None), (1, None, None)]
    # Jun 28 23:59 Shanghai: W3's 7 days end at Jun 29 00:00.
    report = run(history, now=datetime(2026, 6, 28, 15, 59, tzinfo=timezone.utc))
    assert [c.share_7d for c in report.cohorts] == [Decimal("0.3333"), Decimal("0.5000"), None]


def test_a_range_cutting_weeks_counts_only_its_days(history):
    report = run(history, first=date(2026, 6, 2), last=date(2026, 6, 9))
    assert [(c.week, c.first_day, c.last_day, c.users) for c in report.cohorts] == [
        (date(2026, 6, 1), date(2026, 6, 2), date(2026, 6, 7), 2),   # u2, u3 (not u1)
        (date(2026, 6, 8), date(2026, 6, 8), date(2026, 6, 9), 1)]   # u4
    assert [w.payers for w in report.weeks] == [1, 1]
    assert {c.campaign_id: str(c.cost) for c in report.campaigns} == {
        "dining": "13.00", "welcome": "30.00"}


def test_json_and_csv(history):
    report = run(history)
    data = report_json(report)
    assert data["from"] == "2026-06-01" and data["to"] == "2026-06-21"
    assert data["as_of"] == "2026-08-01T00:00:00Z"
    assert data["cohorts"][0] == {"week": "2026-06-01", "from": "2026-06-01",
                                  "to": "2026-06-07", "users": 3, "paid_within_7_days": 1,
                                  "share_7_days": "0.3333", "paid_within_30_days": 2,
                                  "share_30_days": "0.6667"}
    text = report_csv(report)
    assert text.startswith("activations_per_day\r\nday,activations\r\n2026-06-01,1\r\n"
                           "2026-06-02,1\r\n2026-06-03,0\r\n")
    assert ("\r\n\r\ncampaigns\r\ncampaign_id,name,cost,points,users,activated_users,"
            "first_paying_users,cost_per_activated_user,cost_per_first_paying_user\r\n"
            "dining,Dining 10% off,30.00,0,4,3,2,10.00,15.00\r\n"
            "welcome,Welcome cashback,70.00,0,7,7,4,10.00,17.50\r\n") in text
    assert ("weekly_active_payers\r\nweek,from,to,payers\r\n2026-06-01,2026-06-01,2026-06-07,1"
            "\r\n") in text


def test_empty_ledger(app):
    report = run(app)
    assert sum(d.activations for d in report.days) == 0 and report.campaigns == []
    assert [(c.users, c.paid_7d, c.share_7d) for c in report.cohorts] == [(0, 0, None)] * 3


def test_default_range_and_bad_range():
    assert default_range(date(2026, 12, 5)) == (date(2026, 9, 14), date(2026, 12, 5))
    with pytest.raises(RangeError, match="--to 2026-06-01 is before --from 2026-06-02"):
        check_range(date(2026, 6, 2), date(2026, 6, 1))
