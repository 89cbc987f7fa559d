"""`promo-engine campaigns list|pause|resume|history`, and the audit rows they leave.

Each test runs on SQLite and PostgreSQL (conftest's `app`); the command line works on the
same database as the running service beside it, as an operator's would.
"""
from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest
from click.testing import CliRunner

import promo_engine.cli.campaigns as campaigns_cli
from promo_engine.cli import main
from promo_engine.service import RELOAD_INTERVAL_SECONDS

from wallet import OPEN_RANGE, install_campaigns, new_wallet_client, payment, without_ids

UTC = timezone.utc
APPLIED = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)  # 18:00 in Shanghai
PAUSED_AT = datetime(2026, 11, 22, 10, 5, 30, 250_000, tzinfo=UTC)
RESUMED_AT = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)

CAMPAIGNS = f"""
id: dining
type: holiday_discount
merchants: [m_100]
{OPEN_RANGE}budget:
  amount: "50000.00"
limits:
  max_redemptions: 10000
params:
  percent: 15
  max_discount: "30.00"
---
id: triple
type: points_multiplier
{OPEN_RANGE}budget:
  points: 1000000
params:
  multiplier: 3
---
id: welcome
type: first_activation_bonus
{OPEN_RANGE}params:
  points: 500
---
id: early-bird
type: holiday_discount
timezone: Europe/London
starts_at: 2025-06-01T00:00:00
ends_at: 2025-07-01T00:00:00
budget:
  amount: "100.00"
params:
  percent: 5
---
id: next-year
type: holiday_discount
starts_at: 2031-01-01T00:00:00
ends_at: 2031-02-01T00:00:00
limits:
  max_redemptions: 500
params:
  percent: 5
---
id: on-hold
type: holiday_discount
{OPEN_RANGE}params:
  amount_off: "1.00"
"""

TABLE = """\
ID          TYPE                    STATUS     WINDOW                                             BUDGET USED / LEFT    REDEMPTIONS
dining      holiday_discount        open       2026-01-01 00:00 – 2030-01-01 00:00 Asia/Shanghai  30.00 / 49970.00 CNY  1 / 10000
early-bird  holiday_discount        closed     2025-06-01 00:00 – 2025-07-01 00:00 Europe/London  0.00 / 100.00 CNY     0
next-year   holiday_discount        scheduled  2031-01-01 00:00 – 2031-02-01 00:00 Asia/Shanghai  —                     0 / 500
on-hold     holiday_discount        paused     2026-01-01 00:00 – 2030-01-01 00:00 Asia/Shanghai  —                     0
triple      points_multiplier       open       2026-01-01 00:00 – 2030-01-01 00:00 Asia/Shanghai  1200 / 998800 pts     1
welcome     first_activation_bonus  open       2026-01-01 00:00 – 2030-01-01 00:00 Asia/Shanghai  —                     0
"""


@pytest.fixture
def env(settings):
    return {"DATABASE_URL": settings.database_url, "SECRET_KEY": settings.secret_key,
            "PROMO_TIMEZONE": "Asia/Shanghai", "PROMO_CURRENCY": "CNY",
            "PROMO_LOAD_ENTRY_POINTS": "0"}


@pytest.fixture
def clock(monkeypatch):
    """The command line's clock, set by the test: `clock.now = ...`."""
    class Clock:
        now = APPLIED
    monkeypatch.setattr(campaigns_cli, "_clock", lambda: Clock.now)
    return Clock


@pytest.fixture
def run(env, monkeypatch, clock):
    """`promo-engine campaigns ...` in this process, run by the operator alice."""
    monkeypatch.setattr(getpass, "getuser", lambda: "alice")

    def run(*args):
        return CliRunner().invoke(main, ["campaigns", *map(str, args)], env=env)
    return run


@pytest.fixture
def installed(app, tmp_path, run):
    """The campaigns above, on-hold paused, and one 600.00 payment at m_100 through the API:
    dining grants 30.00 (15%, at most 30.00) and triple 1200 points (3x 600, less the base)."""
    install_campaigns(app, CAMPAIGNS, tmp_path)
    assert run("pause", "on-hold", "--reason", "waiting for legal").exit_code == 0
    wallet = new_wallet_client(app)
    body = wallet.event(**payment("p1", "600.00")).get_json()
    assert without_ids(body["rewards"]) == [
        {"campaign_id": None, "kind": "points", "points": 600},
        {"campaign_id": "dining", "kind": "discount", "amount": "30.00", "currency": "CNY"},
        {"campaign_id": "triple", "kind": "points", "points": 1200}]
    return wallet


