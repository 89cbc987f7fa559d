"""The points sweep of `promo-engine scheduler` processes against real PostgreSQL and Redis:
every lot due is expired exactly once, within 60 s of its instant, even when the leader is
killed with SIGKILL in the middle of a sweep and the other scheduler takes over; a lot
whose expiry is a local midnight next to a clock change (PROMO_TIMEZONE=Europe/Berlin)
expires at exactly that UTC instant; and points a cancel gives back to an expired lot
expire again.

One run serves the three tests (a scheduler's sweep comes every 15 s, so each run costs
half a minute): 12,000 lots due a few seconds ahead, written in bulk, as a month-end brings
them (the API would take minutes to earn them), and lots earned through the API by events
recorded late, whose expiry has already passed, the clock-change ones among them. The test
holds the row lock of one user whose lots are in the sweep's second batch: the leader
commits the first batch (5,000 lots), then waits on that lock, and is killed there.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import text

from conftest import TEST_REDIS_URL, make_settings, running_app
from processes import LedgerView, points_problems, service_env, wait_until
from wallet import new_wallet_client, payment

pytestmark = [pytest.mark.slow, pytest.mark.services]

UTC = timezone.utc
CLI = str(Path(sys.executable).with_name("promo-engine"))
LEASE_MS = 2000
SWEEP_SECONDS = 15  # POINTS_SWEEP_SECONDS of the scheduler
BATCH = 5000  # lots per sweep transaction (lot_expiry.BATCH_SIZE)
BULK_USERS, LOTS_EACH = 600, 20  # 12,000 lots due at one instant
WITHIN = timedelta(seconds=60)  # the contract: expired within 60 s of the instant
TIMEZONE = "Europe/Berlin"
EXPIRE_MONTHS = 2

# Lots earned through the API, already expired when recorded; the instant each expires at,
# computed by hand: local midnight EXPIRE_MONTHS after the payment's local date in Berlin.
DST_LOTS = {
    # 2026-01-30 00:30 local (23:30 UTC the day before) -> 2026-03-30 00:00, the first
    # midnight after the spring change (2026-03-29 02:00 CET -> 03:00 CEST): +02:00.
    "dst-spring": ("2026-01-29T23:30:00+00:00", "2026-03-29T22:00:00+00:00"),
    # 2026-01-29 -> 2026-03-29 00:00, the day of the change, still +01:00.
    "dst-spring-day": ("2026-01-29T12:00:00+01:00", "2026-03-28T23:00:00+00:00"),
    # 2026-08-26 00:30 local (22:30 UTC the day before) -> 2026-10-26 00:00, the first
    # midnight after the autumn change (2026-10-25 03:00 CEST -> 02:00 CET): +01:00.
    "dst-autumn": ("2026-08-25T22:30:00+00:00", "2026-10-25T23:00:00+00:00"),
    # 2026-08-25 -> 2026-10-25 00:00, the day of the change, still +02:00.
    "dst-autumn-day": ("2026-08-25T12:00:00+02:00", "2026-10-24T22:00:00+00:00"),
}
LATE_USERS = [f"late-{n:02d}" for n in range(16)]  # earned 2026-06-15: expired 2026-08-15
# Spends 30 of a lot before it expires, and cancels that once the leader expired the other
# 70: the 30 come back to the expired lot, and the next sweep expires them.
RETURNER = "returner"


@dataclass
class Swept:
    """What one run left behind, for the tests to judge."""
    instant: datetime  # when the bulk lots came due
    recorded_at: datetime  # when the late events were recorded (their lots already due)
    due: dict[int, tuple]  # lot pk -> (user_id, points, expires_at), every lot due
    not_due: dict[int, tuple]  # lot pk -> (user_id, points, remaining)
    entries: list[tuple]  # (entry pk, lot pk, points, move points, user_id, event_pk, at)
    balances: dict[str, tuple[int, int]]  # user -> (points_balance, pending_points)
    kept: dict[str, int]  # late and clock-change users: the points of their lot not due
    problems: list[str]
    leaders: list[int] = field(default_factory=list)  # pids, in turn
    killed: int | None = None
    logs: dict[str, str] = field(default_factory=dict)
    expiring_api: dict[str, dict] = field(default_factory=dict)  # user -> GET points answer
    cancelled_at: datetime | None = None  # when RETURNER's spend was cancelled
    answers: dict[str, dict] = field(default_factory=dict)  # RETURNER's burn and cancel


def bulk_seed(ledger: LedgerView, instant: datetime) -> None:
    """BULK_USERS users with LOTS_EACH lots each, all expiring at `instant`: rows as a
    payment's base points make them (its event, its points reward, the lot, the balance)."""
    earned = instant - timedelta(days=1)
    with ledger.engine.begin() as conn:
        conn.execute(text("""
            WITH ev AS (
              INSERT INTO events (client_id, event_id, type, user_id, merchant_id, amount_minor,
                                  currency, occurred_at, refunded_minor, request_hash, response,
                                  created_at)
              SELECT 'bulk', 'bulk-' || n, 'payment',
                     'bulk-' || lpad((n / :each)::text, 4, '0'), 'm_100', (n % 7 + 1) * 100,
                     'CNY', :earned, 0, 'seed', '', :earned
              FROM generate_series(0, :lots - 1) AS n ORDER BY n
              RETURNING id, event_id, user_id
            ), rw AS (
              INSERT INTO rewards (reward_id, event_pk, user_id, campaign_id, kind, points,
                                   reason, created_at)
              SELECT 'rw_bulk_' || substr(event_id, 6), id, user_id, NULL, 'points',
                     substr(event_id, 6)::int % 7 + 1, NULL, :earned
              FROM ev ORDER BY id
              RETURNING id, user_id, points
            )
            INSERT INTO points_lots (reward_pk, user_id, points, remaining, debt_paid,
                                     available_at, pending, expires_at)
            SELECT id, user_id, points, points, 0, :earned, false, :instant FROM rw
            """), {"each": LOTS_EACH, "lots": BULK_USERS * LOTS_EACH, "earned": earned,
                   "instant": instant})
        conn.execute(text("""
            INSERT INTO users (user_id, activations, payments, points_balance, pending_points,
                               created_at)
            SELECT user_id, 0, count(*), sum(points), 0, :earned FROM points_lots
            WHERE user_id LIKE 'bulk-%' GROUP BY user_id
            """), {"earned": earned})


