#!/usr/bin/env python
"""Batched ingestion: committed events/s of `promo-engine consume` against the HTTP path,
on the same PostgreSQL database, Redis and campaigns, in one run.

The world is bench/load.py's (`load_setup.py`): a fresh database, the run's own Redis
prefix, the "spread" campaigns (one 10% discount per merchant, budgets and
max_redemptions in Redis), 20,000 users, every event a new payment earning base points and
one discount. The two sides, one after the other (--rounds alternates them again):

* HTTP: `promo-engine serve --workers W --no-scheduler`, primed (every campaign's Redis
  counter built), a warm-up, then bench/load.py's peak phase: --concurrency connections,
  closed loop, for --seconds; its rate is completions per second after the ramp. Every
  answer is checked (201 with the campaign's reward).
* Stream: --messages payments of the same kind (bench/load_requests.py's bodies: same
  merchants, users and amounts) added to a Redis Stream first, then C processes of
  `promo-engine consume --batch B` (its default max wait) drain it. The rate is taken from
  the ledger: the events' created_at, the first and last 10% left out (start-up and the
  tail of the last batches). Every message must end recorded: no dead letter, nothing
  pending, one event and one discount per message in the ledger.

CPU per committed event is printed for both: the server's or consumers' processes and the
run's PostgreSQL backends (from /proc), so the ratio can be read as work as well as time.

    .venv/bin/python bench/consume.py         # W=1,2 and C=1,2,3; 10 s, 20,000 messages
    .venv/bin/python bench/consume.py --quick        # smoke: W=1, C=1, 2 s, 2,000 messages
    .venv/bin/python bench/consume.py --workers 2 --consumers 2 --batch 200

Each worker count W and consumer count C is run in turn (--rounds times). The last line is
`consume events/s: X; HTTP events/s: Y; consume / HTTP: Z`, each side at its best count
on this machine (the line above it says which). Exit status 0 when every request and message succeeded and the
ledger matches (with --check, also Z >= 3); the database is dropped and the run's Redis
keys deleted at the end.
"""
from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # runnable as `python bench/consume.py` from anywhere
    sys.path.insert(0, str(ROOT))

from bench.load_cpu import CpuSnapshot, cpu_between  # noqa: E402
from bench.load_phases import Runner  # noqa: E402
from bench.load_prime import Primed, prime  # noqa: E402
from bench.load_report import machine_note  # noqa: E402
from bench.load_requests import Plan, RequestMaker  # noqa: E402
from bench.load_servers import HOST, Server  # noqa: E402
from bench.load_setup import (PG_ADMIN_URL, RATE_LIMIT, REDIS_URL, campaign_yaml,  # noqa: E402
                              cleanup_redis, connect_services, run_cli, server_env)
from bench.machine import print_load_average  # noqa: E402
from bench.processes import cli_command, interruptible  # noqa: E402

SECONDS = 10.0
MESSAGES = 20_000
CONCURRENCY = 16
GENERATORS = 2
CAMPAIGNS = 200
USERS = 20_000
BATCH = 100
TARGET = 3.0
DRAIN_TIMEOUT = 600.0
MAX_RATE = 5000


