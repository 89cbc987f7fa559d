"""Erasure (`promo-engine users erase`): the user's id replaced by a random pseudonym in
every row, device ids deleted, every sum of the ledger unchanged, the id found nowhere in a
dump of the database afterwards; audited, idempotent, and safe against a racing event. On
SQLite and PostgreSQL, with campaign counters in the database and in Redis."""
from __future__ import annotations

import json
import re
import subprocess
import threading

import pytest
from sqlalchemy import create_engine, func, select, text

from promo_engine.ledger.erasure import erase_user
from promo_engine.ledger.extensions import db
from promo_engine.ledger.models import (EventRecord, RewardRecord, UserCampaignUsage,
                                        UserRecord, WebhookDelivery, utcnow)
from promo_engine.ledger.risk_models import DenylistChange, DenylistEntry, UserErasure

from conftest import make_settings, running_app
from wallet import OPEN_RANGE, activation, install_campaigns, new_wallet_client, payment, refund

# Distinctive, so that finding it in a dump means it was left there, not a coincidence.
ERASED = "zq7Xerase-me_4471"
OTHER = "other-user-1"
PSEUDONYM = re.compile(r"erased-[0-9a-f]{24}")

CAMPAIGNS = f"""
id: tenner
type: holiday_discount
{OPEN_RANGE}limits: {{per_user: 5}}
budget: {{amount: "1000.00"}}
params: {{amount_off: "10.00"}}
---
id: double
type: points_multiplier
{OPEN_RANGE}params: {{multiplier: 2}}
---
id: welcome
type: first_activation_bonus
{OPEN_RANGE}params:
  voucher: {{amount: "5.00", valid_days: 3650}}
---
id: mall
type: points_exchange
{OPEN_RANGE}limits: {{max_redemptions: 100}}
params:
  cost_points: 50
  cashback: "2.00"
"""


@pytest.fixture
def settings(counters_settings):
    return counters_settings


@pytest.fixture
def wallet(app, tmp_path):
    install_campaigns(app, CAMPAIGNS, tmp_path)
    with app.app_context():
        from promo_engine.webhooks.endpoints import add_endpoint
        add_endpoint("https://wallet.example/hooks")
    return new_wallet_client(app)


def history(wallet, user_id: str, prefix: str) -> None:
    """Activation (a voucher), payments on a device (a discount, points), a refund, a
    redemption (points for cashback) and a payment with the voucher."""
    assert wallet.event(**activation(f"{prefix}-act", user_id=user_id,
                                     at="2026-06-14T09:00:00+08:00")).status_code == 201
    for n in range(3):
        response = wallet.event(**payment(f"{prefix}-pay-{n}", "120.00", user_id=user_id,
                                          device_id=f"dev-{prefix}",
                                          at=f"2026-06-15T1{n}:00:00+08:00"))
        assert response.status_code == 201, response.get_json()
    assert wallet.event(**refund(f"{prefix}-ref", f"{prefix}-pay-0", "120.00",
                                 user_id=user_id)).status_code == 201
    response = wallet.event(event_id=f"{prefix}-mall", type="redemption", user_id=user_id,
                            occurred_at="2026-06-16T13:00:00+08:00", campaign_id="mall")
    assert response.status_code == 201, response.get_json()
    code = wallet.get(f"/v1/users/{user_id}/vouchers").get_json()["vouchers"][0]["code"]
    response = wallet.event(**payment(f"{prefix}-pay-v", "50.00", user_id=user_id,
                                      at="2026-06-16T14:00:00+08:00", vouchers=[code]))
    assert response.status_code == 201, response.get_json()


def totals(app) -> dict:
    """What erasure must not change: every campaign's sums, the ledger's totals."""
    with app.app_context():
        s = db.session
        result = {
            "rewards": sorted((tuple(r) for r in s.execute(
                select(RewardRecord.campaign_id, RewardRecord.kind, RewardRecord.reason,
                       func.count(), func.sum(RewardRecord.amount_minor),
                       func.sum(RewardRecord.points))
                .group_by(RewardRecord.campaign_id, RewardRecord.kind, RewardRecord.reason))),
                key=repr),
            "balances": tuple(s.execute(select(func.count(), func.sum(UserRecord.points_balance),
                                               func.sum(UserRecord.pending_points),
                                               func.sum(UserRecord.payments),
                                               func.sum(UserRecord.activations))).one()),
            "usage": sorted(tuple(r) for r in s.execute(
                select(UserCampaignUsage.campaign_id, func.count(),
                       func.sum(UserCampaignUsage.uses))
                .group_by(UserCampaignUsage.campaign_id))),
            "campaign_usage": sorted(tuple(r) for r in s.execute(
                text("SELECT campaign_id, spent, redemptions FROM campaign_usage"))),
            "rows": {table: s.execute(text(f"SELECT count(*) FROM {table}")).scalar()
                     for table in ("events", "rewards", "points_lots", "points_lot_moves",
                                   "vouchers", "user_campaign_daily_usage", "risk_counters",
                                   "device_day_users", "webhook_deliveries")},
        }
        s.rollback()
    return result