def seed_returner(ledger: LedgerView, instant: datetime) -> None:
    """RETURNER with one lot of 100 points expiring at `instant`, as `bulk_seed` writes them
    (before the bulk lots, so that the leader's first batch expires it)."""
    earned = instant - timedelta(days=1)
    with ledger.engine.begin() as conn:
        conn.execute(text("""
            WITH ev AS (
              INSERT INTO events (client_id, event_id, type, user_id, merchant_id, amount_minor,
                                  currency, occurred_at, refunded_minor, request_hash, response,
                                  created_at)
              VALUES ('bulk', 'returner-earned', 'payment', :u, 'm_100', 10000, 'CNY', :earned,
                      0, 'seed', '', :earned)
              RETURNING id
            ), rw AS (
              INSERT INTO rewards (reward_id, event_pk, user_id, campaign_id, kind, points,
                                   reason, created_at)
              SELECT 'rw_returner', id, :u, NULL, 'points', 100, NULL, :earned FROM ev
              RETURNING id
            ), lot AS (
              INSERT INTO points_lots (reward_pk, user_id, points, remaining, debt_paid,
                                       available_at, pending, expires_at)
              SELECT id, :u, 100, 100, 0, :earned, false, :instant FROM rw
            )
            INSERT INTO users (user_id, activations, payments, points_balance, pending_points,
                               created_at)
            VALUES (:u, 0, 1, 100, 0, :earned)
            """), {"u": RETURNER, "earned": earned, "instant": instant})


