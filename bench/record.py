#!/usr/bin/env python
"""The write path in one process: CPU per recorded event, against the floor's durable write.

`bench/load.py` measures events over HTTP, where the machine's noise (a fifth or more
between two runs of the same code) hides a change of a tenth of a millisecond in the write
path. This benchmark runs the write path alone, in one process and one thread, on
PostgreSQL and Redis:

* events: `record_event_body`, everything POST /v1/events does after the signature check
  (validation, the replay lookup, the user locked and read, evaluation, the reservation,
  the write with its COMMIT, the confirmation), each a new payment that earns base points
  and one campaign discount, over 200 campaigns and 20,000 users (as load.py's "spread");
* the floor: `bench/bare_app.py`'s own write, one INSERT committed through a
  flask-sqlalchemy session on the same engine options.

Rounds of the two alternate, so a slow moment of the machine costs both, and the medians
of their CPU time per write (this process's CPU clock: not PostgreSQL's or Redis's) are
compared. A last round times each step of an event with the same clock, to show where its
CPU goes.

    .venv/bin/python bench/record.py              # 10 rounds of 500 each (about a minute)
    .venv/bin/python bench/record.py --quick      # smoke mode: 2 rounds of 50

Its own PostgreSQL database (dropped at the end) and Redis prefix (its keys deleted).
Exit status 0 when every event was answered 201 and the ledger holds exactly them.
"""
from __future__ import annotations

import argparse
import functools
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # runnable as `python bench/record.py` from anywhere
    sys.path.insert(0, str(ROOT))

from bench import bare_app  # noqa: E402
from bench.load_requests import payment_body  # noqa: E402
from bench.load_setup import (PG_ADMIN_URL, REDIS_URL, SECRET_KEY, ZONE, Database,  # noqa: E402
                              campaign_yaml, cleanup_redis, connect_services, redis_prefix,
                              run_cli, spread_campaign, spread_merchant)
from bench.processes import cli_command  # noqa: E402

CLIENT_ID = "bench-record"
ROUNDS, PER_ROUND = 10, 500
CAMPAIGNS, USERS = 200, 20_000


class Bodies:
    """New payment bodies: a random spread merchant (so one discount) and user."""

    def __init__(self, tag: str, campaigns: int, users: int, seed: int = 1):
        self.tag, self.campaigns, self.users = tag, campaigns, users
        self.rng = random.Random(seed)
        self.count = 0
        self.occurred = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    def make(self, merchant: int | None = None) -> dict:
        rng = self.rng
        self.count += 1
        merchant = rng.randrange(self.campaigns) if merchant is None else merchant
        cents = rng.randint(1000, 50000)
        user_id = f"u_{self.tag}_{rng.randrange(self.users):05d}"
        return payment_body(f"rec-{self.tag}-{self.count}", user_id,
                            spread_merchant(self.tag, merchant), cents, self.occurred)


class StepClock:
    """CPU time (this process) spent in named functions, by wrapping them in place."""

    def __init__(self):
        self.spent: Counter = Counter()
        self._undo: list = []

    def wrap(self, owner, name: str, step: str) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            began = time.process_time()
            try:
                return original(*args, **kwargs)
            finally:
                self.spent[step] += time.process_time() - began

        setattr(owner, name, timed)
        self._undo.append((owner, name, original))

    def restore(self) -> None:
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)
        self._undo.clear()


def event_steps(clock: StepClock) -> None:
    """The steps of an event on PostgreSQL with Redis, none inside another."""
    from promo_engine.api import recording
    from promo_engine.coordination.replay_cache import ReplayCache
    from promo_engine.coordination.reservations import Reservations
    from promo_engine.core.engine import RulesEngine
    from promo_engine.ledger.event_writes import PostgresEventWrites
    from promo_engine.ledger.recorder import Ledger
    clock.wrap(recording, "validated_event", "validate the body")
    clock.wrap(recording, "canonical_body_hash", "hash the body")
    clock.wrap(ReplayCache, "get", "replay lookup (Redis)")
    clock.wrap(PostgresEventWrites, "lock_user", "lock the user, read counters (PostgreSQL)")
    clock.wrap(RulesEngine, "evaluate", "evaluate the campaigns")
    clock.wrap(Reservations, "reserve", "reserve budget (Redis)")
    clock.wrap(PostgresEventWrites, "write", "write and commit (PostgreSQL)")
    clock.wrap(PostgresEventWrites, "close", "connection back to the pool")
    clock.wrap(Ledger, "_after_commit", "confirm, remember the answer (Redis)")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"rounds of each ({ROUNDS})")
    parser.add_argument("--per-round", type=int, default=PER_ROUND,
                        help=f"writes per round ({PER_ROUND})")
    parser.add_argument("--campaigns", type=int, default=CAMPAIGNS)
    parser.add_argument("--users", type=int, default=USERS)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 50, 20 campaigns")
    parser.add_argument("--pg-admin-url", default=PG_ADMIN_URL)
    parser.add_argument("--redis-url", default=REDIS_URL)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.per_round, args.campaigns = 2, 50, 20
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    tag = uuid.uuid4().hex[:8]
    redis_client, redis_version, database = connect_services(args.pg_admin_url, args.redis_url,
                                                             tag)
    try:
        return run(args, tag, database, redis_client, redis_version)
    finally:
        database.drop()
        deleted = cleanup_redis(redis_client, tag)
        print(f"Database {database.name} dropped; {deleted} Redis keys of this run deleted.")