def audit_rows(app, campaign_id: str) -> list[tuple]:
    from sqlalchemy import select

    from promo_engine.ledger.extensions import db
    from promo_engine.ledger.models import CampaignAudit
    with app.app_context():
        rows = db.session.scalars(select(CampaignAudit)
                                  .where(CampaignAudit.campaign_id == campaign_id)
                                  .order_by(CampaignAudit.id)).all()
        result = [(r.from_status, r.to_status, r.actor, r.reason, r.at) for r in rows]
        db.session.rollback()
    return result


def status(app, campaign_id: str) -> str:
    from promo_engine.ledger.extensions import db
    from promo_engine.ledger.models import CampaignRecord
    with app.app_context():
        value = db.session.get(CampaignRecord, campaign_id).status
        db.session.rollback()
    return value


def revision(app) -> int:
    from promo_engine.campaigns.store import campaigns_revision
    from promo_engine.ledger.extensions import db
    with app.app_context():
        value = campaigns_revision()
        db.session.rollback()
    return value


# --- list ------------------------------------------------------------------------------------

def test_list_shows_status_local_window_budget_and_redemptions(installed, run):
    result = run("list")
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == TABLE


def test_list_filters_by_status(installed, run):
    result = run("list", "--status", "paused", "--status", "closed")
    assert result.stdout == """\
ID          TYPE              STATUS  WINDOW                                             BUDGET USED / LEFT  REDEMPTIONS
early-bird  holiday_discount  closed  2025-06-01 00:00 – 2025-07-01 00:00 Europe/London  0.00 / 100.00 CNY   0
on-hold     holiday_discount  paused  2026-01-01 00:00 – 2030-01-01 00:00 Asia/Shanghai  —                   0
"""


def test_list_of_a_status_no_campaign_has_says_so(installed, run):
    result = run("list", "--status", "retired")
    assert (result.exit_code, result.stdout) == (0, "no retired campaigns\n")


def test_list_json_is_machine_readable(installed, run):
    result = run("list", "--json", "--status", "open", "--status", "closed")
    assert result.exit_code == 0
    shanghai_range = {"timezone": "Asia/Shanghai", "starts_at": "2026-01-01T00:00:00+08:00",
                      "ends_at": "2030-01-01T00:00:00+08:00"}
    assert json.loads(result.stdout) == [
        {"id": "dining", "name": "dining", "type": "holiday_discount", "status": "open",
         "source": "yaml", **shanghai_range,
         "budget": {"unit": "money", "currency": "CNY", "total": "50000.00", "used": "30.00",
                    "left": "49970.00"},
         "redemptions": 1, "max_redemptions": 10000},
        {"id": "early-bird", "name": "early-bird", "type": "holiday_discount",
         "status": "closed", "source": "yaml", "timezone": "Europe/London",
         "starts_at": "2025-06-01T00:00:00+01:00", "ends_at": "2025-07-01T00:00:00+01:00",
         "budget": {"unit": "money", "currency": "CNY", "total": "100.00", "used": "0.00",
                    "left": "100.00"},
         "redemptions": 0, "max_redemptions": None},
        {"id": "triple", "name": "triple", "type": "points_multiplier", "status": "open",
         "source": "yaml", **shanghai_range,
         "budget": {"unit": "points", "currency": None, "total": 1000000, "used": 1200,
                    "left": 998800},
         "redemptions": 1, "max_redemptions": None},
        {"id": "welcome", "name": "welcome", "type": "first_activation_bonus",
         "status": "open", "source": "yaml", **shanghai_range, "budget": None,
         "redemptions": 0, "max_redemptions": None},
    ]


def test_list_on_a_database_without_campaigns_says_what_to_do_next(app, run):
    result = run("list")
    assert (result.exit_code, result.stdout) == (
        0, "no campaigns yet: promo-engine campaigns apply campaigns/\n")
    assert json.loads(run("list", "--json").stdout) == []


def test_list_before_anything_was_applied_creates_no_database(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["campaigns", "list"], env={
        "DATABASE_URL": f"sqlite:///{tmp_path / 'promo.db'}",
        "SECRET_KEY": "test-secret-key-0123456789"})
    assert (result.exit_code, result.stdout) == (
        0, "no campaigns yet: promo-engine campaigns apply campaigns/\n")
    assert list(tmp_path.iterdir()) == []


# --- pause -----------------------------------------------------------------------------------

def test_pause_stops_an_open_campaign_and_audits_who_when_and_why(app, tmp_path, run, clock):
    install_campaigns(app, CAMPAIGNS, tmp_path)
    clock.now = PAUSED_AT
    result = run("pause", "dining", "--reason", "  budget review  ")
    assert (result.exit_code, result.stdout) == (0, "paused dining (was open)\n")
    assert status(app, "dining") == "paused"
    assert audit_rows(app, "dining")[1:] == [
        ("open", "paused", "cli:alice", "budget review", PAUSED_AT)]


