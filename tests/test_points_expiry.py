"""Points in time, with exact values (contract: "Points: pending, expiry and spending"):
pending points (PROMO_POINTS_PENDING_DAYS) and how they mature, expiry by the sweep (one
entry per lot, exactly once, late events, points a cancel or refund brings back to an
expired lot), expiry instants across clock changes, and a long mixed run after which every
user's points are derived from the rows alone. The service's clock stands at NOW unless a
test moves it (`set_now`); the sweep is run as of any instant.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from conftest import reused_schema_url
from points_ledger import (EXCHANGES, NOW, TRIPLE, WELCOME, cancel, check_ledger, error,
                           ledger_counts, lots, parse, points_app, points_view, redemption,
                           remaining, set_now, sweep)
from promo_engine.ledger.lots import LotPolicy
from wallet import activation, payment, refund, without_ids

UTC = timezone.utc
DAY = timedelta(days=1)
MICROSECOND = timedelta(microseconds=1)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """SQLite and PostgreSQL, an emptied schema per test (counters_settings uses it too)."""
    return reused_schema_url(request, tmp_path)


def rfc(instant: datetime) -> str:
    return instant.isoformat().replace("+00:00", "Z")


def expired_entries(wallet, user_id: str = "u_1") -> list[dict]:
    return [entry for entry in points_view(wallet, user_id)["entries"]
            if entry.get("reason") == "expired"]


# -- pending points -------------------------------------------------------------------------

def test_payment_points_are_pending_and_cannot_be_spent_activation_points_can(database_url,
                                                                             tmp_path):
    paid_at = NOW - DAY
    with points_app(database_url, tmp_path, TRIPLE + "---\n" + WELCOME, points_pending_days=7,
                    points_expire_months=12) as (app, wallet):
        body = wallet.event(**payment("p_1", "100.00", at=rfc(paid_at))).get_json()
        assert [r["points"] for r in body["rewards"]] == [100, 200]
        assert body["points_balance"] == 0
        view = points_view(wallet)
        assert (view["points_balance"], view["pending_points"], view["expiring"]) == (0, 300, [])
        assert [(lot["pending"], lot["available_at"]) for lot in lots(app)] == \
            [(True, paid_at + 7 * DAY)] * 2
        assert error(wallet.event(**redemption("burn_1", points=1))) == (
            422, "insufficient_points", {"points": ["1 points are needed and 0 are available"]})
        body = wallet.event(**activation("act", at=rfc(paid_at))).get_json()
        assert body["points_balance"] == 30
        assert wallet.event(**redemption("burn_2", points=30)).get_json()["points_balance"] == 0
        check_ledger(app, wallet)
        assert sweep(app, paid_at + 7 * DAY - MICROSECOND) == (0, 0)
        assert points_view(wallet)["pending_points"] == 300
        assert sweep(app, paid_at + 7 * DAY) == (0, 2)
        view = points_view(wallet)
        assert (view["points_balance"], view["pending_points"]) == (300, 0)
        local_day = (paid_at + timedelta(hours=8)).date()
        local = local_day.replace(year=local_day.year + 1)
        assert view["expiring"] == [{"points": 300, "expires_at": f"{local}T00:00:00+08:00"}]
        assert sweep(app, paid_at + 8 * DAY) == (0, 0)
        check_ledger(app, wallet)


def test_points_of_a_payment_older_than_the_pending_days_are_available_at_once(database_url,
                                                                              tmp_path):
    with points_app(database_url, tmp_path, points_pending_days=7) as (app, wallet):
        body = wallet.event(**payment("p_1", "100.00", at=rfc(NOW - 8 * DAY))).get_json()
        assert body["points_balance"] == 100
        [lot] = lots(app)
        assert (lot["pending"], lot["available_at"]) == (False, NOW)
        assert points_view(wallet)["pending_points"] == 0
        check_ledger(app, wallet)


@pytest.mark.parametrize("next_event", ["redemption", "payment"])
def test_pending_points_mature_at_the_users_next_event_after_their_time(database_url,
                                                                        tmp_path, next_event):
    with points_app(database_url, tmp_path, points_pending_days=7) as (app, wallet):
        paid_at = NOW - DAY
        wallet.event(**payment("p_1", "100.00", at=rfc(paid_at)))
        assert points_view(wallet)["pending_points"] == 100
        set_now(app, paid_at + 7 * DAY - MICROSECOND)
        assert error(wallet.event(**redemption("early", points=10)))[1] == "insufficient_points"
        set_now(app, paid_at + 7 * DAY)
        if next_event == "redemption":
            body = wallet.event(**redemption("burn", points=10)).get_json()
            assert body["points_balance"] == 90
        else:  # an older payment: its own points are available at once
            body = wallet.event(**payment("p_2", "10.00", at=rfc(NOW - 2 * DAY))).get_json()
            assert body["points_balance"] == 110
        assert points_view(wallet)["pending_points"] == 0
        assert [lot["pending"] for lot in lots(app)] == [False] * len(lots(app))
        check_ledger(app, wallet)


def test_refund_takes_pending_points_from_their_own_lot(database_url, tmp_path):
    with points_app(database_url, tmp_path, points_pending_days=7) as (app, wallet):
        wallet.event(**payment("p_old", "100.00", at=rfc(NOW - 10 * DAY)))
        wallet.event(**payment("p_new", "100.00", at=rfc(NOW - DAY)))
        body = wallet.event(**refund("r_1", "p_new", "50.00", at=rfc(NOW))).get_json()
        assert (without_ids(body["rewards"]), body["points_balance"]) == (
            [{"campaign_id": None, "kind": "points", "points": -50}], 100)
        view = points_view(wallet)
        assert (view["points_balance"], view["pending_points"]) == (100, 50)
        assert remaining(app) == {"p_old": 100, "p_new": 50}
        check_ledger(app, wallet)


@pytest.mark.parametrize("matured_by", ["sweep", "next payment"])
def test_a_debt_is_paid_by_pending_points_when_they_mature(database_url, tmp_path,
                                                           matured_by):
    """Pending points are never taken for a refund of another payment: the debt waits for
    them to become available."""
    with points_app(database_url, tmp_path, points_pending_days=7) as (app, wallet):
        wallet.event(**payment("p_old", "100.00", at=rfc(NOW - 10 * DAY)))
        wallet.event(**redemption("burn", points=100))
        new_at = NOW - DAY
        wallet.event(**payment("p_new", "150.00", at=rfc(new_at)))
        body = wallet.event(**refund("r_1", "p_old", "100.00", at=rfc(NOW))).get_json()
        assert body["points_balance"] == -100
        assert points_view(wallet)["pending_points"] == 150
        check_ledger(app, wallet)
        if matured_by == "sweep":
            assert sweep(app, new_at + 7 * DAY) == (0, 1)
        else:  # an old payment, available at once: after the debt is paid
            set_now(app, new_at + 7 * DAY)
            body = wallet.event(**payment("p_x", "10.00", at=rfc(NOW - 10 * DAY))).get_json()
            assert body["points_balance"] == 60
        view = points_view(wallet)
        assert (view["points_balance"], view["pending_points"]) == \
            ({"sweep": 50, "next payment": 60}[matured_by], 0)
        [lot] = [lot for lot in lots(app) if lot["event_id"] == "p_new"]
        assert (lot["remaining"], lot["debt_paid"], lot["pending"]) == (50, 100, False)
        check_ledger(app, wallet)


def test_refund_and_cancel_count_pending_points_that_came_due(database_url, tmp_path):
    """At a refund or cancel after pending points came due (before any sweep), they are
    available: taken back before the balance goes negative, and in points_balance."""
    with points_app(database_url, tmp_path, points_pending_days=7) as (app, wallet):
        wallet.event(**payment("p_old", "100.00", at=rfc(NOW - 10 * DAY)))
        wallet.event(**redemption("burn", points=60))
        wallet.event(**payment("p_new", "100.00", at=rfc(NOW - DAY)))
        set_now(app, NOW + 6 * DAY)
        body = wallet.event(**cancel("c_1", "burn")).get_json()
        assert body["points_balance"] == 200
        wallet.event(**redemption("burn_2", points=150))  # 100 of p_old, 50 of p_new
        wallet.event(**payment("p_late", "30.00", at=rfc(NOW + 5 * DAY)))  # pending
        set_now(app, NOW + 12 * DAY)
        body = wallet.event(**refund("r_1", "p_old", "100.00")).get_json()
        assert body["points_balance"] == -20  # 100 spent: 50 of p_new, 30 of p_late, 20 owed
        view = points_view(wallet)
        assert (view["points_balance"], view["pending_points"]) == (-20, 0)
        assert remaining(app) == {"p_old": 0, "p_new": 0, "p_late": 0}
        check_ledger(app, wallet)


# -- expiry ---------------------------------------------------------------------------------

def test_sweep_writes_one_expiry_entry_per_lot_exactly_once(database_url, tmp_path):
    with points_app(database_url, tmp_path, TRIPLE, points_expire_months=12) as (app, wallet):
        wallet.event(**payment("p_1", "100.00", at="2026-03-15T14:00:00+08:00"))  # 100 + 200
        wallet.event(**payment("p_2", "50.00", merchant_id="m_200",
                               at="2026-03-15T20:00:00+08:00"))
        wallet.event(**payment("p_3", "10.00", merchant_id="m_200",
                               at="2026-03-16T09:00:00+08:00"))
        wallet.event(**redemption("burn", points=120))  # all of p_1's base, 20 of triple
        assert remaining(app) == {"p_1": 0, "p_1/triple": 180, "p_2": 50, "p_3": 10}
        instant = parse("2027-03-15T00:00:00+08:00")
        assert sweep(app, instant - MICROSECOND) == (0, 0)
        assert sweep(app, instant) == (2, 0)
        entries = expired_entries(wallet)
        assert entries == [
            {"reward_id": entry["reward_id"], "event_id": None, "campaign_id": None,
             "kind": "points", "points": points, "reason": "expired",
             "created_at": "2027-03-14T16:00:00Z"} for entry, points in zip(entries, (-50, -180))]
        assert entries[0]["reward_id"] != entries[1]["reward_id"]
        view = points_view(wallet)
        assert view["points_balance"] == 10
        assert view["expiring"] == [{"points": 10, "expires_at": "2027-03-16T00:00:00+08:00"}]
        assert remaining(app) == {"p_1": 0, "p_1/triple": 0, "p_2": 0, "p_3": 10}
        counts = ledger_counts(app)
        assert sweep(app, instant) == (0, 0)
        assert sweep(app, instant + timedelta(hours=1)) == (0, 0)
        assert ledger_counts(app) == counts
        check_ledger(app, wallet)


def test_a_late_event_expires_at_the_next_sweep(database_url, tmp_path):
    """Earned 13 months ago with EXPIRE_MONTHS=12: the lot is already past its expiry."""
    with points_app(database_url, tmp_path, points_expire_months=12) as (app, wallet):
        wallet.event(**payment("p_now", "100.00", at=rfc(NOW - DAY)))
        earned = NOW - timedelta(days=396)
        wallet.event(**payment("p_late", "40.00", at=rfc(earned)))
        [late] = [lot for lot in lots(app) if lot["event_id"] == "p_late"]
        assert late["expires_at"] == parse("2026-11-03T00:00:00+08:00") < NOW
        # spending expires what is due first: the late points cannot be spent
        assert error(wallet.event(**redemption("burn", points=101)))[1] == "insufficient_points"
        assert sweep(app, NOW) == (1, 0)
        [entry] = expired_entries(wallet)
        assert (entry["points"], entry["event_id"]) == (-40, None)
        assert points_view(wallet)["points_balance"] == 100
        assert sweep(app, NOW) == (0, 0)
        assert len(expired_entries(wallet)) == 1
        check_ledger(app, wallet)


def test_points_a_cancel_returns_to_an_expired_lot_expire_again(database_url, tmp_path):
    with points_app(database_url, tmp_path, EXCHANGES,
                    points_expire_months=12) as (app, wallet):
        wallet.event(**payment("p_1", "100.00", at="2026-03-15T14:00:00+08:00"))
        wallet.event(**payment("p_2", "100.00", at="2026-09-01T14:00:00+08:00"))
        wallet.event(**redemption("ex", campaign_id="mall-voucher"))  # 50 from p_1
        wallet.event(**redemption("burn", points=80))  # 50 from p_1, 30 from p_2
        after = parse("2027-03-16T00:00:00+08:00")
        assert sweep(app, after) == (0, 0)  # p_1 has nothing left to expire
        body = wallet.event(**cancel("c_1", "burn")).get_json()
        assert body["points_balance"] == 150
        assert remaining(app) == {"p_1": 50, "p_2": 100}
        assert sweep(app, after) == (1, 0)
        [entry] = expired_entries(wallet)
        assert (entry["points"], entry["created_at"]) == (-50, "2027-03-15T16:00:00Z")
        wallet.event(**cancel("c_2", "ex"))
        assert sweep(app, after) == (1, 0)
        assert [e["points"] for e in expired_entries(wallet)] == [-50, -50]
        view = points_view(wallet)
        assert view["points_balance"] == 100
        assert view["expiring"] == [{"points": 100, "expires_at": "2027-09-01T00:00:00+08:00"}]
        assert sweep(app, after) == (0, 0)
        check_ledger(app, wallet)


def test_points_a_refund_returns_to_an_expired_lot_expire_again(database_url, tmp_path):
    with points_app(database_url, tmp_path, points_expire_months=12) as (app, wallet):
        wallet.event(**payment("p_1", "100.00", at="2026-03-15T14:00:00+08:00"))
        wallet.event(**payment("p_q", "10.00", merchant_id="m_200", redeem_points=60,
                               at="2026-06-01T10:00:00+08:00"))  # 60 of p_1; earns 9
        after = parse("2027-03-16T00:00:00+08:00")
        set_now(app, after)
        assert sweep(app, after) == (1, 0)  # p_1's 40
        body = wallet.event(**refund("r_1", "p_q", "10.00", at=rfc(after))).get_json()
        assert [r["points"] for r in body["rewards"] if r["kind"] == "points"] == [60, -9]
        assert body["points_balance"] == 60  # p_q's 9 taken back, p_1's 60 not swept yet
        assert remaining(app) == {"p_1": 60, "p_q": 0}
        assert sweep(app, after) == (1, 0)
        assert [e["points"] for e in expired_entries(wallet)] == [-60, -40]
        assert points_view(wallet)["points_balance"] == 0
        check_ledger(app, wallet)


def test_refund_of_expired_points_does_not_make_the_balance_negative(database_url, tmp_path):
    """Only what was spent of an expired lot can make the balance negative."""
    with points_app(database_url, tmp_path, points_expire_months=12) as (app, wallet):
        wallet.event(**payment("p_1", "100.00", at="2026-03-15T14:00:00+08:00"))
        wallet.event(**payment("p_2", "100.00", at="2026-04-15T14:00:00+08:00"))
        wallet.event(**redemption("burn", points=30))  # from p_1
        wallet.event(**redemption("burn_2", points=100))  # 70 from p_1, 30 from p_2
        wallet.event(**cancel("c_1", "burn_2"))  # back: p_1 70, p_2 100
        assert sweep(app, parse("2027-03-15T00:00:00+08:00")) == (1, 0)  # p_1's 70
        assert points_view(wallet)["points_balance"] == 100
        body = wallet.event(**refund("r_1", "p_1", "50.00")).get_json()
        assert (without_ids(body["rewards"]), body["points_balance"]) == (
            [{"campaign_id": None, "kind": "points", "points": -50}], 100)
        returned = points_view(wallet)["entries"][0]
        assert (returned["points"], returned["reason"], returned["event_id"],
                returned["campaign_id"]) == (50, "returned", "r_1", None)
        check_ledger(app, wallet)
        # the other half: 20 expired, and 30 spent, which come from p_2
        body = wallet.event(**refund("r_2", "p_1", "50.00")).get_json()
        assert body["points_balance"] == 70
        assert remaining(app) == {"p_1": 0, "p_2": 70}
        check_ledger(app, wallet)


def test_refund_of_a_wholly_expired_payment_leaves_the_balance(database_url, tmp_path):
    with points_app(database_url, tmp_path, points_expire_months=12) as (app, wallet):
        wallet.event(**payment("p_1", "100.00", at="2026-03-15T14:00:00+08:00"))
        wallet.event(**redemption("burn", points=40))
        sweep(app, parse("2027-03-15T00:00:00+08:00"))
        assert points_view(wallet)["points_balance"] == 0
        body = wallet.event(**refund("r_1", "p_1", "100.00")).get_json()
        assert body["points_balance"] == -40  # the 40 spent; the 60 expired are not owed
        check_ledger(app, wallet)


def test_racing_sweeps_and_refunds_expire_each_lot_exactly_once(database_url, tmp_path):
    """Three sweepers and the users' own refunds (which expire what is due first) at once:
    one expiry entry per lot, whoever writes it."""
    from concurrent.futures import ThreadPoolExecutor
    users = [f"u_{n}" for n in range(12)]
    due = parse("2027-03-15T00:00:00+08:00")
    with points_app(database_url, tmp_path, points_expire_months=12) as (app, wallet):
        for user_id in users:
            wallet.event(**payment(f"p_{user_id}", "100.00", user_id=user_id,
                                   at="2026-03-15T14:00:00+08:00"))
        set_now(app, due + timedelta(seconds=1))

        def refunds():
            return [wallet.event(**refund(f"r_{user_id}", f"p_{user_id}", "10.00",
                                            user_id=user_id)).status_code for user_id in users]

        with ThreadPoolExecutor(4) as pool:
            sweeps = [pool.submit(sweep, app, due) for _ in range(3)]
            refunded = pool.submit(refunds)
            assert refunded.result() == [201] * len(users)
            assert sum(job.result()[0] for job in sweeps) <= len(users)
        for user_id in users:
            assert [e["points"] for e in expired_entries(wallet, user_id)] == [-100], user_id
            assert points_view(wallet, user_id)["points_balance"] == 0
        assert sweep(app, due) == (0, 0)
        check_ledger(app, wallet)


# -- expiry instants in zones with clock changes --------------------------------------------

@pytest.mark.parametrize("zone, earned, local, utc", [
    ("Europe/Berlin", "2026-03-28T12:00:00+01:00", "2027-03-28T00:00:00+01:00",
     "2027-03-27T23:00:00Z"),  # clocks go forward at 02:00 that day
    ("Europe/Berlin", "2026-03-29T12:00:00+02:00", "2027-03-29T00:00:00+02:00",
     "2027-03-28T22:00:00Z"),
    ("Europe/Berlin", "2026-10-31T12:00:00+01:00", "2027-10-31T00:00:00+02:00",
     "2027-10-30T22:00:00Z"),  # earned in winter time, expires before that day's change
    ("America/Havana", "2026-03-14T12:00:00-04:00", "2027-03-14T01:00:00-04:00",
     "2027-03-14T05:00:00Z"),  # midnight is skipped: the day starts at 01:00
    ("America/Havana", "2026-03-14T03:30:00Z", "2027-03-13T00:00:00-05:00",
     "2027-03-13T05:00:00Z"),  # still the 13th in Havana
    ("America/Havana", "2026-11-07T12:00:00-05:00", "2027-11-07T00:00:00-04:00",
     "2027-11-07T04:00:00Z"),  # midnight comes twice: the first
])
def test_expiry_instants_across_clock_changes(database_url, tmp_path, zone, earned, local,
                                              utc):
    with points_app(database_url, tmp_path, points_expire_months=12,
                    timezone=zone) as (app, wallet):
        wallet.event(**payment("p_1", "100.00", at=earned))
        assert points_view(wallet)["expiring"] == [{"points": 100, "expires_at": local}]
        assert [lot["expires_at"] for lot in lots(app)] == [parse(utc)]
        assert sweep(app, parse(utc) - MICROSECOND) == (0, 0)
        assert sweep(app, parse(utc)) == (1, 0)
        assert expired_entries(wallet)[0]["created_at"] == utc
        check_ledger(app, wallet)


@pytest.mark.parametrize("zone, months, earned, utc", [
    ("Asia/Shanghai", 12, "2026-03-15T14:00:00+08:00", "2027-03-14T16:00:00Z"),
    ("Asia/Shanghai", 1, "2028-01-31T10:00:00+08:00", "2028-02-28T16:00:00Z"),  # Feb 29th
    ("Asia/Shanghai", 1, "2027-01-31T10:00:00+08:00", "2027-02-27T16:00:00Z"),  # Feb 28th
    ("Asia/Shanghai", 1, "2027-03-31T23:59:59+08:00", "2027-04-29T16:00:00Z"),  # Apr 30th
    ("Asia/Shanghai", 1200, "2026-12-31T10:00:00+08:00", "2126-12-30T16:00:00Z"),
    ("Europe/Berlin", 1, "2027-02-28T12:00:00+01:00", "2027-03-27T23:00:00Z"),
    ("Europe/Berlin", 1, "2027-09-30T12:00:00+02:00", "2027-10-29T22:00:00Z"),
    ("America/Sao_Paulo", 12, "2017-11-04T12:00:00-02:00", "2018-11-04T03:00:00Z"),  # skipped
    ("America/Sao_Paulo", 1, "2017-09-15T12:00:00-03:00", "2017-10-15T03:00:00Z"),  # skipped
    ("America/Sao_Paulo", 1, "2018-01-21T12:00:00-02:00", "2018-02-21T03:00:00Z"),  # -03
    ("America/Havana", 1, "2027-02-14T12:00:00-05:00", "2027-03-14T05:00:00Z"),  # skipped
    ("America/Havana", 1, "2027-10-07T12:00:00-04:00", "2027-11-07T04:00:00Z"),  # twice
])
def test_lot_policy_expires_at_the_first_instant_of_the_local_day(zone, months, earned, utc):
    policy = LotPolicy(expire_months=months, timezone=zone)
    assert policy.expires_at(parse(earned)) == parse(utc)


def test_lot_policy_never_expires_without_months_and_pends_payments_only():
    earned, now = parse("2026-03-15T14:00:00+08:00"), parse("2026-03-16T00:00:00Z")
    assert LotPolicy().expires_at(earned) is None
    policy = LotPolicy(pending_days=7)
    assert policy.available_at("payment", earned, now) == parse("2026-03-22T06:00:00Z")
    assert policy.available_at("activation", earned, now) == now
    assert policy.available_at("payment", earned, parse("2026-04-01T00:00:00Z")) == \
        parse("2026-04-01T00:00:00Z")
    assert LotPolicy().available_at("payment", earned, now) == now


# -- the ledger derived from its rows -------------------------------------------------------

def test_a_long_mixed_run_leaves_every_users_points_derivable(counters_settings, tmp_path):
    ago = lambda days: rfc(NOW - days * DAY)  # noqa: E731
    campaigns = EXCHANGES + "---\n" + TRIPLE + "---\n" + WELCOME
    steps = [
        payment("a1", "500.00", at="2026-02-10T10:00:00+08:00"),  # 500 + 1000 triple
        payment("a2", "50.00", merchant_id="m_200", at=ago(2)),  # pending
        activation("act1", at=ago(2)),
        redemption("ex1", campaign_id="mall-voucher"),
        redemption("b1", points=200, reference="o-1"),
        payment("a3", "100.00", merchant_id="m_200", redeem_points=500,
                at="2026-05-01T10:00:00+08:00"),
        refund("a1_r1", "a1", "250.00"),
        cancel("b1_c", "b1"),
        redemption("ex2", campaign_id="mall-cash"),
        refund("a3_r1", "a3", "100.00"),
        cancel("ex1_c", "ex1"),
        payment("c1", "100.00", user_id="u_2", merchant_id="m_200", at=ago(400)),  # late
        payment("c2", "200.00", user_id="u_2", merchant_id="m_200",
                at="2026-01-20T10:00:00+08:00"),
        "sweep now",
        redemption("c_b1", points=150, user_id="u_2"),
        refund("c1_r", "c1", "100.00", user_id="u_2"),  # expired: the balance keeps
        refund("c2_r1", "c2", "100.00", user_id="u_2"),  # 50 spent: a debt
        payment("c3", "80.00", user_id="u_2", merchant_id="m_200", at=ago(10)),
        payment("d1", "60.00", user_id="u_3", at=ago(1)),  # pending only
        (redemption("d_b1", points=1, user_id="u_3"), 422),
        refund("d1_r", "d1", "20.00", user_id="u_3"),
        (redemption("e_x0", campaign_id="mall-cash", user_id="u_4"), 422),
        payment("e1", "45.00", user_id="u_4", merchant_id="m_200", at=ago(30)),
        redemption("e_x1", campaign_id="mall-cash", user_id="u_4"),
        cancel("e_x1_c", "e_x1", user_id="u_4"),
        redemption("e_x2", campaign_id="mall-cash", user_id="u_4"),
        payment("e2", "30.00", user_id="u_4", redeem_points=5, at=ago(9)),
        refund("e2_r1", "e2", "10.00", user_id="u_4"),
        "sweep 2027-02-10T00:00:00+08:00",
        refund("e2_r2", "e2", "20.00", user_id="u_4"),
        "sweep +8 days",
        "sweep 2028-01-01T00:00:00+08:00",
    ]
    with points_app(counters_settings, tmp_path, campaigns, points_pending_days=7,
                    points_expire_months=12) as (app, wallet):
        for step in steps:
            if isinstance(step, str):
                at = step.split(" ", 1)[1]
                sweep(app, {"now": NOW, "+8 days": NOW + 8 * DAY}.get(at) or parse(at))
            else:
                request, status = step if isinstance(step, tuple) else (step, 201)
                before = ledger_counts(app) if status != 201 else None
                response = wallet.event(**request)
                assert response.status_code == status, (request, response.get_json())
                assert before is None or ledger_counts(app) == before
            check_ledger(app, wallet)
        derived = check_ledger(app, wallet)
        # after the last sweep nothing earned before 2027 is left, nothing is pending
        assert all(user["pending"] == 0 and not user["expiring"] for user in derived.values())
        assert {user_id: user["available"] for user_id, user in derived.items()} == \
            {user_id: points_view(wallet, user_id)["points_balance"] for user_id in derived}
