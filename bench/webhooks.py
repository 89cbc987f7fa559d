#!/usr/bin/env python
"""Webhooks benchmark: what the outbox costs the write path, and whether one dispatcher
keeps up with the HTTP path's peak, on PostgreSQL and Redis.

Part 1, the write path (`webhooks_write.py`): as `bench/record.py`, one process and one
thread record new payments with `record_event_body` (200 campaigns, 20,000 users; each
payment earns base points and one discount), in rounds alternating between no webhook
endpoint and one endpoint wanting every type (added before its round, removed after).
Medians of this process's CPU per event, of the wall time per event (which holds
PostgreSQL's work for the two extra rows: the write and its COMMIT are synchronous in this
thread) and of the database's PostgreSQL backends' CPU per event, on against off. Target:
at most 1.10. One more round of each times the write and the building of the messages, to
show where the difference goes. Then the outbox must hold exactly one delivery per reward
of the events written with the endpoint, and none for the others.

Part 2, dispatch (`webhooks_dispatch.py`, printed by `webhooks_report.py`): a fresh
database, `promo-engine serve --workers 1 --no-scheduler`, a local receiver process
(HTTP/1.1 keep-alive, 204, signatures sampled and verified with standardwebhooks,
`webhooks_receiver.py`), an endpoint added with `promo-engine webhooks add URL --json` and
exactly one `promo-engine webhooks run`. Generator processes drive the server at
`load.py`'s peak (16 connections, closed loop) for --seconds while the outbox is sampled
each second: events committed, deliveries written and delivered, the backlog, and the lag
(age of the oldest due pending delivery). Then the load stops and the drain is timed. The
lag must stay flat: at most 5 s at the end and not growing over the last third. The ratio
of deliveries delivered to deliveries written per second is printed beside it, and the CPU
of every process (server, dispatcher, receiver, PostgreSQL, Redis, generators) per 1,000
deliveries. Everything shares this machine's CPUs.

    .venv/bin/python bench/webhooks.py            # 10 rounds of 500, 30 s of load (~70 s)
    .venv/bin/python bench/webhooks.py --quick    # smoke mode: 2 rounds of 50, 3 s of load
    .venv/bin/python bench/webhooks.py --part write --rounds 20
    .venv/bin/python bench/webhooks.py --part dispatch --seconds 60

Each part has its own PostgreSQL database (dropped at the end) and Redis prefix (its keys
deleted). Exit status 0 when every event was answered 201, the outbox holds exactly one
delivery per reward, and (part 2) everything was delivered, once each, with valid
signatures; with --check, also when a target is missed.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # runnable as `python bench/webhooks.py` from anywhere
    sys.path.insert(0, str(ROOT))

from bench.load_report import machine_note  # noqa: E402
from bench.load_setup import (PG_ADMIN_URL, REDIS_URL, cleanup_redis,  # noqa: E402
                              connect_services)
from bench.machine import print_load_average  # noqa: E402
from bench.processes import interruptible  # noqa: E402
from bench.webhooks_write import (PER_ROUND, ROUNDS, print_write_report,  # noqa: E402
                                  run_write_path)

CAMPAIGNS, USERS = 200, 20_000
SECONDS = 30.0
CONCURRENCY = 16  # load.py's peak
GENERATORS = 2
MAX_RATE = 1500  # events/s pre-built per phase; more are built on the fly
DRAIN_TIMEOUT = 300.0


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("write", "dispatch", "both"), default="both")
    parser.add_argument("--rounds", type=int, default=ROUNDS,
                        help=f"part 1: rounds of each mode ({ROUNDS})")
    parser.add_argument("--per-round", type=int, default=PER_ROUND,
                        help=f"part 1: events per round ({PER_ROUND})")
    parser.add_argument("--seconds", type=float, default=SECONDS,
                        help=f"part 2: seconds of load ({SECONDS:g})")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY,
                        help=f"part 2: connections of the closed loop ({CONCURRENCY})")
    parser.add_argument("--generators", type=int, default=GENERATORS,
                        help=f"part 2: load-generator processes ({GENERATORS})")
    parser.add_argument("--max-rate", type=int, default=MAX_RATE,
                        help=f"part 2: events/s pre-built for the load ({MAX_RATE})")
    parser.add_argument("--drain-timeout", type=float, default=DRAIN_TIMEOUT,
                        help=f"part 2: seconds to wait for the backlog ({DRAIN_TIMEOUT:g})")
    parser.add_argument("--campaigns", type=int, default=CAMPAIGNS)
    parser.add_argument("--users", type=int, default=USERS)
    parser.add_argument("--quick", action="store_true",
                        help="smoke mode: 2 rounds of 50, 3 s of load, 20 campaigns")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--pg-admin-url", default=PG_ADMIN_URL)
    parser.add_argument("--redis-url", default=REDIS_URL)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.per_round, args.campaigns = 2, 50, 20
        args.seconds, args.max_rate, args.drain_timeout = 3.0, 1000, 60.0
    if not 0 < args.seconds <= 240:
        parser.error("--seconds must be in (0, 240]: requests are signed before the load")
    for name in ("rounds", "per_round", "concurrency", "generators", "max_rate", "campaigns",
                 "users"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.campaigns > 999:
        parser.error("--campaigns must be at most 999")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)

    return interruptible(lambda: run(args), "the databases")


def run(args) -> int:
    began = time.monotonic()
    problems, missed = [], []
    header = False

    def service(tag: str):
        nonlocal header
        redis_client, redis_version, database = connect_services(args.pg_admin_url,
                                                                 args.redis_url, tag)
        if not header:
            header = True
            print("Webhooks benchmark. " + machine_note(database, redis_version))
            print_load_average()
            print(flush=True)
        return redis_client, redis_version, database

    if args.part in ("write", "both"):
        tag = uuid.uuid4().hex[:8]
        redis_client, redis_version, database = service(tag)
        try:
            write = run_write_path(args, tag, database, redis_client, redis_version)
        finally:
            database.drop()
            deleted = cleanup_redis(redis_client, tag)
        print_write_report(write)
        print(f"Database {database.name} dropped; {deleted} Redis keys of this part deleted.")
        print(flush=True)
        problems += [f"part 1: {p}" for p in write.problems]
        missed += [f"part 1: {figure} on / off {write.ratio(figure):.2f} > 1.10"
                   for figure in ("cpu", "wall") if write.ratio(figure) > 1.10]

    if args.part in ("dispatch", "both"):
        from bench.webhooks_dispatch import run_dispatch
        from bench.webhooks_report import print_dispatch_report
        tag = uuid.uuid4().hex[:8]
        redis_client, _, database = service(tag)
        try:
            with tempfile.TemporaryDirectory(prefix="promo-bench-webhooks-") as workdir:
                dispatch = run_dispatch(args, tag, database, args.redis_url, Path(workdir))
        finally:
            database.drop()
            deleted = cleanup_redis(redis_client, tag)
        verdict = print_dispatch_report(dispatch)
        print(f"Database {database.name} dropped; {deleted} Redis keys of this part deleted.")
        problems += [f"part 2: {p}" for p in dispatch.problems]
        if not verdict.flat:
            missed.append("part 2: the lag did not stay flat")
        if problems and dispatch.dispatcher_log:
            print("The dispatcher's log ends:\n" + "\n".join(
                dispatch.dispatcher_log.splitlines()[-20:]), file=sys.stderr)

    print(f"Took {time.monotonic() - began:.0f} s.")
    if problems:
        print("CHECKS FAILED:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    print("Checks passed: every event answered 201 and stored, one delivery per reward"
          + (", all delivered once with valid signatures." if args.part != "write" else "."))
    if missed:
        print("Targets missed: " + "; ".join(missed), file=sys.stderr if args.check else sys.stdout)
        return 1 if args.check else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
