#!/usr/bin/env python
"""HTTP API benchmark: committed events/s and latency through `promo-engine serve` on SQLite.

One server process exactly as operators start it (`promo-engine serve --workers 1`: gunicorn,
one gthread worker with its 8 threads) on a SQLite file in a fresh temporary directory, with
a realistic set of open campaigns (a discount with a budget, per-user and total limits, a
points multiplier with a points budget and a daily limit, a bank-wide first-payment bonus),
and a signed API client made with `promo-engine clients create --json`. The load comes from
this process on the same machine: C client threads, each with its own persistent HTTP/1.1
connection (http.client, keep-alive) to 127.0.0.1, each request signed as a wallet backend
signs it (HMAC over timestamp, method, path and body, a fresh timestamp every request).

At every concurrency three endpoints are driven in turn, the same way:

* GET /healthz: no signature, no database. The cost of HTTP, gunicorn and Flask alone.
* POST /v1/quote: signature check, validation, the user's counters read, the campaigns
  evaluated; nothing written.
* POST /v1/events: the same plus the write path (ledger/recorder.py): one BEGIN IMMEDIATE
  transaction per event with the idempotency row, the user row, the guarded campaign
  updates, the usage counters, the reward rows and the stored response, committed.

The last is measured in committed events/s: only 201 responses count, and every response
is checked (status, and for events that the body names the event sent). /healthz and
/quote are the baseline of the same run, on the same server: events/s is printed as a
ratio of each. Every event is a new payment (distinct event_id, users and merchants spread,
amounts 10.00-500.00); latency is per request, from sending it to having read the whole
response, on the client. After the server has stopped, the ledger is counted directly in
the SQLite file: it must hold exactly one event per 201 received.

CPU: the server worker's CPU time (from /proc) over each phase shows whether the worker was
busy (about 100% of one core: bound by its own CPU and the GIL) or waiting (on the SQLite
write lock, or on the client). The client's own CPU is shown too: both run on this machine.

    .venv/bin/python bench/http_api.py                  # the figures in docs/performance.md
    .venv/bin/python bench/http_api.py --quick          # about 25 s, rough figures
    .venv/bin/python bench/http_api.py --requests 30 --concurrency 1,4   # a fixed count

This file is the command line and the order of a run; the parts live beside it:
http_server.py (the SQLite ledger, campaigns, client and the server process),
http_requests.py (the payments, signing and checking each answer), http_measure.py (a
timed phase of client threads) and http_report.py (the tables and the ledger check).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # runnable as `python bench/http_api.py` from anywhere
    sys.path.insert(0, str(ROOT))

from bench.http_measure import PhaseResult, run_phase  # noqa: E402
from bench.http_report import check_ledger, machine_note, print_results  # noqa: E402
from bench.http_requests import ENDPOINTS, EVENTS, Driver, EventSource  # noqa: E402
from bench.http_server import DATABASE_FILE, HOST, MERCHANTS, Server, set_up  # noqa: E402
from bench.machine import print_load_average  # noqa: E402

CONCURRENCY = (1, 4, 16)
SECONDS = 6.0  # per endpoint and concurrency
WARMUP_EVENTS = 200
USERS = 2000


def parse_counts(text: str) -> tuple[int, ...]:
    values = tuple(int(s) for s in text.split(",") if s.strip())
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("positive whole numbers, comma-separated")
    return values


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=parse_counts, default=CONCURRENCY,
                        help="client threads, comma-separated (1,4,16)")
    parser.add_argument("--seconds", type=float, default=SECONDS,
                        help=f"seconds per endpoint and concurrency ({SECONDS:g})")
    parser.add_argument("--requests", type=int,
                        help="a fixed number of requests per endpoint and concurrency instead")
    parser.add_argument("--quick", action="store_true", help="2 s per endpoint and concurrency")
    parser.add_argument("--warmup", type=int, default=WARMUP_EVENTS,
                        help=f"events sent (and checked) one at a time before timing "
                             f"({WARMUP_EVENTS})")
    parser.add_argument("--users", type=int, default=USERS, help=f"distinct users ({USERS})")
    parser.add_argument("--threads", type=int, help="server threads per worker (serve's default)")
    parser.add_argument("--workdir", type=Path,
                        help="keep the database and server log here (default: a temporary "
                             "directory, removed afterwards)")
    parser.add_argument("--seed", type=int, default=2027)
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds = 2.0
    if args.requests is not None and args.requests < 1:
        parser.error("--requests must be at least 1")
    if args.seconds <= 0 or args.seconds > 600:
        parser.error("--seconds must be in (0, 600]")
    seconds = None if args.requests is not None else args.seconds

    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        return run(args, args.workdir.resolve(), seconds)
    with tempfile.TemporaryDirectory(prefix="promo-bench-http-") as tmp:
        return run(args, Path(tmp), seconds)


def run(args: argparse.Namespace, workdir: Path, seconds: float | None) -> int:
    env, client = set_up(workdir)
    tag = f"{int(time.time())}"

    amount = (f"{args.requests:,} requests" if seconds is None else f"{seconds:g} s")
    print(f"HTTP API on SQLite, one process: promo-engine serve --workers 1 (gunicorn gthread, "
          f"{args.threads or 'default'} threads); {amount} per endpoint at each concurrency; "
          f"client threads each on one keep-alive connection to {HOST}")
    print(machine_note())
    print_load_average()

    server = Server(env, workdir, workers=1, threads=args.threads)
    results: list[PhaseResult] = []
    warmup: PhaseResult | None = None
    try:
        server.wait_ready()
        phase_no = 0

        def driver_factory(endpoint: str, phase: int):
            def make(index: int) -> Driver:
                source = EventSource(f"{tag}-{phase}-{index}", args.seed * 1000 + phase * 64 + index,
                                     args.users, MERCHANTS)
                return Driver(server.base, endpoint, client["key_id"], client["secret"], source)
            return make

        if args.warmup:
            # One thread: the first signed requests fill the secret cache and compile the
            # campaigns, and concurrent first requests can stall there (docs/performance.md).
            warmup = run_phase(EVENTS, 1, driver_factory(EVENTS, 0),
                               seconds=None, requests=args.warmup, worker_pid=server.worker_pid)
        for concurrency in args.concurrency:
            for endpoint in ENDPOINTS:
                phase_no += 1
                results.append(run_phase(endpoint, concurrency, driver_factory(endpoint, phase_no),
                                         seconds=seconds, requests=args.requests,
                                         worker_pid=server.worker_pid))
    finally:
        code = server.stop()
    if code not in (0, None):
        print(f"warning: the server exited with {code}; its log ends:\n{server.log_tail()}",
              file=sys.stderr)

    print_results(results)
    return check_ledger(results, warmup, workdir / DATABASE_FILE)


if __name__ == "__main__":
    sys.exit(main())