def test_pause_bumps_the_campaigns_revision_once(app, tmp_path, run):
    install_campaigns(app, CAMPAIGNS, tmp_path)
    before = revision(app)
    assert run("pause", "dining", "--reason", "review").exit_code == 0
    assert revision(app) == before + 1


def test_pause_a_scheduled_campaign(app, tmp_path, run):
    install_campaigns(app, CAMPAIGNS, tmp_path)
    result = run("pause", "next-year", "--reason", "not approved yet")
    assert (result.exit_code, result.stdout) == (0, "paused next-year (was scheduled)\n")
    assert status(app, "next-year") == "paused"


@pytest.mark.parametrize("campaign_id, message", [
    ("early-bird", "campaign early-bird is closed; only scheduled or open campaigns can be "
                   "paused"),
    ("on-hold", "campaign on-hold is already paused"),
    ("dinner", "no campaign dinner; `promo-engine campaigns list` shows them"),
])
def test_pause_refused_exits_1_and_changes_nothing(app, tmp_path, run, campaign_id, message):
    install_campaigns(app, CAMPAIGNS, tmp_path)
    run("pause", "on-hold", "--reason", "legal")
    before = (revision(app), audit_rows(app, campaign_id))
    result = run("pause", campaign_id, "--reason", "again")
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", f"promo-engine: {message}\n")
    assert (revision(app), audit_rows(app, campaign_id)) == before


@pytest.mark.parametrize("args", [(), ("--reason", ""), ("--reason", "   ")])
def test_pause_needs_a_reason(app, tmp_path, run, args):
    install_campaigns(app, CAMPAIGNS, tmp_path)
    result = run("pause", "dining", *args)
    assert result.exit_code == 2
    assert "--reason" in result.stderr
    assert status(app, "dining") == "open"


def test_pause_on_a_database_with_nothing_applied(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["campaigns", "pause", "dining", "--reason", "x"], env={
        "DATABASE_URL": f"sqlite:///{tmp_path / 'promo.db'}",
        "SECRET_KEY": "test-secret-key-0123456789"})
    assert (result.exit_code, result.stderr) == (
        1, "promo-engine: no campaign dining: nothing has been applied yet "
           "(promo-engine campaigns apply campaigns/)\n")


# --- resume ----------------------------------------------------------------------------------

def test_resume_reopens_a_campaign_inside_its_dates_and_audits_it(app, tmp_path, run, clock):
    install_campaigns(app, CAMPAIGNS, tmp_path)
    clock.now = PAUSED_AT
    run("pause", "dining", "--reason", "budget review")
    clock.now = RESUMED_AT
    result = run("resume", "dining", "--reason", "approved")
    assert (result.exit_code, result.stdout) == (0, "resumed dining (now open)\n")
    assert audit_rows(app, "dining")[1:] == [
        ("open", "paused", "cli:alice", "budget review", PAUSED_AT),
        ("paused", "open", "cli:alice", "approved", RESUMED_AT)]


def test_resume_without_a_reason_records_an_empty_one(app, tmp_path, run):
    install_campaigns(app, CAMPAIGNS, tmp_path)
    run("pause", "dining", "--reason", "review")
    assert run("resume", "dining").exit_code == 0
    assert [row[:4] for row in audit_rows(app, "dining")][-1] == (
        "paused", "open", "cli:alice", "")


def test_resume_before_the_start_goes_back_to_scheduled(app, tmp_path, run):
    install_campaigns(app, CAMPAIGNS, tmp_path)
    run("pause", "next-year", "--reason", "not approved yet")
    result = run("resume", "next-year")
    assert (result.exit_code, result.stdout) == (
        0, "resumed next-year (now scheduled: opens 2031-01-01 00:00 Asia/Shanghai)\n")
    assert status(app, "next-year") == "scheduled"


def test_resume_after_the_end_closes(app, tmp_path, run, clock):
    install_campaigns(app, CAMPAIGNS, tmp_path)
    run("pause", "dining", "--reason", "review")
    clock.now = datetime(2030, 3, 1, tzinfo=UTC)
    result = run("resume", "dining")
    assert (result.exit_code, result.stdout) == (
        0, "resumed dining (now closed: ended 2030-01-01 00:00 Asia/Shanghai)\n")
    assert status(app, "dining") == "closed"


