"""The risk report (`promo_engine/campaigns/risk_report.py`, `promo-engine risk report`) on the
small posted history of `risk_history.py`, every figure worked out there by hand; the figures
on SQLite and PostgreSQL, the command line on SQLite."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from conftest import make_settings, running_app
from promo_engine.campaigns.risk_report import (PeriodError, check_options, report_json,
                                                risk_report)
from promo_engine.cli import main
from risk_history import clock, install_policy, post_history, same_month  # noqa: F401

ZONE = ZoneInfo("Asia/Shanghai")
BASE = datetime(2026, 6, 20, 12, 0, tzinfo=ZONE)
PERIOD = {"from": "2026-05-21T16:00:00Z", "to": "2026-06-20T16:00:00Z"}
MONTH = {"from": "2026-05-31T16:00:00Z", "to": "2026-06-30T16:00:00Z"}


def run(app, now=BASE, **options):
    from promo_engine.ledger.extensions import db
    with app.app_context():
        return risk_report(db.session, zone_name="Asia/Shanghai", currency="CNY", now=now,
                           **options)


@pytest.fixture
def history(app, tmp_path):
    post_history(app, tmp_path, BASE)
    return app


def test_top_users_and_devices(history):
    report = run(history)
    assert (report.first_day.isoformat(), report.last_day.isoformat()) == ("2026-05-22",
                                                                         "2026-06-20")
    # By rewards, then money: h4's 3 x 10.40 beat h1's and h2's 3 x 10.10 (tied: by id); o1's
    # rewards are 31 days old.
    assert [(u.id, u.rewards, u.events, u.money, u.points) for u in report.top_users] == [
        ("n1", 18, 18, Decimal("265.00"), 0), ("h4", 4, 4, Decimal("41.20"), 0),
        ("h1", 4, 4, Decimal("40.30"), 0), ("h2", 4, 4, Decimal("40.30"), 0),
        ("h3", 3, 3, Decimal("31.00"), 0), ("n2", 1, 1, Decimal("10.00"), 0)]
    assert report.top_users[0].events_filter == {"user_id": "n1", **PERIOD}
    # Refunds do not lower them (gross, as the risk counters).
    assert [(d.id, d.rewards, d.users, d.money) for d in report.top_devices] == [
        ("dev-n1", 18, 1, Decimal("265.00")), ("dev-farm", 15, 4, Decimal("152.80")),
        ("dev-pair", 1, 1, Decimal("10.00"))]
    assert report.top_devices[1].events_filter == {"device_id": "dev-farm", **PERIOD}


def test_shared_devices(history):
    report = run(history)
    # dev-farm: h1..h4's activations and payments (15, refunds carry no device); dev-pair:
    # n2's 4 events and o1's payment; dev-n1 has one user.
    assert [(d.device_id, d.users, d.events, d.first_at, d.last_at)
            for d in report.shared_devices] == [
        ("dev-farm", 4, 15, datetime(2026, 6, 20, 0, 43, tzinfo=timezone.utc),
         datetime(2026, 6, 20, 0, 57, tzinfo=timezone.utc)),
        ("dev-pair", 2, 5, datetime(2026, 6, 20, 1, 16, tzinfo=timezone.utc),
         datetime(2026, 6, 20, 1, 21, tzinfo=timezone.utc))]
    assert report.shared_devices[1].events_filter == {"device_id": "dev-pair", **PERIOD}


def test_merchant_refunds(history):
    refunds = run(history).refunds
    # 28 rewarded payments (6 at m_100, 20 at m_200, 2 at m_300), 8 refunded: 0.2857.
    assert (refunds.rewarded_payments, refunds.refunded_payments, refunds.rate) == (
        28, 8, Decimal("0.2857"))
    # m_100: 5 of 6 (a partial refund counts), >= 2 x 0.2857 and 5 refunds: flagged. m_300:
    # 2 of 2 but only 2 refunds. m_200: 1 of 20.
    assert [(m.merchant_id, m.rewarded_payments, m.refunded_payments, m.rate, m.flagged)
            for m in refunds.merchants] == [
        ("m_100", 6, 5, Decimal("0.8333"), True), ("m_300", 2, 2, Decimal("1.0000"), False),
        ("m_200", 20, 1, Decimal("0.0500"), False)]
    assert refunds.merchants[0].events_filter == {"merchant_id": ["m_100"], "type": "payment",
                                                  **PERIOD}


def test_min_amount_clusters(history):
    [cluster] = run(history).clusters  # `future` is scheduled, `welcome` has no minimum
    assert (cluster.campaign_id, cluster.name, cluster.status, cluster.min_amount) == (
        "dining", "Dining 10% off", "open", Decimal("100.00"))
    # Above [100.00, 105.00]: 6 x 101.00, 3 x 104.00, 2 x 105.00 (150.00 is not); below
    # [95.00, 99.99]: 99.99 and 95.00 (94.99 is not; 101.00 at m_999 is no campaign merchant).
    above, below = cluster.just_above, cluster.just_below
    assert (above.low, above.high, above.payments) == (Decimal("100.00"), Decimal("105.00"), 11)
    assert (below.low, below.high, below.payments) == (Decimal("95.00"), Decimal("99.99"), 2)
    assert cluster.ratio == Decimal("5.50")
    assert below.events_filter == {"type": "payment", **PERIOD,
                                   "merchant_id": ["m_100", "m_200", "m_300"],
                                   "min_amount": "95.00", "max_amount": "99.99"}


def test_cashback_this_month_with_and_without_a_cap(history, tmp_path):
    section = run(history).cashback
    assert (section.month, section.cap) == ("2026-06", None)
    assert [(u.user_id, u.rewards, u.cashback, u.share_of_cap, u.at_cap)
            for u in section.users] == [
        (user, 1, Decimal("10.00"), None, False) for user in ("h1", "h2", "h3", "h4", "n1", "n2")]
    assert section.users[0].events_filter == {"user_id": "h1", **MONTH}
    install_policy(history, tmp_path)
    section = run(history).cashback
    assert section.cap == Decimal("20.00")
    assert {(u.share_of_cap, u.at_cap) for u in section.users} == {(Decimal("0.5000"), False)}
    # In July nothing was paid back yet.
    assert run(history, now=datetime(2026, 7, 1, tzinfo=ZONE)).cashback.users == []


def test_period_and_limit(history):
    # One day (June 20) still holds every recent event; from July 21 the period has none.
    report = run(history, days=1, limit=2)
    assert [u.id for u in report.top_users] == ["n1", "h4"]
    assert [d.id for d in report.top_devices] == ["dev-n1", "dev-farm"]
    assert len(report.cashback.users) == 2
    later = run(history, now=datetime(2026, 7, 21, tzinfo=ZONE))
    assert later.top_users == [] and later.shared_devices == []
    assert later.refunds.rate is None and later.refunds.merchants == []
    assert later.clusters[0].just_above.payments == 0 and later.clusters[0].ratio is None


def test_empty_ledger(app):
    report = run(app)
    assert report.top_users == report.top_devices == report.shared_devices == []
    assert report.clusters == [] and report.cashback.users == []


def test_json_shape(history):
    data = report_json(run(history))
    assert sorted(data) == ["as_of", "cashback", "currency", "days", "from", "limit",
                            "merchant_refunds", "min_amount_clusters", "shared_devices",
                            "since", "timezone", "to", "top_devices", "top_users", "until"]
    assert (data["since"], data["until"], data["as_of"]) == (
        PERIOD["from"], PERIOD["to"], "2026-06-20T04:00:00Z")
    assert data["top_users"][0] == {"user_id": "n1", "rewards": 18, "events_rewarded": 18,
                                    "money": "265.00", "points": 0,
                                    "events": {"user_id": "n1", **PERIOD}}
    assert data["top_devices"][1] == {"device_id": "dev-farm", "rewards": 15,
                                      "events_rewarded": 15, "money": "152.80", "points": 0,
                                      "users": 4, "events": {"device_id": "dev-farm", **PERIOD}}
    assert data["shared_devices"][0] == {
        "device_id": "dev-farm", "users": 4, "events_count": 15,
        "first_at": "2026-06-20T00:43:00Z", "last_at": "2026-06-20T00:57:00Z",
        "events": {"device_id": "dev-farm", **PERIOD}}
    refunds = data["merchant_refunds"]
    assert {k: v for k, v in refunds.items() if k != "merchants"} == {
        "rewarded_payments": 28, "refunded_payments": 8, "rate": "0.2857",
        "rule": {"rate_multiple": 2, "min_refunded": 5}}
    assert refunds["merchants"][0] == {
        "merchant_id": "m_100", "rewarded_payments": 6, "refunded_payments": 5,
        "rate": "0.8333", "flagged": True,
        "events": {"merchant_id": ["m_100"], "type": "payment", **PERIOD}}
    [cluster] = data["min_amount_clusters"]
    assert cluster["ratio"] == "5.50" and cluster["min_amount"] == "100.00"
    assert cluster["just_above"] == {
        "from": "100.00", "to": "105.00", "payments": 11,
        "events": {"type": "payment", **PERIOD, "merchant_id": ["m_100", "m_200", "m_300"],
                   "min_amount": "100.00", "max_amount": "105.00"}}
    assert data["cashback"]["month"] == "2026-06" and data["cashback"]["cap"] is None
    assert data["cashback"]["users"][0] == {"user_id": "h1", "rewards": 1, "cashback": "10.00",
                                            "share_of_cap": None, "at_cap": False,
                                            "events": {"user_id": "h1", **MONTH}}
    json.dumps(data)  # plain JSON: no Decimal or datetime left


@pytest.mark.parametrize("days, limit, message", [
    (0, 20, "--days 0 is not between 1 and 1096"), (1097, 20, "--days 1097"),
    (30, 0, "--limit 0 is not between 1 and 1000")])
def test_bad_options(days, limit, message):
    with pytest.raises(PeriodError, match=message):
        check_options(days, limit)


# The command line, on a history posted just before now (the command reads the clock).

@pytest.fixture
def env(tmp_path):
    return {"DATABASE_URL": f"sqlite:///{tmp_path / 'promo.db'}",
            "SECRET_KEY": "test-secret-key-0123456789", "PROMO_TIMEZONE": "Asia/Shanghai",
            "PROMO_CURRENCY": "CNY", "PROMO_LOAD_ENTRY_POINTS": "0"}


@pytest.fixture
def posted(clock, env, tmp_path):
    with running_app(make_settings(env["DATABASE_URL"])) as app:
        post_history(app, tmp_path, datetime.now(ZONE).replace(microsecond=0))
        install_policy(app, tmp_path)
    return env


def cli(env, *args):
    return CliRunner().invoke(main, ["risk", "report", *args], env=env)


def test_cli_json(posted):
    result = cli(posted, "--json", "--days", "7", "--limit", "3")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (data["days"], data["limit"], data["timezone"], data["currency"]) == (
        7, 3, "Asia/Shanghai", "CNY")
    assert [(u["user_id"], u["rewards"], u["money"]) for u in data["top_users"]] == [
        ("n1", 18, "265.00"), ("h4", 4, "41.20"), ("h1", 4, "40.30")]
    assert [(d["device_id"], d["users"]) for d in data["shared_devices"]] == [
        ("dev-farm", 4), ("dev-pair", 2)]
    assert [m["merchant_id"] for m in data["merchant_refunds"]["merchants"]] == [
        "m_100", "m_300", "m_200"]
    assert data["min_amount_clusters"][0]["just_above"]["payments"] == 11
    assert data["cashback"]["cap"] == "20.00"
    if same_month():
        assert [u["share_of_cap"] for u in data["cashback"]["users"]] == ["0.5000"] * 3
    else:
        assert data["cashback"]["users"] == []


def test_cli_text(posted):
    result = cli(posted)
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.startswith("Risk report ") and "(30 days, Asia/Shanghai, money in CNY)" in out
    expected = [
        "Users with the most campaign rewards\n------------------------------------\n"
        "user  rewards  events  money   points\n"
        "n1    18       18      265.00  0\n"
        "h4    4        4       41.20   0\n",
        "Devices with the most campaign rewards\n",
        "device    users  rewards  events  money   points\n"
        "dev-n1    1      18       18      265.00  0\n"
        "dev-farm  4      15       15      152.80  0\n",
        "Devices used by several users\n",
        "Refunds of rewarded payments by merchant\n----------------------------------------\n"
        "program: 8 of 28 refunded (28.6%); flagged: 2x the program's rate or more, and 5 "
        "refunds or more\n",
        "merchant  rewarded  refunded  rate    flag\n"
        "m_100     6         5         83.3%   FLAGGED\n"
        "m_300     2         2         100.0%\n"
        "m_200     20        1         5.0%\n",
        "Payments just above a campaign's min_amount\n",
        "campaign  min_amount  just above          just below       ratio\n"
        "dining    100.00      11 (100.00-105.00)  2 (95.00-99.99)  5.50\n",
        "Cashback per user in ",
        "monthly cap of the risk policy: 20.00\n"]
    for text in expected:
        assert text in out, text
    if same_month():
        assert "h1    1        10.00     50.0%\n" in out
    else:
        assert "no cashback this month" in out


def test_cli_empty_database_and_bad_options(env, tmp_path):
    result = cli(env)
    assert result.exit_code == 1
    assert "the database has no schema yet" in result.output
    with running_app(make_settings(env["DATABASE_URL"])):
        pass
    result = cli(env)
    assert result.exit_code == 0, result.output
    assert "no campaign rewards in the period" in result.output
    assert "no device was used by 2 users or more" in result.output
    assert "monthly cap of the risk policy: none in force" in result.output
    bad = cli(env, "--days", "0")
    assert bad.exit_code == 2 and "--days 0 is not between 1 and 1096" in bad.output
    assert "Traceback" not in bad.output
    assert cli(env, "--days", "many").exit_code == 2
