#!/usr/bin/env python
"""The write path in one process: CPU per recorded event, against the floor's durable write.

`bench/load.py` measures events over HTTP, where the machine's noise (a fifth or more
between two runs of the same code) hides a change of a tenth of a millisecond in the write
path. This benchmark runs the write path alone, in one process and one thread, on
PostgreSQL and Redis:

* events: `record_event_body`, everything POST /v1/events does after the signature check
  (validation, the user locked and read with the replay lookup, evaluation, the
  reservation, the write with its COMMIT, the confirmation), each a new payment that earns base points
  and one campaign discount, over 200 campaigns and 20,000 users (as load.py's "spread");
* the floor: `bench/bare_app.py`'s own write, one INSERT committed through a
  flask-sqlalchemy session on the same engine options;
* redemptions: `record_event_body` of a burn of 1-50 points by one of as many users again,
  who hold a few lots each before the run (`bench/record_redemptions.py`): the user locked,
  the balance judged, the points drawn from the lots, committed. The contract: a redemption
  costs no more than a payment.

Rounds of the three alternate, so a slow moment of the machine costs them all, and the
medians of their CPU time per write (this process's CPU clock: not PostgreSQL's or
Redis's) are compared: the events against the floor, as before the redemptions were added,
and the redemptions against the events. Two last rounds time each step of an event and of a
redemption with the same clock, to show where their CPU goes.

    .venv/bin/python bench/record.py              # 10 rounds of 500 each (about a minute)
    .venv/bin/python bench/record.py --quick      # smoke mode: 2 rounds of 50

Its own PostgreSQL database (dropped at the end) and Redis prefix (its keys deleted).
Exit status 0 when every event and redemption was answered 201, the ledger holds exactly
them, and every user's points add up.
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

from bench import bare_app, record_redemptions  # noqa: E402
from bench.load_requests import payment_body  # noqa: E402
from bench.load_setup import (PG_ADMIN_URL, REDIS_URL, SECRET_KEY, ZONE, Database,  # noqa: E402
                              campaign_yaml, cleanup_redis, connect_services, redis_prefix,
                              run_cli, spread_campaign, spread_merchant)
from bench.processes import cli_command  # noqa: E402

CLIENT_ID = "bench-record"
ROUNDS, PER_ROUND = 10, 500
# With --abuse-controls: read and counted on every event, reached by none.
ABUSE_CONTROLS = """
---
risk_policy:
  per_user_daily: {rewarded_events: 1000000, reward_amount: "100000000.00"}
  per_device_daily: {rewarded_events: 1000000, reward_amount: "100000000.00", users: 1000}
  per_user_monthly: {cashback: "100000000.00"}