def blocking_user(ledger: LedgerView) -> str:
    """A user all of whose due lots are in the sweep's second batch (the sweep takes due
    lots by expiry, then by lot)."""
    order = [user_id for user_id, in ledger.rows(
        "SELECT user_id FROM points_lots WHERE remaining > 0 AND expires_at IS NOT NULL "
        "AND expires_at <= now() + interval '1 hour' ORDER BY expires_at, reward_pk")]
    user_id = order[BATCH + BATCH // 2]
    positions = [n for n, u in enumerate(order) if u == user_id]
    assert BATCH <= positions[0] and positions[-1] < 2 * BATCH, positions
    return user_id


def start_scheduler(env: dict, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        process = subprocess.Popen([CLI, "scheduler"], env=env, cwd=log.parent, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    process.log = log
    return process


def leader_pid(client, key: str) -> int | None:
    value = client.get(key)
    return None if value is None else int(value.decode().split(":")[2])


def waiting_on_a_lock(ledger: LedgerView) -> bool:
    return bool(ledger.rows(
        "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock' "
        "AND query ILIKE '%FOR UPDATE%'"))


def expired_entries(ledger: LedgerView) -> int:
    return ledger.rows("SELECT count(*) FROM rewards WHERE reason = 'expired'")[0][0]


@pytest.fixture(scope="module")
def swept(shared_postgres_url, tmp_path_factory) -> Swept:
    import redis
    url = shared_postgres_url
    tmp = tmp_path_factory.mktemp("sweep")
    client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=1, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis not reachable: {exc}")
    lease_key = f"promo-test-{uuid.uuid4().hex}:scheduler:leader"
    prefix = "{" + lease_key + "}"
    env = service_env(url, redis_url=TEST_REDIS_URL, redis_prefix=prefix,
                      PROMO_SCHEDULER_LEASE_MS=LEASE_MS, PROMO_SCHEDULER_LEASE_KEY=lease_key,
                      PROMO_TIMEZONE=TIMEZONE, PROMO_POINTS_EXPIRE_MONTHS=EXPIRE_MONTHS)
    ledger = LedgerView(url)
    started: list[subprocess.Popen] = []
    kept: dict[str, int] = {}
    with contextlib.ExitStack() as stack:
        stack.callback(ledger.close)
        stack.callback(client.close)
        stack.callback(lambda: client.delete(*client.scan_iter(match=f"{prefix}*"), lease_key,
                                             f"{lease_key}:token"))

        @stack.callback
        def kill_all():
            for process in started:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(10)

        # Late events through the API: the lot of each first payment is already expired;
        # the second payment's lot (earned now) is not.
        settings = make_settings(url, timezone=TIMEZONE, points_expire_months=EXPIRE_MONTHS)
        app = stack.enter_context(running_app(settings))
        wallet = new_wallet_client(app)

        def send(body: dict) -> dict:
            response = wallet.post("/v1/events", body)
            assert response.status_code == 201, response.get_data(as_text=True)
            return response.get_json()

        now = datetime.now(UTC).isoformat()
        earnings = [(user_id, at) for user_id, (at, _) in DST_LOTS.items()]
        earnings += [(user_id, "2026-06-15T12:00:00+02:00") for user_id in LATE_USERS]
        for n, (user_id, at) in enumerate(earnings):
            kept[user_id] = 10 + n
            send(payment(f"{user_id}-now", f"{10 + n}.00", user_id=user_id, at=now))
            send(payment(f"{user_id}-then", "100.00", user_id=user_id, at=at))
        recorded_at = datetime.now(UTC)
        instant = (datetime.now(UTC) + timedelta(seconds=5)).replace(microsecond=0)
        seed_returner(ledger, instant)
        answers = {"burn": send({"event_id": "returner-burn", "type": "redemption",
                                 "user_id": RETURNER, "occurred_at": now, "points": 30})}
        bulk_seed(ledger, instant)
        held = blocking_user(ledger)
        due = {pk: (u, p, e) for pk, u, p, e in ledger.rows(
            "SELECT reward_pk, user_id, points, expires_at FROM points_lots "
            "WHERE expires_at <= :t", t=instant)}
        assert len(due) == BULK_USERS * LOTS_EACH + len(DST_LOTS) + len(LATE_USERS) + 1

        # The test holds one user of the second batch: the leader's sweep stops there.
        lock = ledger.engine.connect()
        stack.callback(lock.close)
        holding = lock.begin()
        lock.execute(text("SELECT 1 FROM users WHERE user_id = :u FOR UPDATE"), {"u": held})

        first = start_scheduler(env, tmp / "scheduler-a.log")
        started.append(first)
        wait_until(lambda: leader_pid(client, lease_key) == first.pid, 20, "a leader")
        # The other starts later, so that its sweeps (every 15 s from its start) come after
        # it has taken over from the leader killed in the leader's first sweep.
        time.sleep(6)
        second = start_scheduler(env, tmp / "scheduler-b.log")
        started.append(second)
        # (A leader sweeps once when elected: the late lots, already due, may go then.)
        wait_until(lambda: expired_entries(ledger) >= BATCH and waiting_on_a_lock(ledger),
                   SWEEP_SECONDS + 20, "the leader's first batch, then its wait")
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
        # RETURNER's lot was in that first batch: 70 expired. The 30 spent come back to it.
        answers["cancel"] = send({"event_id": "returner-cancel", "type": "cancel",
                                  "user_id": RETURNER, "occurred_at": now,
                                  "original_event_id": "returner-burn"})
        cancelled_at = datetime.now(UTC)
        holding.rollback()
        lock.close()
        wait_until(lambda: leader_pid(client, lease_key) == second.pid,
                   LEASE_MS / 1000 + 5, "the takeover")
        wait_until(lambda: ledger.rows(
            "SELECT count(*) FROM points_lots WHERE remaining > 0 AND expires_at <= now()"
        )[0][0] == 0, max(5.0, (instant + WITHIN - datetime.now(UTC)).total_seconds() + 5),
            "every due lot expired")
        time.sleep(0.5)  # anything doubled would show now
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0

        expiring_api = {u: wallet.get(f"/v1/users/{u}/points").get_json() for u in DST_LOTS}
        return Swept(
            instant=instant, recorded_at=recorded_at, due=due,
            not_due={pk: (u, p, r) for pk, u, p, r in ledger.rows(
                "SELECT reward_pk, user_id, points, remaining FROM points_lots "
                "WHERE expires_at > :t", t=instant)},
            entries=ledger.rows(
                "SELECT r.id, m.lot_pk, r.points, m.points, r.user_id, r.event_pk, r.created_at "
                "FROM rewards r LEFT JOIN points_lot_moves m ON m.entry_pk = r.id "
                "WHERE r.reason = 'expired' ORDER BY r.id"),
            balances={u: (b, p) for u, b, p in ledger.rows(
                "SELECT user_id, points_balance, pending_points FROM users")},
            kept=kept, problems=points_problems(ledger), leaders=[first.pid, second.pid],
            killed=first.pid,
            logs={"a": first.log.read_text(errors="replace"),
                  "b": second.log.read_text(errors="replace")},
            expiring_api=expiring_api, cancelled_at=cancelled_at, answers=answers)


def test_every_due_lot_expires_once_when_the_leader_is_killed_mid_sweep(swept):
    by_lot: dict[int, list] = {}
    for entry in swept.entries:
        by_lot.setdefault(entry[1], []).append(entry)
    assert sorted(by_lot) == sorted(swept.due)  # every due lot, and only those
    returned = [pk for pk, (owner, _, _) in swept.due.items() if owner == RETURNER]
    doubled = {pk: len(entries) for pk, entries in by_lot.items()
               if len(entries) != 1 and pk not in returned}
    assert not doubled
    late = set(DST_LOTS) | set(LATE_USERS)
    for pk, [(_, _, points, moved, user_id, event_pk, at)] in (
            (pk, entries) for pk, entries in by_lot.items() if pk not in returned):
        owner, earned, expires_at = swept.due[pk]
        assert (points, moved, user_id, event_pk) == (-earned, -earned, owner, None), pk
        assert at >= expires_at, (pk, at, expires_at)  # never early
        # Within 60 s of the instant; a lot recorded already expired, of its recording.
        assert at <= (swept.recorded_at if owner in late else swept.instant) + WITHIN, \
            (pk, owner, at)
    # The killed leader committed a whole batch of its sweep (after, maybe, the sweep it
    # made when elected, of the late lots), the other scheduler all the rest, and
    # RETURNER's lot once more, in one sweep: the last instant.
    sweeps = sorted({entry[6] for entry in swept.entries})
    by_sweep = [sum(entry[6] == at for entry in swept.entries) for at in sweeps]
    late_lots = len(DST_LOTS) + len(LATE_USERS)
    assert by_sweep[:-1] in ([BATCH], [late_lots, BATCH]), by_sweep
    assert f"points: {by_sweep[-1]} lots expired, 0 matured" in swept.logs["b"], \
        swept.logs["b"][-3000:]
    assert by_sweep[-1] == len(swept.due) - sum(by_sweep[:-1]) + 1
    # Killed before it could finish the sweep of the bulk: at most the election's sweep.
    assert [line for line in swept.logs["a"].splitlines() if "points:" in line and
            f"points: {late_lots} lots expired" not in line] == []
    # Nothing not due was touched; every balance is what was earned less what expired.
    assert all(remaining == points for _, points, remaining in swept.not_due.values())
    for user_id, (balance, pending) in swept.balances.items():
        expected = swept.kept.get(user_id, 0)
        assert (balance, pending) == (expected, 0), user_id
    assert swept.problems == []


def test_a_lot_expiring_at_midnight_next_to_a_clock_change_expires_at_that_instant(swept):
    """PROMO_TIMEZONE=Europe/Berlin: the expiry instant is the local midnight in the offset
    of that day, not of the day the points were earned; the scheduler's entry is written
    at or after it, and the API shows it."""
    lots = {owner: (pk, expires_at) for pk, (owner, _, expires_at) in swept.due.items()
            if owner in DST_LOTS}
    assert {owner: expires_at for owner, (_, expires_at) in lots.items()} == \
        {owner: datetime.fromisoformat(expected) for owner, (_, expected) in DST_LOTS.items()}
    for owner, (pk, expires_at) in lots.items():
        [entry] = [e for e in swept.entries if e[1] == pk]
        assert entry[2] == -100 and entry[6] >= expires_at, (owner, entry)
        answer = swept.expiring_api[owner]
        assert answer["points_balance"] == swept.kept[owner]
        expired = [e for e in answer["entries"] if e.get("reason") == "expired"]
        assert [(e["points"], e["event_id"], e["campaign_id"]) for e in expired] == \
            [(-100, None, None)], answer


def test_points_a_cancel_returns_to_an_expired_lot_expire_again(swept):
    """A spend cancelled after its lot expired gives the points back to that lot (the
    contract: they expire again within 60 s): the next sweep writes a second entry."""
    assert swept.answers["burn"]["points_balance"] == 70
    assert [(r["points"], r["reverses"]) for r in swept.answers["cancel"]["rewards"]] == \
        [(30, swept.answers["burn"]["rewards"][0]["reward_id"])]
    [pk] = [pk for pk, (owner, _, _) in swept.due.items() if owner == RETURNER]
    entries = [e for e in swept.entries if e[1] == pk]
    sweeps = sorted({entry[6] for entry in swept.entries})
    # The killed leader's batch (the sweep before the last), then the other's sweep.
    assert [(e[2], e[3], e[6]) for e in entries] == [(-70, -70, sweeps[-2]),
                                                   (-30, -30, sweeps[-1])]
    assert entries[1][6] <= swept.cancelled_at + WITHIN
    assert swept.balances[RETURNER] == (0, 0)
