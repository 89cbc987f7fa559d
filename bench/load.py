#!/usr/bin/env python
"""Load benchmark: committed events/s over HTTP with N workers on PostgreSQL and Redis,
side by side with the floor for a durable write measured in the same run.

Two servers on this machine, both gunicorn exactly as `promo-engine serve` configures it
(gthread, its threads per worker, keep-alive), both with N worker processes:

* `promo-engine serve --workers N --no-scheduler` with DATABASE_URL (a fresh PostgreSQL
  database made for this run), REDIS_URL and SECRET_KEY. Load: POST /v1/events, new signed
  payment events, every one a new event_id.
* the floor, `bench/bare_app.py`: the same server and command with a Flask app whose one
  endpoint parses the JSON body and commits one INSERT through a flask-sqlalchemy session
  (the same engine options), answering 201. Load: the very same request bodies and headers.

Two campaign scenarios, applied with `promo-engine campaigns apply` before the servers
start: "spread" (by default 200 `holiday_discount` campaigns, one per merchant, each with a
budget and max_redemptions; events spread over those merchants) and "hot" (one campaign
over 200 other merchants, every event hits it; budget and max_redemptions far from running
out). In both, every payment earns its base points and exactly one campaign discount, so
the work per event is the same and only the contention on the campaign's counters differs.
Users (20,000) and amounts are spread the same way in both.

Load generator: separate processes (multiprocessing; the server needs the CPU too), each
with its threads on persistent HTTP/1.1 connections (http.client, keep-alive). Requests
are built and signed before a phase starts (the signature's timestamp stays valid +-300 s).
Every response is checked: 201, the event id echoed and, for events, the expected
campaign's reward present; anything else is an error, counted and printed. Three kinds of
phase, each --seconds long:

* unloaded: one connection, closed loop (a request, its response, the next): p50/p99 of
  a request with nothing else in flight.
* peak: closed loop on --concurrency connections spread over the generator processes:
  the throughput (completions per second, the first 10% of the phase left out as ramp).
* paced: open loop at --load (0.8) x the peak just measured on the same server, arrivals
  Poisson (or --arrivals uniform), on as many connections as the peak (--paced-connections);
  latency from each request's scheduled time to its response, so a request delayed by a
  busy server (or by all connections being busy) counts its wait.

Per worker count N both servers start, then: the bare floor's warm-up, unloaded, peak and
paced phases; the events' warm-up (per scenario), unloaded (first scenario), peak (per
scenario) and paced (first scenario) phases. Before the events phases, events are sent one
at a time until every campaign has answered 201 once: a server builds each campaign's
Redis counter from the ledger on first use (503 to concurrent events meanwhile), and one
whose Redis lost its data answers 503 (with Retry-After) for a settle period first. That
start-up is waited out, not measured; any 503 in a timed phase is an error.

Targets, checked per N: events/s at least 0.50 of the bare endpoint's
req/s; at 80% of peak, events p99 at most 4x the unloaded events p50; hot-campaign events/s
at least 0.70 of spread events/s. The same tail ratio is printed for the bare endpoint.
For every phase: CPU time per request of the server's processes, of PostgreSQL's and of the
generator, the machine's busy share, and the share used by other processes (from /proc; on
a shared machine that last column says which figures were disturbed). At the end the
ledger is counted: exactly one stored event per 201 received, one bare row per bare 201.

Each run has its own database (dropped at the end), its own PROMO_REDIS_PREFIX (its keys are
deleted at the end) and ids carrying a run tag. The server's per-client rate limit
(PROMO_API_RATE_LIMIT) is raised to --rate-limit: all the load comes from one client, as it
does from the one wallet backend, and the limiter's cost is measured but not its cap.
--profile records the events worker with py-spy during the first peak phase (N=1) and
prints where its CPU time goes per event.

    .venv/bin/python bench/load.py                    # workers 1,2,4; 10 s phases (~5 min)
    .venv/bin/python bench/load.py --quick            # one worker, 1 s phases (~25 s)
    .venv/bin/python bench/load.py --workers 2 --seconds 20 --concurrency 32 --scenario hot
    .venv/bin/python bench/load.py --workers 1 --scenario spread --profile   # needs py-spy

Exit status: 0 when every request succeeded and the ledger matches; 1 otherwise (with
--check, also when a target is missed). The database is dropped and this run's Redis keys
deleted at the end, on Ctrl-C too.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # runnable as `python bench/load.py` from anywhere
    sys.path.insert(0, str(ROOT))

# The run's pieces, one concern each: the world it makes (load_setup), the servers under
# load (load_servers), start-up priming (load_prime), timed phases (load_phases, forking
# load_generator processes that send load_requests; CPU from load_cpu), py-spy
# (load_profile) and everything printed (load_report).
from bench.load_phases import Phase, Runner  # noqa: E402
from bench.load_prime import Primed, prime  # noqa: E402
from bench.load_profile import Profiler  # noqa: E402
from bench.load_report import (LOAD_FRACTION, print_header, print_primed,  # noqa: E402
                               print_progress, print_results)
from bench.load_servers import BARE_APP, Server, start_pair  # noqa: E402
from bench.load_setup import (PG_ADMIN_URL, RATE_LIMIT, REDIS_URL, campaign_yaml,  # noqa: E402
                              cleanup_redis, connect_services, finish_cli, run_cli, server_env,
                              start_cli)
from bench.processes import cli_command, interruptible  # noqa: E402

WORKERS = (1, 2, 4)
SECONDS = 10.0
CONCURRENCY = 16
GENERATORS = 2
SPREAD_CAMPAIGNS = 200
USERS = 20_000
MAX_RATE = 5000  # requests/s a closed-loop phase is pre-built for; more are built on the fly
SKEW_MARGIN = 240  # s: a pre-signed request must be sent within this (server allows 300)


def parse_counts(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("positive whole numbers, comma-separated")
    return values


def parse_scenarios(text: str) -> tuple[str, ...]:
    values = ("spread", "hot") if text == "both" else tuple(s.strip() for s in text.split(",") if s.strip())
    if not values or any(v not in ("spread", "hot") for v in values) or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError("spread, hot, both, or spread,hot")
    return values


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=parse_counts, help="worker processes, comma-separated (1,2,4)")
    parser.add_argument("--seconds", type=float, help=f"seconds per phase ({SECONDS:g})")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY,
                        help=f"connections of the closed-loop peak phases ({CONCURRENCY})")
    parser.add_argument("--paced-connections", type=int,
                        help="connections of the open-loop paced phases (as --concurrency: the "
                             "server sees at most as many requests at once as when its peak "
                             "was measured; a request waiting for a free connection counts "
                             "the wait)")
    parser.add_argument("--load", type=float, default=LOAD_FRACTION,
                        help=f"paced rate as a fraction of the measured peak ({LOAD_FRACTION})")
    parser.add_argument("--arrivals", choices=("poisson", "uniform"), default="poisson",
                        help="paced arrivals (poisson)")
    parser.add_argument("--scenario", type=parse_scenarios, default=("spread", "hot"),
                        help="spread, hot or both (both); the latency figures use the first")
    parser.add_argument("--generators", type=int, default=GENERATORS,
                        help=f"load-generator processes ({GENERATORS})")
    parser.add_argument("--campaigns", type=int, help=f"campaigns of the spread scenario ({SPREAD_CAMPAIGNS})")
    parser.add_argument("--users", type=int, default=USERS, help=f"distinct users ({USERS:,})")
    parser.add_argument("--threads", type=int, help="server threads per worker (serve's default)")
    parser.add_argument("--max-rate", type=int, default=MAX_RATE,
                        help=f"requests/s pre-built for a closed-loop phase ({MAX_RATE}); "
                             "more are built on the fly")
    parser.add_argument("--quick", action="store_true",
                        help="smoke mode: 1 worker, 1 s phases, 20 spread campaigns")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--keep-db", action="store_true", help="do not drop the database")
    parser.add_argument("--pg-admin-url", default=PG_ADMIN_URL,
                        help="PostgreSQL to create the run's database on (libpq URL)")
    parser.add_argument("--redis-url", default=REDIS_URL, help=f"REDIS_URL of the server ({REDIS_URL})")
    parser.add_argument("--rate-limit", default=RATE_LIMIT,
                        help=f"PROMO_API_RATE_LIMIT of the server ({RATE_LIMIT}); 'default' "
                             "leaves the server's own")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy the events worker during the first scenario's peak phase "
                             "at the first worker count (which must be 1)")
    parser.add_argument("--py-spy", default=shutil.which("py-spy"),
                        help="the py-spy executable (default: on PATH)")
    parser.add_argument("--profile-out", type=Path, default=Path("load-profile.txt"),
                        help="where --profile keeps the collapsed stacks (load-profile.txt)")
    parser.add_argument("--seed", type=int, default=2027)
    args = parser.parse_args(argv)
    args.profile_out = args.profile_out.resolve()
    args.paced_connections = args.paced_connections or args.concurrency
    args.workers = args.workers or ((1,) if args.quick else WORKERS)
    args.seconds = args.seconds or (1.0 if args.quick else SECONDS)
    args.campaigns = args.campaigns or (20 if args.quick else SPREAD_CAMPAIGNS)
    if args.quick:
        args.max_rate = min(args.max_rate, 3000)
    if not 0 < args.seconds <= SKEW_MARGIN:
        parser.error(f"--seconds must be in (0, {SKEW_MARGIN}]: requests are signed before a phase")
    if not 0 < args.load <= 1.5:
        parser.error("--load must be in (0, 1.5]")
    for name in ("concurrency", "paced_connections", "generators", "campaigns", "users", "max_rate"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.profile and (not args.py_spy or args.workers[0] != 1):
        parser.error("--profile needs py-spy (pip install py-spy; or --py-spy PATH) and "
                     "--workers starting with 1")
    if args.campaigns > 999:
        parser.error("--campaigns must be at most 999")

    def in_workdir() -> int:
        with tempfile.TemporaryDirectory(prefix="promo-bench-load-") as tmp:
            return run(args, Path(tmp))
    return interruptible(in_workdir)



def run(args, workdir: Path) -> int:
    run_began = time.monotonic()
    tag = uuid.uuid4().hex[:8]
    scenarios = args.scenario
    redis_client, redis_version, db = connect_services(args.pg_admin_url, args.redis_url, tag)
    servers: list[Server] = []
    runner: Runner | None = None
    try:
        env = server_env(db.url, args.redis_url, tag, args.rate_limit)
        run_cli(cli_command() + ["db", "upgrade"], env, workdir, "promo-engine db upgrade")
        campaigns = workdir / "campaigns.yaml"
        campaigns.write_text(campaign_yaml(tag, scenarios, args.campaigns, datetime.now(timezone.utc)))
        threads = ["--threads", str(args.threads)] if args.threads else []

        def start_servers(n: int) -> tuple[Server, Server]:
            pair = start_pair(n, threads, env, workdir)
            servers.extend(pair)  # stopped in the end, whatever happens
            return pair

        # The first servers start beside the rest of the setup (they need only the schema).
        first_servers = start_servers(args.workers[0])
        setup = [
            (start_cli(cli_command() + ["clients", "create", f"bench-load-{tag}", "--json"], env, workdir),
             "promo-engine clients create"),
            (start_cli(cli_command() + ["campaigns", "apply", str(campaigns)], env, workdir),
             "promo-engine campaigns apply"),
            (start_cli([sys.executable, str(BARE_APP), "init"], env, workdir), "bare_app.py init"),
        ]
        outputs = [finish_cli(process, what) for process, what in setup]
        client = json.loads(outputs[0].strip().splitlines()[-1])

        seconds = args.seconds
        print_header(args, db, redis_version)

        runner = Runner(args, client, tag, db.name)
        phases: list[Phase] = []
        warmups: list[Phase] = []
        primes: list[Primed] = []
        main_scenario = scenarios[0]
        for index, n in enumerate(args.workers):
            events_server, bare_server = first_servers if index == 0 else start_servers(n)
            events_server.wait_ready(n)
            bare_server.wait_ready(n)
            by_kind = {"events": events_server, "bare": bare_server}

            def phase(kind: str, scenario: str, load: str, **kw) -> Phase:  # noqa: E306
                result = runner.run(by_kind[kind], n, kind, scenario, load, **kw)
                (warmups if load == "warm-up" else phases).append(result)
                print_progress(result, run_began)
                return result

            # One event per scenario now: it begins the Redis counters (and, after a data
            # loss, a settle period that passes while the bare floor is measured); `prime`
            # then waits for whatever is left of it and has every campaign's counter built,
            # one event at a time.
            primed = Primed()
            primes.append(primed)
            prime(events_server, runner, scenarios, n, primed, wait=False)
            warm = min(2.0, max(0.5, seconds / 3))
            phase("bare", main_scenario, "warm-up", connections=args.concurrency, seconds=warm)
            phase("bare", main_scenario, "unloaded", connections=1, seconds=seconds)
            bare_peak = phase("bare", main_scenario, "peak", connections=args.concurrency, seconds=seconds)
            if bare_peak.rate > 0:
                phase("bare", main_scenario, "paced", connections=args.paced_connections,
                      seconds=seconds, rate=args.load * bare_peak.rate)
            prime(events_server, runner, scenarios, n, primed, wait=True)
            print_primed(primed, n, run_began)
            for scenario in scenarios:
                phase("events", scenario, "warm-up", connections=args.concurrency, seconds=warm)
            phase("events", main_scenario, "unloaded", connections=1, seconds=seconds)
            peaks = {}
            for s in scenarios:
                profiler = None
                if args.profile and n == args.workers[0] and s == main_scenario:
                    profiler = Profiler(args.py_spy, args.profile_out)
                peaks[s] = phase("events", s, "peak", connections=args.concurrency,
                                 seconds=seconds, profiler=profiler)
                if profiler is not None:
                    profiler.finish(peaks[s])
            if peaks[main_scenario].rate > 0:
                phase("events", main_scenario, "paced", connections=args.paced_connections,
                      seconds=seconds, rate=args.load * peaks[main_scenario].rate)
            for server in (events_server, bare_server):
                code = server.stop()
                servers.remove(server)
                if code not in (0, None):
                    print(f"warning: the {server.name} server exited with {code}; its log ends:\n"
                          f"{server.log_tail()}", file=sys.stderr)

        counts = db.counts(tag)
    finally:
        if runner is not None:
            runner.stop_generators()
        for server in servers:
            server.stop(timeout=10)
        deleted = cleanup_redis(redis_client, tag)
        if not args.keep_db:
            db.drop()

    return print_results(args, phases, warmups, primes, counts, db.name, deleted, run_began)


if __name__ == "__main__":
    sys.exit(main())