"""
CAMPAIGNS, USERS = 200, 20_000


class Bodies:
    """New payment bodies: a random spread merchant (so one discount) and user."""

    def __init__(self, tag: str, campaigns: int, users: int, seed: int = 1,
                 devices: bool = False):
        self.tag, self.campaigns, self.users = tag, campaigns, users
        self.devices = devices  # each user pays from a phone of its own (device_id)
        self.rng = random.Random(seed)
        self.count = 0
        self.occurred = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    def make(self, merchant: int | None = None) -> dict:
        rng = self.rng
        self.count += 1
        merchant = rng.randrange(self.campaigns) if merchant is None else merchant
        cents = rng.randint(1000, 50000)
        user = rng.randrange(self.users)
        body = payment_body(f"rec-{self.tag}-{self.count}", f"u_{self.tag}_{user:05d}",
                            spread_merchant(self.tag, merchant), cents, self.occurred)
        if self.devices:
            body["device_id"] = f"phone-{self.tag}-{user:05d}"
        return body


class StepClock:
    """CPU time (this process) spent in named functions, by wrapping them in place; a step
    called inside another counts in the outer one only."""

    def __init__(self):
        self.spent: Counter = Counter()
        self._undo: list = []
        self._inside = False

    def wrap(self, owner, name: str, step: str) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            if self._inside:
                return original(*args, **kwargs)
            self._inside = True
            began = time.process_time()
            try:
                return original(*args, **kwargs)
            finally:
                self.spent[step] += time.process_time() - began
                self._inside = False

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
    from promo_engine.ledger.postgres_writes import PostgresEventWrites
    from promo_engine.ledger.recorder import Ledger
    clock.wrap(recording, "validated_event", "validate the body")
    clock.wrap(recording, "canonical_body_hash", "hash the body")
    # On PostgreSQL a payment's replay is looked up in the user's read, not in Redis: a
    # line for Redis's lookup here would mean that changed.
    clock.wrap(ReplayCache, "get", "replay lookup (Redis)")
    clock.wrap(PostgresEventWrites, "lock_user", "lock the user, read counters (PostgreSQL)")
    clock.wrap(RulesEngine, "evaluate", "evaluate the campaigns")
    clock.wrap(Reservations, "reserve", "reserve budget (Redis)")
    clock.wrap(PostgresEventWrites, "write", "write and commit (PostgreSQL)")
    clock.wrap(PostgresEventWrites, "close", "connection back to the pool")
    clock.wrap(Ledger, "_after_commit", "confirm the reservation (Redis)")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"rounds of each ({ROUNDS})")
    parser.add_argument("--per-round", type=int, default=PER_ROUND,
                        help=f"writes per round ({PER_ROUND})")
    parser.add_argument("--campaigns", type=int, default=CAMPAIGNS)
    parser.add_argument("--users", type=int, default=USERS)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 50, 20 campaigns")
    parser.add_argument("--abuse-controls", action="store_true",
                        help="payments carry a device_id and the program has a risk policy "
                             "no payment reaches: the cost of the device's lock, its counts "
                             "and the risk counters")
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
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    prefix = redis_prefix(tag)
    env = dict(os.environ, DATABASE_URL=database.url, REDIS_URL=args.redis_url,
               SECRET_KEY=SECRET_KEY, PROMO_TIMEZONE=ZONE, PROMO_REDIS_PREFIX=prefix)
    env.pop("PROMO_API_RATE_LIMIT", None)
    with tempfile.TemporaryDirectory() as workdir:
        run_cli(cli_command() + ["db", "upgrade"], env, Path(workdir), "promo-engine db upgrade")
        campaigns = Path(workdir) / "campaigns.yaml"
        documents = campaign_yaml(tag, ("spread",), args.campaigns, datetime.now(timezone.utc))
        if args.abuse_controls:
            documents += ABUSE_CONTROLS
        campaigns.write_text(documents)
        run_cli(cli_command() + ["campaigns", "apply", str(campaigns)], env, Path(workdir),
                "promo-engine campaigns apply")
    bare_app.init_schema(database.url)
    balances = record_redemptions.seed(database.dsn, tag, args.users)
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
    bodies = Bodies(tag, args.campaigns, args.users, devices=args.abuse_controls)
    burns = record_redemptions.Burns(tag, balances)
    answered = Counter()

    def record(body: dict, client_id: str = CLIENT_ID) -> None:
        _, recorded = record_event_body(service, client_id, body)
        if recorded.status != 201:
            raise SystemExit(f"event {body['event_id']} answered {recorded.status}")
        answered[client_id] += 1
        db.session.remove()  # as at the end of a request

    def redeem(body: dict) -> None:
        record(body, record_redemptions.CLIENT_ID)

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
        for _ in range(10):  # the session's first statements and objects, made once
            redeem(burns.make())

    def timed_round(context, write, make=bodies.make) -> float:
        batch = [make() for _ in range(args.per_round)]
        with context():
            began = time.process_time()
            for body in batch:
                write(body)
            return (time.process_time() - began) * 1000 / args.per_round

    floor_ms, events_ms, burns_ms = [], [], []
    for _ in range(args.rounds):
        floor_ms.append(timed_round(floor_app.app_context, floor_write))
        events_ms.append(timed_round(app.app_context, record))
        burns_ms.append(timed_round(app.app_context, redeem, burns.make))

    clock, burn_clock = StepClock(), StepClock()
    event_steps(clock)
    try:
        stepped = timed_round(app.app_context, record)
    finally:
        clock.restore()
    record_redemptions.redemption_steps(burn_clock)
    try:
        burn_stepped = timed_round(app.app_context, redeem, burns.make)
    finally:
        burn_clock.restore()

    with app.app_context():
        count = "SELECT count(*) FROM events WHERE client_id = :c"
        stored = db.session.execute(db.text(count), {"c": CLIENT_ID}).scalar()
        burns_stored = db.session.execute(db.text(count),
                                          {"c": record_redemptions.CLIENT_ID}).scalar()
        db.session.remove()
    wrong_points = record_redemptions.balances_check(database.dsn)
    service.close()
    for engine_app, engine_db in ((app, db), (floor_app, bare_app.db)):
        with engine_app.app_context():
            engine_db.engine.dispose()

    print(f"Write path in one process, one thread: PostgreSQL {database.server_version} "
          f"(synchronous_commit {database.settings['synchronous_commit']}), Redis {redis_version}; "
          f"{args.campaigns} campaigns, {args.users:,} users paying and {len(balances):,} "
          f"holding points; {args.rounds} rounds of {args.per_round} writes each, the floor's, "
          f"the events' and the redemptions' alternating.")
    if load_before is not None:
        print("load average before the run: " + " ".join(f"{x:.2f}" for x in load_before))
    print("CPU time of this process per write (ms):")
    print(f"  {'':34} {'median':>7} {'min':>7} {'max':>7}")
    for label, values in (("floor: one INSERT, committed", floor_ms),
                          ("events: record_event_body", events_ms),
                          ("redemptions: record_event_body", burns_ms)):
        print(f"  {label:34} {statistics.median(values):7.3f} {min(values):7.3f} "
              f"{max(values):7.3f}")
    ratio = statistics.median(floor_ms) / statistics.median(events_ms)
    print(f"  floor / events (medians)           {ratio:7.2f}")
    burn_ratio = statistics.median(burns_ms) / statistics.median(events_ms)
    verdict = "met" if burn_ratio <= 1 else "MISSED"
    print(f"  redemptions / events (medians)     {burn_ratio:7.2f}   (a redemption no more than a "
          f"payment: {verdict})")
    print_steps("an event", stepped, clock, args.per_round,
                "the rest (building rows and the answer, the transaction's own handling)")
    print_steps("a redemption", burn_stepped, burn_clock, args.per_round,
                "the rest (what no step above covers: the session's own handling)")
    wrong = []
    if stored != answered[CLIENT_ID]:
        wrong.append(f"{stored} events stored, {answered[CLIENT_ID]} answered 201")
    if burns_stored != answered[record_redemptions.CLIENT_ID]:
        wrong.append(f"{burns_stored} redemptions stored, "
                     f"{answered[record_redemptions.CLIENT_ID]} answered 201")
    wrong += wrong_points
    if wrong:
        print("LEDGER MISMATCH: " + "; ".join(wrong), file=sys.stderr)
        return 1
    print(f"Ledger: {stored:,} events stored, {answered[CLIENT_ID]:,} answered 201.")
    print(f"Redemptions: {burns_stored:,} stored, {burns_stored:,} answered 201; every user's "
          f"points balance matches its lots and its rows.")
    return 0


def print_steps(what: str, per_write: float, clock: StepClock, writes: int,
                rest: str) -> None:
    print(f"Where {what}'s CPU goes (one more round, {per_write:.3f} ms each, each step "
          f"timed):")
    spent = {step: seconds * 1000 / writes for step, seconds in clock.spent.items()}
    for step, ms in sorted(spent.items(), key=lambda item: -item[1]):
        print(f"  {ms:6.3f} ms  {step}")
    print(f"  {per_write - sum(spent.values()):6.3f} ms  {rest}")


if __name__ == "__main__":
    sys.exit(main())
