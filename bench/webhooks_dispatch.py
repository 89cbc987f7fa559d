"""Part 2 of `bench/webhooks.py`: one dispatcher against the HTTP path's peak.

On a fresh database with the campaigns (as `load.py` makes it): `promo-engine serve
--workers 1 --no-scheduler` (so no dispatcher runs in it), a receiver process answering
204 (`webhooks_receiver.py`), an endpoint added with `promo-engine webhooks add URL --json`,
and exactly one `promo-engine webhooks run`. After the campaigns' counters are primed and
a short warm-up has drained, generator processes drive the server in a closed loop at
`load.py`'s peak concurrency for --seconds while a thread samples the outbox every second
(events committed, deliveries written and delivered, the backlog, and the lag: the age of
the oldest due pending delivery, as `promo_webhook_oldest_pending_seconds` reads it). When
the load stops, the time until nothing is pending is the drain.

Apart from the write-path part because it measures processes from outside (SQL and /proc),
where that part runs the app in its own process; the printing is `webhooks_report.py`.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from argparse import Namespace
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from bench.load_cpu import machine_cpu, pg_backends_cpu, redis_cpu
from bench.load_phases import Phase, Runner
from bench.load_prime import Primed, prime
from bench.load_servers import HOST, Server
from bench.load_setup import (RATE_LIMIT, Database, campaign_yaml, finish_cli, run_cli,
                              server_env, start_cli)
from bench.processes import cli_command, cpu_seconds, free_port
from bench.webhooks_ledger import OutboxCheck, check_outbox
from bench.webhooks_receiver import Receiver, receiver_url

SAMPLE_SECONDS = 1.0
DRAIN_POLL_SECONDS = 0.1
DISPATCHER_START_TIMEOUT = 60.0

# One statement, so that the figures of a sample are of one moment. A sequential scan of
# the outbox (tens of thousands of rows): a few milliseconds a second of PostgreSQL's time.
_SAMPLE = """
SELECT (SELECT count(*) FROM events), count(*),
       count(*) FILTER (WHERE status = 'delivered'),
       count(*) FILTER (WHERE status = 'pending'),
       coalesce(extract(epoch FROM clock_timestamp() - min(next_attempt_at)
                FILTER (WHERE status = 'pending' AND next_attempt_at <= clock_timestamp())),
                0)::float8