def user_rows(app, user_id: str) -> dict:
    with app.app_context():
        s = db.session
        user = s.get(UserRecord, user_id)
        result = {
            "user": None if user is None else (user.activations, user.payments,
                                               user.points_balance, user.pending_points),
            "events": sorted(s.scalars(select(EventRecord.event_id)
                                       .where(EventRecord.user_id == user_id))),
            "rewards": s.scalar(select(func.count()).select_from(RewardRecord)
                                .where(RewardRecord.user_id == user_id)),
        }
        s.rollback()
    return result


def dump(database_url: str) -> str:
    """All of the database as text: pg_dump on PostgreSQL, iterdump on SQLite."""
    if database_url.startswith("sqlite"):
        import sqlite3
        connection = sqlite3.connect(database_url.removeprefix("sqlite:///"))
        try:
            return "\n".join(connection.iterdump())
        finally:
            connection.close()
    url = database_url.replace("postgresql+psycopg://", "postgresql://")
    return subprocess.run(["pg_dump", "--no-owner", url], check=True, capture_output=True,
                          text=True).stdout


def redis_counters(app) -> dict | None:
    from promo_engine.service import promo_service
    reservations = promo_service(app).reservations
    if reservations is None:
        return None
    return reservations.counters(["tenner", "double", "welcome", "mall"])


def test_erasure_pseudonymises_every_row_and_changes_no_sum(app, wallet, settings):
    history(wallet, ERASED, "e")
    history(wallet, OTHER, "o")
    with app.app_context():  # a denylisting that names the user in its reason too
        from promo_engine.ledger import denylist
        from promo_engine.ledger.database import run_in_transaction
        run_in_transaction(db.session, lambda: denylist.add(
            db.session, "user", ERASED, reason=f"{ERASED} farms bonuses", actor="risk-team"))
    assert ERASED in dump(settings.database_url)
    before, erased_before = totals(app), user_rows(app, ERASED)
    other_before = user_rows(app, OTHER)
    counters_before = redis_counters(app)
    assert erased_before["user"] is not None and len(erased_before["events"]) == 7
    assert (before["rows"]["device_day_users"], before["rows"]["risk_counters"]) == (2, 10)

    with app.app_context():
        erasure = erase_user(db.session, ERASED, actor="ticket-1234", now=utcnow())
    assert PSEUDONYM.fullmatch(erasure.pseudonym)
    pseudonym = erasure.pseudonym
    assert erasure.rows == {
        "events.device_id": 3, "users": 1, "events": 7, "rewards": 19,
        "user_campaign_usage": 4, "user_campaign_daily_usage": 6, "points_lots": 8,
        "vouchers": 1, "device_day_users": 1,
        "risk_counters": 4,  # its days 06-14, 06-15 and 06-16, and the month
        "reward_holds": 0, "denylist": 2,  # the add (renamed) and the removal
        "webhook_deliveries": 20}

    after = totals(app)
    assert after["rewards"] == before["rewards"]
    assert after["balances"] == before["balances"]
    assert after["usage"] == before["usage"]
    assert after["campaign_usage"] == before["campaign_usage"]
    assert after["rows"] == before["rows"]
    assert user_rows(app, ERASED) == {"user": None, "events": [], "rewards": 0}
    assert user_rows(app, pseudonym) == erased_before  # counters moved with the id
    assert user_rows(app, OTHER) == other_before
    with app.app_context():
        s = db.session
        assert s.scalars(select(EventRecord.device_id).where(
            EventRecord.user_id == pseudonym, EventRecord.device_id.is_not(None))).all() == []
        assert sorted(s.scalars(select(EventRecord.device_id).where(
            EventRecord.user_id == OTHER, EventRecord.device_id.is_not(None)))) == ["dev-o"] * 3
        audit = [(r.pseudonym, r.actor) for r in s.scalars(select(UserErasure))]
        assert audit == [(pseudonym, "ticket-1234")]
        assert s.scalars(select(DenylistEntry)).all() == []  # no event can name a pseudonym
        changes = [(c.action, c.kind, c.value, c.reason)
                   for c in s.scalars(select(DenylistChange).order_by(DenylistChange.id))]
        assert changes == [("add", "user", pseudonym, f"{pseudonym} farms bonuses"),
                           ("remove", "user", pseudonym, "user erased")]
        payloads = [json.loads(p) for p in s.scalars(select(WebhookDelivery.payload))]
        users = {p["data"].get("user_id") for p in payloads}
        assert users == {pseudonym, OTHER}
        s.rollback()
    assert ERASED not in dump(settings.database_url)
    assert redis_counters(app) == counters_before
    if counters_before is not None:  # Redis counters agree with the ledger afterwards
        from promo_engine.campaigns.reconcile import reconcile
        from promo_engine.service import promo_service
        with app.app_context():
            reconcile(promo_service(app).reservations)
        assert redis_counters(app) == counters_before
    # The erased user's events are still answered as replays, byte for byte.
    replay = wallet.event(**payment("e-pay-1", "120.00", user_id=ERASED, device_id="dev-e",
                                    at="2026-06-15T11:00:00+08:00"))
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"


