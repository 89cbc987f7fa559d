#!/usr/bin/env python
"""Points expiry at a month-end: a million lots falling due at one local midnight, expired by
the scheduler's sweep, against the floor of the same writes. Needs PostgreSQL.

With PROMO_POINTS_EXPIRE_MONTHS set, every lot earned on one day expires at the same local
midnight, and the busiest such day is a month-end's million of them. The contract wants
each expiry entry written within 60 s of its instant, so the sweep must get through them
all in under a minute, in batches short enough that events of the users it holds wait
little.

1. A database of its own (dropped at the end), migrated; `--lots` lots (1,000,000) over
   `--users` users (200,000, about 5 lots each), each lot from a payment earned a year
   before and expiring at the first local midnight of next month (PROMO_POINTS_EXPIRE_MONTHS
   12, Asia/Shanghai): users, events, rewards and lots written with INSERT ... SELECT
   (`bench/points_lots.py`), balances matching, then VACUUM ANALYZE and a CHECKPOINT, as a
   database that has lived with these rows would be.
2. The floor, on a copy of that database (CREATE DATABASE ... TEMPLATE): the very rows the
   sweep writes (per lot: the lot emptied, its expiry entry in `rewards`, its move; per
   user: the balance), with the same indexes and foreign keys, written by PostgreSQL alone
   in four set-based statements and one commit: no batches, no user locks, no fence, no
   Python between the rows. It is what writing these rows costs on this machine at all;
   floor / sweep is the share of the sweep's time that is that, the rest being batching,
   locking and the round trips.
3. The sweep: `promo_engine.ledger.lot_expiry.sweep_points(session, now=midnight + 1 s)`,
   as the scheduler's leader runs it (the app's session, every batch fenced with a lease
   token), timed until it returns; then once more, which must find nothing.
4. The check, of the floor's copy and of the swept database: one expiry entry per lot,
   numbered in the order of the lots, every lot empty, and every user's balance exact
   against its rows and its lots (`points_lots.verify`), or exit status 1.

    .venv/bin/python bench/expiry.py                    # 1,000,000 lots (about 4 minutes)
    .venv/bin/python bench/expiry.py --lots 5000 --users 1000     # the smoke test's size
    .venv/bin/python bench/expiry.py --batch 20000      # another batch size

WAL and checkpoints are PostgreSQL's own counters over the timed part, so they include
whatever else the server did meanwhile. `--check` makes a missed target exit 1.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # runnable as `python bench/expiry.py` from anywhere
    sys.path.insert(0, str(ROOT))

from bench import points_lots  # noqa: E402
from bench.load_setup import PG_ADMIN_URL, SECRET_KEY, ZONE, Database  # noqa: E402
from bench.machine import cpu_model, print_load_average, python_note  # noqa: E402
from bench.processes import cpu_seconds  # noqa: E402
from promo_engine.ledger import lot_expiry  # noqa: E402
from promo_engine.ledger.lots import LotPolicy, add_months, start_of_day  # noqa: E402

LOTS, USERS = 1_000_000, 200_000
EXPIRE_MONTHS = 12
TARGET_SECONDS = 60.0
FENCE_TOKEN = 1

# The floor's statements, in one transaction. Entry ids are taken from the sequence as one
# block, in the order of the lots; reward ids are shaped as the sweep makes them (8 hex
# digits shared by 5,000 entries, then 12 of their own), so the indexes get the same keys.
_DUE = """
SELECT reward_pk, user_id, remaining, pending,
       row_number() OVER (ORDER BY expires_at, reward_pk) - 1 AS n