FROM webhook_deliveries
"""
_PENDING = "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'"


@dataclass(frozen=True)
class Sample:
    t: float  # s since the load began
    events: int  # committed so far
    written: int  # deliveries written so far
    delivered: int
    pending: int  # the backlog: due, or claimed and in flight
    lag: float  # s: age of the oldest due pending delivery (0: none due)
    received: int  # requests the receiver answered


@dataclass
class DispatchResult:
    seconds: float
    concurrency: int
    generators: int
    campaigns: int
    users: int
    samples: list[Sample] = field(default_factory=list)
    load_end: float = 0.0  # s since the load began (the generators' results in)
    drained_at: float | None = None  # s since the load began; None: not within the timeout
    drain_timeout: float = 0.0
    phase: Phase | None = None
    warm_up: Phase | None = None
    primed: Primed | None = None
    cpu: dict = field(default_factory=dict)  # process -> CPU s from load start to drained
    busy: float = 0.0  # the machine's busy share over the same span
    other: float = 0.0  # of it, processes outside the benchmark
    receiver: dict = field(default_factory=dict)
    dispatcher_exit: int | None = None
    dispatcher_log: str = ""
    outbox: OutboxCheck | None = None
    stored: int = 0
    answered: int = 0

    @property
    def problems(self) -> list[str]:
        found = list(self.outbox.problems) if self.outbox else ["the outbox was not checked"]
        for phase in (self.warm_up, self.phase):
            if phase is not None and phase.errors:
                found.append(f"{sum(phase.errors.values())} requests of the {phase.load} "
                             f"phase failed: " + ", ".join(
                                 f"{k} x{v}" for k, v in phase.errors.most_common())
                             + "".join(f"; e.g. {s}" for s in phase.samples[:1]))
        if self.stored != self.answered:
            found.append(f"{self.stored} events stored, {self.answered} answered 201")
        if self.drained_at is None:
            found.append(f"the backlog did not drain within {self.drain_timeout:g} s of the "
                         f"load's end")
        if self.outbox is not None:
            undelivered = {k: v for k, v in self.outbox.statuses.items() if k != "delivered"}
            if undelivered:
                found.append(f"deliveries not delivered at the end: {undelivered}")
        if self.receiver.get("refused"):
            found.append(f"{self.receiver['refused']} signatures refused by the receiver")
        if not self.receiver.get("verified"):
            found.append("the receiver verified no signature")
        delivered = self.outbox.statuses.get("delivered", 0) if self.outbox else 0
        if self.receiver.get("distinct", 0) != delivered:
            found.append(f"the receiver got {self.receiver.get('distinct', 0)} distinct "
                         f"webhook ids, the outbox says {delivered} delivered")
        return found


class Sampler:
    """The outbox every second from the load's start until stopped. Handed to
    `Runner.run` as its `profiler`: it starts just before the generators do."""

    def __init__(self, dsn: str, receiver: Receiver, cpu_now):
        self.dsn, self.receiver, self.cpu_now = dsn, receiver, cpu_now
        self.samples: list[Sample] = []
        self.began = 0.0
        self.cpu_start: dict = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="outbox-sampler", daemon=True)
        self.error: str | None = None

    def start(self, server, seconds) -> None:  # Runner.run's profiler hook
        self.cpu_start = self.cpu_now()
        self.began = time.monotonic()
        self._thread.start()

    def _loop(self) -> None:
        import psycopg
        try:
            with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
                tick = 0
                while True:  # one last sample once stopped
                    t = time.monotonic() - self.began
                    row = conn.execute(_SAMPLE).fetchone()
                    self.samples.append(Sample(t, *row, self.receiver.counts()["requests"]))
                    if self._stop.is_set():
                        return
                    tick += 1
                    self._stop.wait(max(0.0, self.began + tick * SAMPLE_SECONDS
                                        - time.monotonic()))
        except Exception as exc:  # noqa: BLE001 (reported with the results)
            self.error = f"{type(exc).__name__}: {exc}"

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    kill = stop  # Runner.run's hook on failure


class Dispatcher:
    """`promo-engine webhooks run`, in its own session, logging to a file; `stop` ends it."""

    def __init__(self, env: dict, workdir: Path):
        self.log_path = workdir / "webhooks-run.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(cli_command() + ["webhooks", "run"], env=env,
                                            cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + DISPATCHER_START_TIMEOUT
        while "dispatcher started" not in self.log():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"`promo-engine webhooks run` did not start:\n{self.log()}")
            time.sleep(0.1)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait(timeout=10)
        return self.process.returncode


def wait_drained(dsn: str, timeout: float) -> float | None:
    """Until no delivery is pending: the monotonic time it happened, None after `timeout`."""
    import psycopg
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        while True:
            if conn.execute(_PENDING).fetchone()[0] == 0:
                return time.monotonic()
            if time.monotonic() > deadline:
                return None
            time.sleep(DRAIN_POLL_SECONDS)


def run_dispatch(args, tag: str, database: Database, redis_url: str,
                 workdir: Path) -> DispatchResult:
    env = server_env(database.url, redis_url, tag, RATE_LIMIT)
    run_cli(cli_command() + ["db", "upgrade"], env, workdir, "promo-engine db upgrade")
    campaigns = workdir / "campaigns.yaml"
    campaigns.write_text(campaign_yaml(tag, ("spread",), args.campaigns,
                                       datetime.now(timezone.utc)))
    port = free_port(HOST)
    setup = [(start_cli(cli_command() + ["clients", "create", f"bench-webhooks-{tag}", "--json"],
                        env, workdir), "promo-engine clients create"),
             (start_cli(cli_command() + ["campaigns", "apply", str(campaigns)], env, workdir),
              "promo-engine campaigns apply")]
    server = Server("events", cli_command() + ["serve", "--workers", "1", "--no-scheduler"],
                    env, workdir)
    receiver = dispatcher = runner = None
    result = DispatchResult(args.seconds, args.concurrency, args.generators, args.campaigns,
                            args.users, drain_timeout=args.drain_timeout)
    try:
        outputs = [finish_cli(process, what) for process, what in setup]
        client = json.loads(outputs[0].strip().splitlines()[-1])
        # After the campaigns (their `campaign.opened` would be announced too) and before
        # the first event: every event of this database is announced, and nothing else.
        endpoint = json.loads(run_cli(
            cli_command() + ["webhooks", "add", receiver_url(port), "--json"], env, workdir,
            "promo-engine webhooks add").strip().splitlines()[-1])
        receiver = Receiver(port, endpoint["secret"])
        dispatcher = Dispatcher(env, workdir)
        server.wait_ready(1)
        runner = Runner(Namespace(generators=args.generators, max_rate=args.max_rate,
                                  users=args.users, campaigns=args.campaigns, seed=2027,
                                  arrivals="poisson"), client, tag, database.name)
        result.primed = Primed()
        prime(server, runner, ("spread",), 1, result.primed, wait=True)
        warm = min(2.0, max(0.5, args.seconds / 3))
        result.warm_up = runner.run(server, 1, "events", "spread", "warm-up",
                                    connections=args.concurrency, seconds=warm)
        if wait_drained(database.dsn, args.drain_timeout) is None:
            raise SystemExit("the warm-up's deliveries did not drain within "
                             f"{args.drain_timeout:g} s:\n{dispatcher.log()[-2000:]}")

        def cpu_now() -> dict:
            busy, total = machine_cpu()
            return {"events server (1 worker)": sum(cpu_seconds(p) or 0.0 for p in server.pids()),
                    "dispatcher (webhooks run)": cpu_seconds(dispatcher.process.pid) or 0.0,
                    "receiver": cpu_seconds(receiver.pid) or 0.0,
                    "PostgreSQL backends": pg_backends_cpu(database.name),
                    "Redis": redis_cpu(), "this process (sampling)": time.process_time(),
                    "_busy": busy, "_total": total}

        sampler = Sampler(database.dsn, receiver, cpu_now)
        try:
            result.phase = runner.run(server, 1, "events", "spread", "peak",
                                      connections=args.concurrency, seconds=args.seconds,
                                      profiler=sampler)
            result.load_end = time.monotonic() - sampler.began
            drained = wait_drained(database.dsn, args.drain_timeout)
            result.drained_at = drained - sampler.began if drained is not None else None
        finally:
            sampler.stop()
        if sampler.error:
            raise SystemExit(f"sampling the outbox failed: {sampler.error}")
        result.samples = sampler.samples
        end = cpu_now()
        result.cpu = _cpu_between(sampler.cpu_start, end)
        result.cpu["generators (load only)"] = result.phase.generator_cpu
        span = end["_total"] - sampler.cpu_start["_total"]
        result.busy = (end["_busy"] - sampler.cpu_start["_busy"]) / span if span > 0 else 0.0
        ticks = os.sysconf("SC_CLK_TCK")
        ours = sum(result.cpu.values()) * ticks
        result.other = (max(0.0, end["_busy"] - sampler.cpu_start["_busy"] - ours) / span
                        if span > 0 else 0.0)
    finally:
        if runner is not None:
            runner.stop_generators()
        if dispatcher is not None:
            result.dispatcher_exit = dispatcher.stop()
            result.dispatcher_log = dispatcher.log()
        if receiver is not None:
            result.receiver = receiver.counts()
            receiver.stop()
        server.stop(timeout=10)
    result.answered = (result.primed.ok + result.warm_up.ok + result.phase.ok)
    import psycopg
    with psycopg.connect(database.dsn, connect_timeout=5) as conn:
        result.stored = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    result.outbox = check_outbox(database.dsn, every_event_to=endpoint["id"])
    return result


def _cpu_between(before: dict, after: dict) -> dict:
    spent = {}
    for name, value in after.items():
        if name.startswith("_"):
            continue
        if isinstance(value, dict):  # PostgreSQL backends by pid; new ones count whole
            spent[name] = sum(max(0.0, cpu - before[name].get(pid, 0.0))
                              for pid, cpu in value.items())
        else:
            spent[name] = value - before[name]
    return spent