@pytest.mark.parametrize("campaign_id, message", [
    ("dining", "campaign dining is open; only paused campaigns can be resumed"),
    ("early-bird", "campaign early-bird is closed; only paused campaigns can be resumed"),
    ("dinner", "no campaign dinner; `promo-engine campaigns list` shows them"),
])
def test_resume_refused_exits_1_and_changes_nothing(app, tmp_path, run, campaign_id, message):
    install_campaigns(app, CAMPAIGNS, tmp_path)
    before = (revision(app), audit_rows(app, campaign_id))
    result = run("resume", campaign_id)
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", f"promo-engine: {message}\n")
    assert (revision(app), audit_rows(app, campaign_id)) == before


# --- the operator in the audit log -----------------------------------------------------------

def test_apply_records_the_operator_and_the_time(app, tmp_path, monkeypatch, run):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dining.yaml").write_text(f"id: dining\ntype: holiday_discount\n{OPEN_RANGE}"
                                          "params: {percent: 15}\n")
    assert run("apply", "dining.yaml").exit_code == 0
    assert audit_rows(app, "dining") == [
        (None, "open", "cli:alice", "created from dining.yaml", APPLIED)]


def test_operator_is_plain_cli_when_the_login_cannot_be_told(monkeypatch):
    def unknown():
        raise OSError("No username set in the environment")
    monkeypatch.setattr(getpass, "getuser", unknown)
    assert campaigns_cli.operator() == "cli"


# --- history ---------------------------------------------------------------------------------

def test_history_lists_the_changes_oldest_first_in_local_time(app, tmp_path, monkeypatch,
                                                              run, clock):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dining.yaml").write_text(f"id: dining\ntype: holiday_discount\n{OPEN_RANGE}"
                                          "params: {percent: 15}\n")
    run("apply", "dining.yaml")
    clock.now = PAUSED_AT
    run("pause", "dining", "--reason", "budget review")
    clock.now = RESUMED_AT
    run("resume", "dining")
    result = run("history", "dining")
    assert (result.exit_code, result.stdout) == (0, """\
dining: times in Asia/Shanghai
AT                   CHANGE         ACTOR      REASON
2026-11-22 18:00:00  — → open       cli:alice  created from dining.yaml
2026-11-22 18:05:30  open → paused  cli:alice  budget review
2026-11-23 09:00:00  paused → open  cli:alice  —
""")
    assert json.loads(run("history", "dining", "--json").stdout) == [
        {"at": "2026-11-22T18:00:00+08:00", "from": None, "to": "open", "actor": "cli:alice",
         "reason": "created from dining.yaml"},
        {"at": "2026-11-22T18:05:30.250000+08:00", "from": "open", "to": "paused",
         "actor": "cli:alice", "reason": "budget review"},
        {"at": "2026-11-23T09:00:00+08:00", "from": "paused", "to": "open",
         "actor": "cli:alice", "reason": ""}]


def test_history_of_an_unknown_campaign_exits_1(app, run):
    result = run("history", "dinner")
    assert (result.exit_code, result.stderr) == (
        1, "promo-engine: no campaign dinner; `promo-engine campaigns list` shows them\n")


# --- end to end: a running service follows a pause and a resume ------------------------------

def campaigns_cli_subprocess(database_url: str, *args: str) -> str:
    env = dict(os.environ, DATABASE_URL=database_url, SECRET_KEY="test-secret-key-0123456789",
               PROMO_LOAD_ENTRY_POINTS="0")
    result = subprocess.run([sys.executable, "-m", "promo_engine.cli", "campaigns", *args],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def rewarding(wallet, event_id: str) -> list[str | None]:
    body = wallet.event(**payment(event_id, "100.00")).get_json()
    return [reward["campaign_id"] for reward in body["rewards"]]


def test_a_paused_campaign_gives_no_rewards_and_a_resumed_one_does_again(app, settings,
                                                                         tmp_path):
    install_campaigns(app, f"id: flash\ntype: holiday_discount\n{OPEN_RANGE}"
                           "params: {amount_off: \"5.00\"}\n", tmp_path)
    wallet = new_wallet_client(app)
    assert rewarding(wallet, "p1") == [None, "flash"]

    assert campaigns_cli_subprocess(settings.database_url, "pause", "flash",
                                    "--reason", "fraud alert") == "paused flash (was open)\n"
    time.sleep(RELOAD_INTERVAL_SECONDS + 0.2)
    assert rewarding(wallet, "p2") == [None]
    assert [c["id"] for c in wallet.get("/v1/campaigns").get_json()["campaigns"]] == []

    assert campaigns_cli_subprocess(settings.database_url, "resume", "flash") == \
        "resumed flash (now open)\n"
    time.sleep(RELOAD_INTERVAL_SECONDS + 0.2)
    assert rewarding(wallet, "p3") == [None, "flash"]