FROM points_lots WHERE remaining > 0 AND expires_at <= %(now)s
"""
FLOOR = (
    "SELECT setval(pg_get_serial_sequence('rewards', 'id'),"
    " nextval(pg_get_serial_sequence('rewards', 'id')) + %(lots)s)",
    f"""
    INSERT INTO rewards (id, reward_id, event_pk, user_id, campaign_id, kind, points, reason,
                         created_at)
    SELECT %(first)s + n, 'rw_' || substr(md5(%(seed)s || n / 5000), 1, 8)
                                || substr(md5(%(seed)s || n), 1, 12),
           NULL, user_id, NULL, 'points', -remaining, 'expired', %(now)s
    FROM ({_DUE}) AS due""",
    f"""
    INSERT INTO points_lot_moves (lot_pk, entry_pk, points)
    SELECT reward_pk, %(first)s + n, -remaining FROM ({_DUE}) AS due""",
    f"""
    UPDATE users u SET points_balance = u.points_balance - s.available,
                       pending_points = u.pending_points - s.pending
    FROM (SELECT user_id, coalesce(sum(remaining) FILTER (WHERE NOT pending), 0) AS available,
                 coalesce(sum(remaining) FILTER (WHERE pending), 0) AS pending
          FROM ({_DUE}) AS due GROUP BY user_id) AS s
    WHERE u.user_id = s.user_id""",
    "UPDATE points_lots SET remaining = 0 WHERE remaining > 0 AND expires_at <= %(now)s",
)


def month_end_midnight(now: datetime, zone: ZoneInfo) -> datetime:
    """The first local midnight of next month, as aware UTC: the instant the lots fall due."""
    today = now.astimezone(zone).date()
    return start_of_day(add_months(date(today.year, today.month, 1), 1), zone)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lots", type=int, default=LOTS, help=f"lots falling due ({LOTS:,})")
    parser.add_argument("--users", type=int, default=USERS,
                        help=f"users holding them ({USERS:,})")
    parser.add_argument("--batch", type=int, default=lot_expiry.BATCH_SIZE,
                        help=f"lots per transaction ({lot_expiry.BATCH_SIZE:,}, the scheduler's)")
    parser.add_argument("--no-floor", action="store_true", help="skip the floor (and its copy)")
    parser.add_argument("--check", action="store_true", help="exit 1 when the target is missed")
    parser.add_argument("--pg-admin-url", default=PG_ADMIN_URL)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    tag = uuid.uuid4().hex[:8]
    try:
        database = Database(args.pg_admin_url, f"expiry_{tag}")
    except Exception as exc:  # psycopg.OperationalError and friends
        raise SystemExit(f"PostgreSQL at {args.pg_admin_url} is not reachable: {exc}")
    copies: list[Copy] = []
    try:
        return run(args, tag, database, copies)
    finally:
        for copy in copies:
            copy.drop()
        database.drop()
        print(f"Database {database.name} dropped" + (" (and its copy)." if copies else "."))


class Copy:
    """A copy of the run's database (CREATE DATABASE ... TEMPLATE), dropped with it."""

    def __init__(self, database: Database):
        import psycopg
        self.admin_url, self.name = database.admin_url, database.name + "_floor"
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}" TEMPLATE "{database.name}"'
                         f' STRATEGY FILE_COPY')
        self.dsn = database.dsn.rsplit("/", 1)[0] + "/" + self.name
        self.dropped = False

    def drop(self) -> None:
        if not self.dropped:
            import psycopg
            with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            self.dropped = True


class ServerCounters:
    """WAL written and checkpoints done by the whole server between two readings."""

    def __init__(self, dsn: str):
        self.dsn = dsn
        self.before = self._read()

    def _read(self) -> tuple[int, int]:
        import psycopg
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            wal = conn.execute("SELECT pg_current_wal_lsn() - '0/0'").fetchone()[0]
            checkpoints = conn.execute("SELECT checkpoints_timed + checkpoints_req"
                                       " FROM pg_stat_bgwriter").fetchone()[0]
        return int(wal), int(checkpoints)

    def since(self) -> str:
        wal, checkpoints = self._read()
        return (f"{(wal - self.before[0]) / 1e9:.2f} GB of WAL, "
                f"{checkpoints - self.before[1]} checkpoints")