def test_erasing_again_or_an_unknown_id_finds_nothing(app, wallet):
    wallet.event(**payment("p1", "120.00", user_id=ERASED))
    with app.app_context():
        first = erase_user(db.session, ERASED, actor="cli", now=utcnow())
        assert first is not None
        assert erase_user(db.session, ERASED, actor="cli", now=utcnow()) is None
        assert erase_user(db.session, "never-seen", actor="cli", now=utcnow()) is None
        assert db.session.scalar(select(func.count()).select_from(UserErasure)) == 1
        assert db.session.get(UserRecord, "never-seen") is None  # its lock row is gone too
        db.session.rollback()


def test_a_user_only_on_the_denylist_is_erased_there(app, wallet):
    with app.app_context():
        from promo_engine.ledger import denylist
        from promo_engine.ledger.database import run_in_transaction
        run_in_transaction(db.session, lambda: denylist.add(
            db.session, "user", ERASED, reason="", actor="risk-team"))
        erasure = erase_user(db.session, ERASED, actor="cli", now=utcnow())
        assert erasure.rows["denylist"] == 2 and erasure.rows["users"] == 0
        assert db.session.get(UserRecord, erasure.pseudonym) is None
        assert db.session.get(UserRecord, ERASED) is None
        db.session.rollback()


def test_an_event_racing_the_erasure_is_erased_or_makes_a_new_user(app, wallet):
    """Each round: a payment of the user and the erasure at once. Either the payment
    committed first (and is under the pseudonym with the rest) or it came after (a new user
    with just that payment): never a mix."""
    outcomes = set()
    for round_ in range(6):
        user_id = f"{ERASED}-{round_}"
        wallet.event(**payment(f"first-{round_}", "120.00", user_id=user_id))
        barrier = threading.Barrier(2)
        erasures = []

        def erase():
            barrier.wait()
            with app.app_context():
                erasures.append(erase_user(db.session, user_id, actor="cli", now=utcnow()))
                db.session.remove()

        def pay():
            barrier.wait()
            response = new_client.event(**payment(f"race-{round_}", "120.00", user_id=user_id))
            assert response.status_code == 201, response.get_json()

        new_client = new_wallet_client(app)
        threads = [threading.Thread(target=erase), threading.Thread(target=pay)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        pseudonym = erasures[0].pseudonym
        erased, fresh = user_rows(app, pseudonym), user_rows(app, user_id)
        if fresh["events"]:  # after: a new user with that payment only
            assert erased["events"] == [f"first-{round_}"]
            assert fresh["events"] == [f"race-{round_}"] and fresh["user"][1] == 1
            outcomes.add("after")
        else:  # before: erased with the rest
            assert erased["events"] == [f"first-{round_}", f"race-{round_}"]
            assert erased["user"][1] == 2 and fresh["user"] is None
            outcomes.add("before")
    assert outcomes <= {"before", "after"}


def test_users_erase_command(database_url, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from promo_engine.cli import main
    settings = make_settings(database_url)
    with running_app(settings) as app:
        install_campaigns(app, CAMPAIGNS, tmp_path)
        new_wallet_client(app).event(**payment("p1", "120.00", user_id=ERASED))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner(env={"DATABASE_URL": database_url, "SECRET_KEY": settings.secret_key,
                            "REDIS_URL": None})
    done = runner.invoke(main, ["users", "erase", ERASED, "--actor", "ticket-9"])
    assert done.exit_code == 0, done.output
    match = re.fullmatch(r"erased: replaced by (erased-[0-9a-f]{24}) in (\d+) rows "
                         r"\(the erased id is kept nowhere\)\n", done.output)
    assert match, done.output
    again = runner.invoke(main, ["users", "erase", ERASED])
    assert (again.exit_code, again.output) == (
        0, "nothing found: no stored row holds this user id (unknown, or erased before); "
           "nothing changed\n")
    as_json = runner.invoke(main, ["users", "erase", "nobody", "--json"])
    assert (as_json.exit_code, json.loads(as_json.output)) == (
        0, {"erased": False, "pseudonym": None})
    bad = runner.invoke(main, ["users", "erase", "no spaces"])
    assert bad.exit_code == 2 and "USER_ID" in bad.output and "Traceback" not in bad.output
    engine = create_engine(database_url)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT pseudonym, actor FROM user_erasures")).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [(match.group(1), "ticket-9")]