def run(args, tag: str, database: Database, redis_client, redis_version: str) -> int:
    prefix = redis_prefix(tag)
    env = dict(os.environ, DATABASE_URL=database.url, REDIS_URL=args.redis_url,
               SECRET_KEY=SECRET_KEY, PROMO_TIMEZONE=ZONE, PROMO_REDIS_PREFIX=prefix)
    env.pop("PROMO_API_RATE_LIMIT", None)
    with tempfile.TemporaryDirectory() as workdir:
        run_cli(cli_command() + ["db", "upgrade"], env, Path(workdir), "promo-engine db upgrade")
        campaigns = Path(workdir) / "campaigns.yaml"
        campaigns.write_text(campaign_yaml(tag, ("spread",), args.campaigns,
                                           datetime.now(timezone.utc)))
        run_cli(cli_command() + ["campaigns", "apply", str(campaigns)], env, Path(workdir),
                "promo-engine campaigns apply")
    bare_app.init_schema(database.url)
    # A prefix no reservation was ever made under has none in flight: no settle period.
    redis_client.set(f"{prefix}:epoch", 0)
    os.environ.update(env)

    from promo_engine.api.recording import record_event_body
    from promo_engine.app import create_app
    from promo_engine.config import Settings
    from promo_engine.coordination.reservations import NotReady
    from promo_engine.ledger.extensions import db
    from promo_engine.service import promo_service

    app = create_app(Settings.from_env())
    floor_app = bare_app.create_app(database.url)
    service = promo_service(app)
    bodies = Bodies(tag, args.campaigns, args.users)
    answered = 0

    def record(body: dict) -> None:
        nonlocal answered
        _, recorded = record_event_body(service, CLIENT_ID, body)
        if recorded.status != 201:
            raise SystemExit(f"event {body['event_id']} answered {recorded.status}")
        answered += 1
        db.session.remove()  # as at the end of a request

    def floor_write(body: dict) -> None:
        bare_app.write(body, str(body))
        bare_app.db.session.remove()

    with app.app_context():
        # Each campaign's Redis counter is built from the ledger on its first event.
        for merchant in range(args.campaigns):
            body = bodies.make(merchant)
            for _ in range(50):
                try:
                    record(body)
                    break
                except NotReady:
                    time.sleep(0.1)
            else:
                raise SystemExit(f"campaign {spread_campaign(tag, merchant)} never got ready")

    def timed_round(context, write) -> float:
        batch = [bodies.make() for _ in range(args.per_round)]
        with context():
            began = time.process_time()
            for body in batch:
                write(body)
            return (time.process_time() - began) * 1000 / args.per_round

    floor_ms, events_ms = [], []
    for _ in range(args.rounds):
        floor_ms.append(timed_round(floor_app.app_context, floor_write))
        events_ms.append(timed_round(app.app_context, record))

    clock = StepClock()
    event_steps(clock)
    try:
        stepped = timed_round(app.app_context, record)
    finally:
        clock.restore()

    with app.app_context():
        stored = db.session.execute(db.text(
            "SELECT count(*) FROM events WHERE client_id = :c"), {"c": CLIENT_ID}).scalar()
    service.close()
    for engine_app, engine_db in ((app, db), (floor_app, bare_app.db)):
        with engine_app.app_context():
            engine_db.engine.dispose()

    print(f"Write path in one process, one thread: PostgreSQL {database.server_version} "
          f"(synchronous_commit {database.settings['synchronous_commit']}), Redis {redis_version}; "
          f"{args.campaigns} campaigns, {args.users:,} users; {args.rounds} rounds of "
          f"{args.per_round} writes each, the floor's and the events' alternating.")
    print("CPU time of this process per write (ms):")
    print(f"  {'':34} {'median':>7} {'min':>7} {'max':>7}")
    for label, values in (("floor: one INSERT, committed", floor_ms),
                          ("events: record_event_body", events_ms)):
        print(f"  {label:34} {statistics.median(values):7.3f} {min(values):7.3f} "
              f"{max(values):7.3f}")
    ratio = statistics.median(floor_ms) / statistics.median(events_ms)
    print(f"  floor / events (medians)           {ratio:7.2f}")
    print(f"Where an event's CPU goes (one more round, {stepped:.3f} ms per event, each step "
          f"timed):")
    spent = {step: seconds * 1000 / args.per_round for step, seconds in clock.spent.items()}
    for step, ms in sorted(spent.items(), key=lambda item: -item[1]):
        print(f"  {ms:6.3f} ms  {step}")
    print(f"  {stepped - sum(spent.values()):6.3f} ms  the rest (building rows and the answer, "
          f"the transaction's own handling)")
    if stored != answered:
        print(f"LEDGER MISMATCH: {stored} events stored, {answered} answered 201", file=sys.stderr)
        return 1
    print(f"Ledger: {stored:,} events stored, {answered:,} answered 201.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