def checkpoint(dsn: str) -> None:
    """Dirty pages written out, so that the next timing does not pay for the previous one."""
    import psycopg
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def load(database: Database, spec: points_lots.Lots) -> float:
    import psycopg
    began = time.perf_counter()
    with psycopg.connect(database.dsn) as conn:
        points_lots.load(conn, spec)
    with psycopg.connect(database.dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")
    return time.perf_counter() - began


def run_floor(database: Database, now: datetime, lots: int, copies: list) -> tuple:
    """(seconds, WAL and checkpoints, (counts, what is wrong)) of the floor on a fresh copy."""
    import psycopg
    copy = Copy(database)
    copies.append(copy)
    checkpoint(copy.dsn)
    counters = ServerCounters(copy.dsn)
    with psycopg.connect(copy.dsn) as conn:
        began = time.perf_counter()
        first = conn.execute(FLOOR[0], {"lots": lots}).fetchone()[0] - lots
        params = {"now": now, "first": first, "seed": uuid.uuid4().hex}
        for statement in FLOOR[1:]:
            conn.execute(statement, params)
        conn.commit()
        seconds = time.perf_counter() - began
    server = counters.since()
    checked = ledger_check(copy.dsn, lots)
    copy.drop()
    checkpoint(database.dsn)
    return seconds, server, checked


class Timed:
    """Each transaction of the sweep timed (begin to commit: what its user locks are held
    for), with what it did, by wrapping `run_in_transaction` as the sweep sees it."""

    def __init__(self):
        self.transactions: list[tuple[float, tuple[int, int]]] = []
        self.original = lot_expiry.run_in_transaction

    def __enter__(self):
        def timed(session, work, **kwargs):
            began = time.perf_counter()
            done = self.original(session, work, **kwargs)
            self.transactions.append((time.perf_counter() - began, done))
            return done
        lot_expiry.run_in_transaction = timed
        return self

    def __exit__(self, *exc):
        lot_expiry.run_in_transaction = self.original


def run_sweep(database: Database, now: datetime, batch: int) -> dict:
    """The sweep in the app, fenced like the scheduler's, timed; then a second one."""
    os.environ.update(DATABASE_URL=database.url, SECRET_KEY=SECRET_KEY, PROMO_TIMEZONE=ZONE,
                      PROMO_POINTS_EXPIRE_MONTHS=str(EXPIRE_MONTHS))
    os.environ.pop("REDIS_URL", None)
    from promo_engine.app import create_app
    from promo_engine.campaigns.lifecycle import check_fence
    from promo_engine.config import Settings
    from promo_engine.ledger.extensions import db
    from promo_engine.service import promo_service

    def fence(session):
        check_fence(session, FENCE_TOKEN)

    app = create_app(Settings.from_env())
    try:
        with app.app_context():
            session = db.session
            backend = session.execute(db.text("SELECT pg_backend_pid()")).scalar()
            session.rollback()
            counters = ServerCounters(database.dsn)
            pg_before, cpu_before = cpu_seconds(backend), time.process_time()
            with Timed() as timed:
                began = time.perf_counter()
                expired, matured = lot_expiry.sweep_points(session, now, fence=fence,
                                                           batch_size=batch)
                wall = time.perf_counter() - began
            cpu = time.process_time() - cpu_before
            pg_after = cpu_seconds(backend)
            server = counters.since()
            same = session.execute(db.text("SELECT pg_backend_pid()")).scalar() == backend
            again = lot_expiry.sweep_points(session, now + timedelta(seconds=15), fence=fence,
                                            batch_size=batch)
            session.remove()
            db.engine.dispose()
    finally:
        promo_service(app).close()
    pg_cpu = (pg_after - pg_before) if same and None not in (pg_before, pg_after) else None
    working = [seconds for seconds, (_, changed) in timed.transactions if changed]
    return {"expired": expired, "matured": matured, "wall": wall, "cpu": cpu,
            "pg_cpu": pg_cpu, "server": server, "transactions": len(timed.transactions),
            "working": working or [0.0], "again": again}


def ledger_check(dsn: str, lots: int) -> tuple[dict, list[str]]:
    """(counts, what is wrong): expiry entries and moves, lots left, users, balances."""
    import psycopg
    with psycopg.connect(dsn) as conn:
        one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
        counts = {
            "expiry entries": one("SELECT count(*) FROM rewards WHERE reason = 'expired'"),
            "moves": one("SELECT count(*) FROM points_lot_moves"),
            "lots with points left": one("SELECT count(*) FROM points_lots WHERE remaining <> 0"),
            "users with points": one("SELECT count(*) FROM users"
                                     " WHERE points_balance <> 0 OR pending_points <> 0"),
            "points expired": -one("SELECT coalesce(sum(points), 0) FROM rewards"
                                   " WHERE reason = 'expired'"),
            "points earned": one("SELECT coalesce(sum(points), 0) FROM points_lots"),
            # Every lot falls due at the same instant, so entries follow the lots' order.
            "entries out of order": one("""
                SELECT count(*) FROM (SELECT lot_pk, lag(lot_pk) OVER (ORDER BY entry_pk) AS prev
                                      FROM points_lot_moves) AS m WHERE prev > lot_pk"""),
        }
        broken = points_lots.verify(conn)
    wrong = [f"{n:,} {what}" for what, n in broken.items() if n]
    if counts["expiry entries"] != lots or counts["moves"] != lots:
        wrong.append(f"{counts['expiry entries']:,} expiry entries and {counts['moves']:,} "
                     f"moves for {lots:,} lots")
    if counts["lots with points left"] or counts["users with points"]:
        wrong.append(f"{counts['lots with points left']:,} lots and "
                     f"{counts['users with points']:,} users still hold points")
    if counts["points expired"] != counts["points earned"]:
        wrong.append(f"{counts['points expired']:,} points expired of "
                     f"{counts['points earned']:,} earned")
    if counts["entries out of order"]:
        wrong.append(f"{counts['entries out of order']:,} entries numbered out of their lots' "
                     f"order")
    return counts, wrong


def run(args, tag: str, database: Database, copies: list) -> int:
    zone = ZoneInfo(ZONE)
    midnight = month_end_midnight(datetime.now(timezone.utc), zone)
    earned_day = add_months(midnight.astimezone(zone).date(), -EXPIRE_MONTHS)
    earned_at = start_of_day(earned_day, zone) + timedelta(hours=10)
    policy = LotPolicy(expire_months=EXPIRE_MONTHS, timezone=ZONE)
    last_earned = earned_at + timedelta(milliseconds=args.lots)
    assert policy.expires_at(earned_at) == policy.expires_at(last_earned) == midnight
    now = midnight + timedelta(seconds=1)

    print(f"Points expiry at a month-end: {args.lots:,} lots over {args.users:,} users due at "
          f"{midnight.astimezone(zone).isoformat()} ({ZONE}), swept at midnight + 1 s in "
          f"batches of {args.batch:,}")
    print(f"{python_note()}, PostgreSQL {database.server_version} (synchronous_commit "
          f"{database.settings['synchronous_commit']}, fsync {database.settings['fsync']}), "
          f"{cpu_model()}, {os.cpu_count()} CPUs")
    print_load_average()

    from promo_engine.ledger.schema import upgrade
    upgrade(database.url)
    spec = points_lots.Lots(prefix=f"x{tag}_", users=args.users, lots=args.lots,
                            earned_at=earned_at, expires_at=midnight)
    print(f"loaded {args.lots:,} lots (with their events, rewards and users), vacuumed and "
          f"analysed in {load(database, spec):.1f} s")

    wrong = []
    floor = None
    if not args.no_floor:
        floor = run_floor(database, now, args.lots, copies)
        wrong += [f"floor: {what}" for what in floor[2][1]]
    sweep = run_sweep(database, now, args.batch)
    counts, swept_wrong = ledger_check(database.dsn, args.lots)
    wrong += swept_wrong

    wall, expired = sweep["wall"], sweep["expired"]
    print()
    print(f"  {'':44} {'seconds':>8} {'lots/s':>9}   server meanwhile")
    if floor is not None:
        print(f"  {'floor: 4 statements, 1 commit, no locks':44} {floor[0]:8.2f} "
              f"{args.lots / floor[0]:9,.0f}   {floor[1]}")
    print(f"  {'sweep_points':44} {wall:8.2f} {expired / wall:9,.0f}   {sweep['server']}")
    if floor is not None:
        print(f"  {'floor / sweep (time)':44} {floor[0] / wall:8.2f}")
    working = sweep["working"]
    print(f"sweep: {expired:,} lots expired, {sweep['matured']:,} matured, in "
          f"{sweep['transactions']} transactions; each batch's transaction (its users locked "
          f"meanwhile): median {statistics.median(working):.3f} s, max {max(working):.3f} s")
    pg_cpu = sweep["pg_cpu"]
    pg_note = f"its PostgreSQL backend {pg_cpu:.1f} s" if pg_cpu is not None else \
        "its PostgreSQL backend unknown"
    print(f"sweep CPU: this process {sweep['cpu']:.1f} s, {pg_note}, in {wall:.1f} s")
    print(f"second sweep right after: {sweep['again'][0]:,} expired, "
          f"{sweep['again'][1]:,} matured")
    verdict = "met" if wall < TARGET_SECONDS else "MISSED"
    print(f"target: every lot expired within {TARGET_SECONDS:.0f} s of midnight: "
          f"{wall:.1f} s, {verdict}")

    print(f"Ledger: {counts['expiry entries']:,} expiry entries and {counts['moves']:,} moves "
          f"for {args.lots:,} lots; {counts['points expired']:,} points expired of "
          f"{counts['points earned']:,} earned; {counts['lots with points left']:,} lots and "
          f"{counts['users with points']:,} users hold points")
    if sweep["again"] != (0, 0):
        wrong.append(f"the second sweep changed {sweep['again']}")
    if expired != args.lots:
        wrong.append(f"sweep_points said {expired:,} expired for {args.lots:,} lots")
    if wrong:
        print("LEDGER MISMATCH: " + "; ".join(wrong), file=sys.stderr)
        return 1
    floor_note = " (and on the floor's copy)" if floor is not None else ""
    print(f"Every lot expired exactly once, in order, and every balance is exact{floor_note}.")
    return 1 if args.check and verdict != "met" else 0


if __name__ == "__main__":
    sys.exit(main())