def counts(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("positive whole numbers, comma-separated")
    return values


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=counts, default=(1, 2),
                        help="HTTP worker processes, comma-separated (1,2)")
    parser.add_argument("--consumers", type=counts, default=(1, 2, 3),
                        help="consumer processes, comma-separated (1,2,3)")
    parser.add_argument("--batch", type=int, default=BATCH, help=f"consume --batch ({BATCH})")
    parser.add_argument("--seconds", type=float, help=f"seconds of the HTTP peak ({SECONDS:g})")
    parser.add_argument("--messages", type=int, help=f"messages per stream round ({MESSAGES:,})")
    parser.add_argument("--rounds", type=int, default=1, help="HTTP then stream, this often (1)")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY,
                        help=f"HTTP connections, closed loop ({CONCURRENCY})")
    parser.add_argument("--generators", type=int, default=GENERATORS,
                        help=f"HTTP load-generator processes ({GENERATORS})")
    parser.add_argument("--campaigns", type=int, help=f"spread campaigns ({CAMPAIGNS})")
    parser.add_argument("--users", type=int, default=USERS, help=f"distinct users ({USERS:,})")
    parser.add_argument("--quick", action="store_true", help="smoke mode: 2 s, 2,000 messages")
    parser.add_argument("--check", action="store_true", help=f"exit 1 unless Z >= {TARGET:g}")
    parser.add_argument("--pg-admin-url", default=PG_ADMIN_URL)
    parser.add_argument("--redis-url", default=REDIS_URL)
    parser.add_argument("--seed", type=int, default=2027)
    args = parser.parse_args(argv)
    args.seconds = args.seconds or (2.0 if args.quick else SECONDS)
    args.messages = args.messages or (2000 if args.quick else MESSAGES)
    args.campaigns = args.campaigns or (20 if args.quick else CAMPAIGNS)
    # What bench/load.py's Runner and priming read from its arguments.
    args.max_rate, args.arrivals, args.scenario = MAX_RATE, "poisson", ("spread",)
    if args.quick:
        args.workers, args.consumers = args.workers[:1], args.consumers[:1]
    for name in ("batch", "messages", "rounds", "concurrency", "generators", "campaigns",
                 "users"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")

    def in_workdir() -> int:
        with tempfile.TemporaryDirectory(prefix="promo-bench-consume-") as tmp:
            return run(args, Path(tmp))
    return interruptible(in_workdir)


def run(args, workdir: Path) -> int:
    tag = uuid.uuid4().hex[:8]
    redis_client, redis_version, db = connect_services(args.pg_admin_url, args.redis_url, tag)
    env = server_env(db.url, args.redis_url, tag, RATE_LIMIT)
    started: list = []  # servers and consumer processes, stopped whatever happens
    http_rounds, stream_rounds, problems = [], [], []
    try:
        run_cli(cli_command() + ["db", "upgrade"], env, workdir, "promo-engine db upgrade")
        campaigns = workdir / "campaigns.yaml"
        campaigns.write_text(campaign_yaml(tag, ("spread",), args.campaigns,
                                           datetime.now(timezone.utc)))
        run_cli(cli_command() + ["campaigns", "apply", str(campaigns)], env, workdir,
                "promo-engine campaigns apply")
        out = run_cli(cli_command() + ["clients", "create", f"bench-consume-{tag}", "--json"],
                      env, workdir, "promo-engine clients create")
        client = json.loads(out.strip().splitlines()[-1])
        print_header(args, db, redis_version)
        runner = Runner(args, client, tag, db.name)
        stream_no = 0
        for round_no in range(1, args.rounds + 1):
            for workers in args.workers:
                http = http_round(args, workers, runner, env, workdir, started, problems)
                http_rounds.append(http)
                print(f"round {round_no} HTTP, {workers} worker(s): {http['rate']:,.0f} events/s; "
                      f"CPU per event: server {http['server_ms']:.2f} ms, PostgreSQL "
                      f"{http['pg_ms']:.2f} ms, Redis {http['redis_ms']:.2f} ms", flush=True)
            for consumers in args.consumers:
                stream_no += 1
                stream = stream_round(args, consumers, stream_no, tag, db, redis_client, env,
                                      workdir, started, problems)
                stream_rounds.append(stream)
                print(f"round {round_no} stream, {consumers} consumer(s): {stream['rate']:,.0f} "
                      f"events/s ({stream['events']:,} messages, batch {args.batch}); CPU per "
                      f"event: consumers {stream['server_ms']:.2f} ms, PostgreSQL "
                      f"{stream['pg_ms']:.2f} ms, Redis {stream['redis_ms']:.2f} ms", flush=True)
    finally:
        for process in started:
            stop(process)
        deleted = cleanup_redis(redis_client, tag)
        db.drop()
    print(f"\nDatabase {db.name} dropped; {deleted:,} Redis keys of the run deleted.")
    for problem in problems:
        print(f"ERROR: {problem}", file=sys.stderr)
    best_stream = max(stream_rounds, key=lambda r: r["rate"])
    best_http = max(http_rounds, key=lambda r: r["rate"])
    consume, http = best_stream["rate"], best_http["rate"]
    ratio = consume / http if http > 0 else float("nan")
    print(f"Best of each side on this machine: consume with {best_stream['consumers']} "
          f"consumer(s), HTTP with {best_http['workers']} worker(s).")
    http_cpu = min(r["server_ms"] + r["pg_ms"] for r in http_rounds)
    stream_cpu = min(r["server_ms"] + r["pg_ms"] for r in stream_rounds)
    print(f"CPU per committed event (processes + PostgreSQL), best round: HTTP "
          f"{http_cpu:.2f} ms, consume {stream_cpu:.2f} ms; HTTP / consume "
          f"{http_cpu / stream_cpu:.2f}" if stream_cpu > 0 else "")
    verdict = "met" if ratio >= TARGET else "MISSED"
    print(f"Target consume / HTTP >= {TARGET:g}: {verdict}")
    print(f"consume events/s: {consume:.0f}; HTTP events/s: {http:.0f}; "
          f"consume / HTTP: {ratio:.2f}")
    if problems:
        return 1
    return 1 if args.check and ratio < TARGET else 0


def print_header(args, db, redis_version: str) -> None:
    print(f"Batched ingestion: `promo-engine consume --batch {args.batch}` "
          f"(x{', '.join(map(str, args.consumers))} processes) against POST /v1/events on "
          f"`promo-engine serve --workers {', '.join(map(str, args.workers))}`, the same "
          f"PostgreSQL database, Redis and campaigns")
    print(machine_note(db, redis_version))
    print_load_average()
    print(f"{args.campaigns} spread campaigns (one 10% discount per merchant, budgets in Redis), "
          f"{args.users:,} users, every event a new payment. HTTP: {args.concurrency} "
          f"connections, closed loop, {args.seconds:g} s after priming and a warm-up. Stream: "
          f"{args.messages:,} messages added first, then drained; the rate from the ledger's "
          f"created_at, first and last 10% left out.\n", flush=True)


def http_round(args, workers: int, runner: Runner, env: dict, workdir: Path, started: list,
               problems: list) -> dict:
    server = Server("events", cli_command() + ["serve", "--workers", str(workers),
                                               "--no-scheduler"], env, workdir)
    started.append(server)
    try:
        server.wait_ready(workers)
        prime(server, runner, ("spread",), workers, Primed(), wait=True)
        warm = runner.run(server, workers, "events", "spread", "warm-up",
                          connections=args.concurrency, seconds=min(2.0, args.seconds))
        peak = runner.run(server, workers, "events", "spread", "peak",
                          connections=args.concurrency, seconds=args.seconds)
    finally:
        code = server.stop()
        started.remove(server)
    for phase in (warm, peak):
        if phase.errors:
            problems.append(f"HTTP {phase.load}: {dict(phase.errors)} e.g. {phase.samples[:1]}")
    if code not in (0, None):
        problems.append(f"the events server exited with {code}: {server.log_tail()}")
    return {"workers": workers, "rate": peak.rate, "server_ms": peak.cpu_ms("server"), "pg_ms": peak.cpu_ms("pg"),
            "redis_ms": peak.cpu_ms("redis")}


def stream_round(args, consumers_n: int, round_no: int, tag: str, db, redis_client, env: dict,
                 workdir: Path, started: list, problems: list) -> dict:
    import psycopg
    stream = f"bench-consume-{tag}:events:{round_no}"
    client_id = f"stream-{round_no}"
    fill(args, redis_client, stream, tag, round_no)
    consumers = []
    for n in range(consumers_n):
        log = open(workdir / f"consumer-{round_no}-{n}.log", "wb")
        process = subprocess.Popen(
            cli_command() + ["consume", "--stream", stream, "--consumer", f"c{n}",
                             "--client", client_id, "--batch", str(args.batch),
                             "--block-ms", "200"],
            env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        process.log_path = log.name
        log.close()
        consumers.append(process)
        started.append(process)

    def recorded() -> int:
        with psycopg.connect(db.dsn, connect_timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM events WHERE client_id = %s",
                                (client_id,)).fetchone()[0]

    pids = [p.pid for p in consumers]
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while recorded() < max(1, args.messages // 100) and time.monotonic() < deadline:
        time.sleep(0.05)
    before, count_before = CpuSnapshot.take(pids, db.name), recorded()
    while time.monotonic() < deadline:
        info = redis_client.xinfo_groups(stream)[0]
        if info["pending"] == 0 and info["lag"] == 0 and recorded() >= args.messages:
            break
        if any(p.poll() is not None for p in consumers):
            break
        time.sleep(0.05)
    after, count_after = CpuSnapshot.take(pids, db.name), recorded()
    for process in consumers:
        stop(process)
        started.remove(process)
        if process.returncode not in (0, None):
            problems.append(f"consumer exited with {process.returncode}: "
                            f"{Path(process.log_path).read_text()[-2000:]}")
    cpu = cpu_between(before, after, 0.0)
    committed = max(1, count_after - count_before)
    with psycopg.connect(db.dsn, connect_timeout=5) as conn:
        times = [row[0] for row in conn.execute(
            "SELECT created_at FROM events WHERE client_id = %s ORDER BY created_at",
            (client_id,))]
        rewarded = conn.execute(
            "SELECT count(*) FROM rewards r JOIN events e ON e.id = r.event_pk "
            "WHERE e.client_id = %s AND r.campaign_id IS NOT NULL", (client_id,)).fetchone()[0]
    dead = redis_client.xlen(stream + ":dead") if redis_client.exists(stream + ":dead") else 0
    info = redis_client.xinfo_groups(stream)[0]
    if (len(times), rewarded, dead, info["pending"], info["lag"]) != (args.messages,
                                                                     args.messages, 0, 0, 0):
        problems.append(f"stream round {round_no}: {len(times):,} events and {rewarded:,} "
                        f"discounts for {args.messages:,} messages; {dead} dead letters, "
                        f"{info['pending']} pending, {info['lag']} unread")
    rate = 0.0
    low, high = len(times) // 10, len(times) - 1 - len(times) // 10
    if high > low:
        span = (times[high] - times[low]).total_seconds()
        rate = (high - low) / span if span > 0 else 0.0
    return {"consumers": consumers_n, "rate": rate, "events": len(times), "server_ms": 1000 * cpu["server"] / committed,
            "pg_ms": 1000 * cpu["pg"] / committed, "redis_ms": 1000 * cpu["redis"] / committed}


def fill(args, redis_client, stream: str, tag: str, round_no: int) -> None:
    """The round's messages: load.py's payments (merchants, users and amounts alike)."""
    maker = RequestMaker(Plan(
        kind="events", scenario="spread", mode="closed", threads=1, seconds=0.0, host=HOST,
        port=0, key_id="-", secret="-", tag=tag, id_prefix=f"{tag}-s{round_no}",
        seed=args.seed + round_no, users=args.users, spread=args.campaigns, prebuild=0), 0)
    for start in range(0, args.messages, 2000):
        pipe = redis_client.pipeline(transaction=False)
        for _ in range(min(2000, args.messages - start)):
            body = maker.make()[0]
            pipe.xadd(stream, {"event": body})
        pipe.execute()


def stop(process) -> None:
    if isinstance(process, Server):
        process.stop(timeout=10)
        return
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
