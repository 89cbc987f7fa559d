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
"""
from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import platform
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Sequence
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # runnable as `python bench/http_api.py` from anywhere
    sys.path.insert(0, str(ROOT))

from bench.servers import wait_until_healthy  # noqa: E402
from promo_engine.api.auth import signed_headers  # noqa: E402

HOST = "127.0.0.1"  # never anything else: the load stays on this machine
SECRET_KEY = "bench-secret-key-0123456789abcdef"
CONCURRENCY = (1, 4, 16)
SECONDS = 6.0  # per endpoint and concurrency
MAX_REQUESTS_PER_THREAD = 1_000_000  # a bound on every loop, whatever the duration
WARMUP_EVENTS = 200
USERS = 2000
MERCHANTS = 200
MCCS = ("5812", "5814", "5411", "5311", "5999")
CHANNELS = ("qr", "qr", "qr", "in_store", "in_store", "online")
ZONE = "Asia/Shanghai"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 40.0  # gunicorn's graceful timeout is 30 s
REQUEST_TIMEOUT = 60.0
ENV_VARS = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "PROMO_TIMEZONE", "PROMO_CURRENCY",
            "PROMO_POINTS_PER_UNIT", "PROMETHEUS_MULTIPROC_DIR")

HEALTHZ, QUOTE, EVENTS = "GET /healthz", "POST /v1/quote", "POST /v1/events"
ENDPOINTS = (HEALTHZ, QUOTE, EVENTS)


# --------------------------------------------------------------------------- setup


def campaign_yaml(now: datetime) -> str:
    """Four campaigns open from yesterday to a month from now (local time), no windows,
    so every event falls in them; the budgets are far from running out, so the guarded
    UPDATE runs (and succeeds) for every grant, and the per-user limits do bite."""
    local = now.astimezone(ZoneInfo(ZONE)).replace(tzinfo=None, microsecond=0)
    starts = (local - timedelta(days=1)).isoformat()
    ends = (local + timedelta(days=30)).isoformat()
    shops = [f"m_{i:03d}" for i in range(MERCHANTS)]
    dining = "[" + ", ".join(shops[: MERCHANTS // 2]) + "]"
    partners = "[" + ", ".join(shops[MERCHANTS // 4: 3 * MERCHANTS // 4]) + "]"
    return f"""\
# Written by bench/http_api.py for one run.
id: bench-dining
name: 15% off at partner restaurants
type: holiday_discount
merchants: {dining}
timezone: {ZONE}
starts_at: {starts}
ends_at: {ends}
conditions:
  min_amount: "30.00"
  channels: [qr, in_store]
budget:
  amount: "100000000.00"
limits:
  per_user: 20
  per_user_daily: 3
  max_redemptions: 10000000
priority: 100
params:
  percent: 15
  max_discount: "30.00"
---
id: bench-double-points
name: Double points at partner merchants
type: points_multiplier
merchants: {partners}
timezone: {ZONE}
starts_at: {starts}
ends_at: {ends}
budget:
  points: 1000000000
limits:
  per_user_daily: 5
priority: 50
params:
  multiplier: 2
---
id: bench-first-payment
name: 100 points for the first payment with the wallet
type: first_activation_bonus
timezone: {ZONE}
starts_at: {starts}
ends_at: {ends}
budget:
  points: 1000000000
params:
  on: first_payment
  points: 100
---
id: bench-welcome
name: 500 points for activating the wallet
type: first_activation_bonus
timezone: {ZONE}
starts_at: {starts}
ends_at: {ends}
budget:
  points: 1000000000
params:
  points: 500
"""


def cli_command() -> list[str]:
    script = Path(sys.executable).with_name("promo-engine")
    return [str(script)] if script.exists() else [sys.executable, "-m", "promo_engine.cli"]


def run_cli(args: Sequence[str], env: dict, cwd: Path) -> str:
    done = subprocess.run(cli_command() + list(args), env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"promo-engine {' '.join(args)} failed ({done.returncode}):\n"
                         f"{done.stdout}{done.stderr}")
    return done.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def children_of(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except (OSError, ValueError):
        return []


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of one process (Linux /proc), None where unavailable."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class Server:
    """`promo-engine serve --workers 1` in its own session; always stopped by `stop`."""

    def __init__(self, env: dict, workdir: Path, workers: int, threads: int | None):
        self.port = free_port()
        self.base = (HOST, self.port)
        self.log_path = workdir / "server.log"
        command = cli_command() + ["serve", "--host", HOST, "--port", str(self.port),
                                   "--workers", str(workers)]
        if threads is not None:
            command += ["--threads", str(threads)]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, env=env, cwd=workdir, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        self.worker_pid: int | None = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_ready(self) -> None:
        wait_until_healthy(self.process, self.base, timeout=START_TIMEOUT,
                           log_tail=self.log_tail, poll_seconds=0.2)
        workers = children_of(self.process.pid)
        self.worker_pid = workers[0] if len(workers) == 1 else None

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)  # our own child's group only
                self.process.wait(timeout=10)
        return self.process.returncode


# --------------------------------------------------------------------------- load


@dataclass
class PhaseResult:
    endpoint: str
    concurrency: int
    seconds: float  # wall time, from the start signal to the last thread's last response
    latencies: list[float]  # of the successful requests, seconds
    ok: int
    errors: Counter = field(default_factory=Counter)  # "status 500" / "ConnectionResetError"
    samples: list[str] = field(default_factory=list)  # the first few bad answers
    rewards: Counter = field(default_factory=Counter)  # campaign id (or "base") -> grants
    server_cpu: float | None = None  # seconds of the worker's CPU over the phase
    client_cpu: float | None = None

    @property
    def requests(self) -> int:
        return self.ok + sum(self.errors.values())

    @property
    def rate(self) -> float:
        """Successful (for events: committed) requests per second."""
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile of the latencies, in milliseconds."""
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        return 1000 * ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


class EventSource:
    """Payment events: distinct ids, users and merchants spread, amounts 10.00-500.00."""

    def __init__(self, tag: str, seed: int, users: int, merchants: int):
        self.tag, self.rng = tag, random.Random(seed)
        self.users, self.merchants, self.count = users, merchants, 0

    def next(self, with_id: bool = True) -> dict:
        rng = self.rng
        cents = rng.randint(1000, 50000)
        self.count += 1
        event = {"type": "payment", "user_id": f"u_{rng.randrange(self.users):05d}",
                 "occurred_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                 "merchant_id": f"m_{rng.randrange(self.merchants):03d}",
                 "amount": f"{cents // 100}.{cents % 100:02d}", "currency": "CNY",
                 "mcc": rng.choice(MCCS), "channel": rng.choice(CHANNELS)}
        if with_id:
            event = {"event_id": f"ev-{self.tag}-{self.count}", **event}
        return event


class Driver:
    """Sends one kind of request over one connection; `call` returns an error or None."""

    def __init__(self, base: tuple[str, int], endpoint: str, key_id: str, secret: str,
                 events: EventSource):
        self.conn = http.client.HTTPConnection(*base, timeout=REQUEST_TIMEOUT)
        self.endpoint, self.key_id, self.secret, self.events = endpoint, key_id, secret, events
        self.rewards: Counter = Counter()

    def connect(self) -> None:
        self.conn.connect()

    def close(self) -> None:
        self.conn.close()

    def call(self) -> str | None:
        if self.endpoint == HEALTHZ:
            return self._check(*self._send("GET", "/healthz", None, {}), expect=200)
        path = "/v1/events" if self.endpoint == EVENTS else "/v1/quote"
        event = self.events.next(with_id=self.endpoint == EVENTS)
        body = json.dumps(event, separators=(",", ":")).encode()
        headers = signed_headers(self.key_id, self.secret, "POST", path, body)
        headers["Content-Type"] = "application/json"
        status, raw = self._send("POST", path, body, headers)
        problem = self._check(status, raw, expect=201 if self.endpoint == EVENTS else 200)
        if problem is None and self.endpoint == EVENTS:
            try:
                answer = json.loads(raw)
                if answer["event_id"] != event["event_id"]:
                    return f"201 for another event: {raw[:200]!r}"
                for reward in answer["rewards"]:
                    self.rewards[reward["campaign_id"] or "base points"] += 1
            except (ValueError, KeyError, TypeError):
                return f"201 with a body that is not an event response: {raw[:200]!r}"
        return problem

    def _send(self, method: str, path: str, body: bytes | None, headers: dict) -> tuple[int, bytes]:
        self.conn.request(method, path, body=body, headers=headers)
        response = self.conn.getresponse()
        raw = response.read()
        return response.status, raw

    @staticmethod
    def _check(status: int, raw: bytes, expect: int) -> str | None:
        return None if status == expect else f"status {status}: {raw[:300]!r}"


def run_phase(endpoint: str, concurrency: int, make_driver: Callable[[int], Driver], *,
              seconds: float | None, requests: int | None,
              worker_pid: int | None) -> PhaseResult:
    """`concurrency` threads, each on its own connection, until the deadline or the count."""
    drivers = [make_driver(i) for i in range(concurrency)]
    if requests is not None:
        quotas = [requests // concurrency + (i < requests % concurrency) for i in range(concurrency)]
    else:
        quotas = [MAX_REQUESTS_PER_THREAD] * concurrency
    start_gate = threading.Barrier(concurrency + 1)
    per_thread: list[tuple[list[float], int, Counter, list[str], float]] = [None] * concurrency
    clock = time.perf_counter
    deadline_box: list[float] = []

    def work(index: int) -> None:
        driver, quota = drivers[index], quotas[index]
        latencies, errors, samples, ok = [], Counter(), [], 0
        try:
            driver.connect()
        except OSError as exc:
            errors[f"connect: {type(exc).__name__}"] += 1
        start_gate.wait()
        deadline = deadline_box[0]
        try:
            for _ in range(quota):
                if clock() >= deadline:
                    break
                began = clock()
                try:
                    problem = driver.call()
                except (OSError, http.client.HTTPException) as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                    driver.close()  # http.client reconnects on the next request
                elapsed = clock() - began
                if problem is None:
                    ok += 1
                    latencies.append(elapsed)
                else:
                    errors[problem.split(":", 1)[0]] += 1
                    if len(samples) < 3:
                        samples.append(problem)
        finally:
            finished = clock()
            driver.close()
            per_thread[index] = (latencies, ok, errors, samples, finished)

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    cpu_before = cpu_seconds(worker_pid), time.process_time()
    started = clock()
    deadline_box.append(started + seconds if seconds is not None else math.inf)
    start_gate.wait()
    bound = (seconds if seconds is not None else 600.0) + REQUEST_TIMEOUT + 30
    for thread in threads:
        thread.join(timeout=max(0.0, started + bound - clock()))
    if any(thread.is_alive() for thread in threads):
        raise SystemExit(f"{endpoint} at concurrency {concurrency}: client threads hung")
    server_after, client_after = cpu_seconds(worker_pid), time.process_time()
    result = PhaseResult(endpoint, concurrency, max(t[4] for t in per_thread) - started, [], 0)
    for latencies, ok, errors, samples, _ in per_thread:
        result.latencies.extend(latencies)
        result.ok += ok
        result.errors.update(errors)
        result.samples.extend(samples[: max(0, 3 - len(result.samples))])
    for driver in drivers:
        result.rewards.update(driver.rewards)
    if cpu_before[0] is not None and server_after is not None:
        result.server_cpu = server_after - cpu_before[0]
    result.client_cpu = client_after - cpu_before[1]
    return result


# --------------------------------------------------------------------------- ledger


def ledger_counts(db_path: Path) -> dict:
    """Straight from the SQLite file, after the server has stopped."""
    conn = sqlite3.connect(db_path)
    try:
        events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        rewards = conn.execute("SELECT count(*) FROM rewards").fetchone()[0]
        usage = dict(conn.execute("SELECT campaign_id, redemptions FROM campaign_usage"))
        users = conn.execute("SELECT count(*) FROM users").fetchone()[0]
    finally:
        conn.close()
    return {"events": events, "rewards": rewards, "redemptions": usage, "users": users}


# --------------------------------------------------------------------------- report


def machine_note() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"Python {platform.python_version()} ({platform.python_implementation()}), "
            f"SQLite {sqlite3.sqlite_version}, {platform.system()} {platform.machine()}, "
            f"{model}, {os.cpu_count()} CPUs")


def percent(cpu: float | None, seconds: float) -> str:
    return f"{100 * cpu / seconds:.0f}%" if cpu is not None and seconds > 0 else "-"


def print_table(results: Sequence[PhaseResult]) -> None:
    print(f"{'conc':>4}  {'endpoint':<16} {'requests':>8} {'errors':>6} {'ok/s':>8} "
          f"{'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'max ms':>7} {'srv CPU':>7} {'cli CPU':>7}")
    for r in results:
        print(f"{r.concurrency:>4}  {r.endpoint:<16} {r.requests:>8,} {sum(r.errors.values()):>6} "
              f"{r.rate:>8,.0f} {r.percentile(50):>7.2f} {r.percentile(95):>7.2f} "
              f"{r.percentile(99):>7.2f} {r.percentile(100):>7.2f} "
              f"{percent(r.server_cpu, r.seconds):>7} {percent(r.client_cpu, r.seconds):>7}")


def print_ratios(results: Sequence[PhaseResult]) -> None:
    by = {(r.concurrency, r.endpoint): r for r in results}
    print(f"{'conc':>4}  {'events/s':>8} {'/ healthz':>9} {'/ quote':>7}  "
          f"{'events p50':>10} {'/ healthz':>9} {'/ quote':>7}  "
          f"{'srv CPU ms/event':>16} {'/ quote':>7}")
    for conc in sorted({r.concurrency for r in results}):
        ev, hz, qt = by.get((conc, EVENTS)), by.get((conc, HEALTHZ)), by.get((conc, QUOTE))
        if ev is None or hz is None or qt is None:
            continue

        def ratio(a: float, b: float) -> str:
            return f"{a / b:.2f}" if b and not math.isnan(a) and not math.isnan(b) else "-"

        def cpu_ms(r: PhaseResult) -> float:
            return 1000 * r.server_cpu / r.ok if r.server_cpu is not None and r.ok else math.nan

        print(f"{conc:>4}  {ev.rate:>8,.0f} {ratio(ev.rate, hz.rate):>9} {ratio(ev.rate, qt.rate):>7}  "
              f"{ev.percentile(50):>10.2f} {ratio(ev.percentile(50), hz.percentile(50)):>9} "
              f"{ratio(ev.percentile(50), qt.percentile(50)):>7}  "
              f"{cpu_ms(ev):>16.2f} {ratio(cpu_ms(ev), cpu_ms(qt)):>7}")


def print_unloaded(results: Sequence[PhaseResult]) -> None:
    one = {r.endpoint: r for r in results if r.concurrency == 1}
    if all(e in one for e in ENDPOINTS):
        print("Unloaded (concurrency 1) p50 / p99 ms: " + ", ".join(
            f"{e.split()[1]} {one[e].percentile(50):.2f} / {one[e].percentile(99):.2f}"
            for e in ENDPOINTS))


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
    db_path = workdir / "promo.db"
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    env.update(DATABASE_URL=f"sqlite:///{db_path}", SECRET_KEY=SECRET_KEY, PROMO_TIMEZONE=ZONE)
    campaigns = workdir / "campaigns.yaml"
    campaigns.write_text(campaign_yaml(datetime.now(timezone.utc)))
    run_cli(["campaigns", "apply", str(campaigns)], env, workdir)  # creates the schema
    client = json.loads(run_cli(["clients", "create", "bench-http", "--json"], env, workdir))
    tag = f"{int(time.time())}"

    amount = (f"{args.requests:,} requests" if seconds is None else f"{seconds:g} s")
    print(f"HTTP API on SQLite, one process: promo-engine serve --workers 1 (gunicorn gthread, "
          f"{args.threads or 'default'} threads); {amount} per endpoint at each concurrency; "
          f"client threads each on one keep-alive connection to {HOST}")
    print(machine_note())
    if hasattr(os, "getloadavg"):
        print("load average before the run: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))

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

    print()
    print_table(results)
    print()
    print("Committed events/s and median latency as ratios of the same run's baseline "
          "(srv CPU: worker CPU time per request):")
    print_ratios(results)
    print_unloaded(results)

    committed = sum(r.ok for r in results if r.endpoint == EVENTS) + (warmup.ok if warmup else 0)
    ledger = ledger_counts(db_path)
    rewards = Counter()
    for r in results + ([warmup] if warmup else []):
        rewards.update(r.rewards)
    print()
    print(f"Ledger: {ledger['events']:,} events in the database, {committed:,} answered 201 "
          f"(warm-up {warmup.ok if warmup else 0:,} included); {ledger['users']:,} users, "
          f"{ledger['rewards']:,} rewards.")
    per_event = ", ".join(f"{name} {count / committed:.2f}"
                          for name, count in sorted(rewards.items())) if committed else "-"
    print(f"Rewards per committed event: {per_event}")
    print("Campaign redemptions (guarded UPDATEs that succeeded): " + ", ".join(
        f"{k} {v:,}" for k, v in sorted(ledger["redemptions"].items())))

    sys.stdout.flush()
    failed = False
    for r in results + ([warmup] if warmup else []):
        if r.errors:
            failed = True
            print(f"ERRORS: {r.endpoint} at concurrency {r.concurrency}: "
                  + ", ".join(f"{k} x{v}" for k, v in r.errors.most_common()), file=sys.stderr)
            for sample in r.samples:
                print(f"  e.g. {sample}", file=sys.stderr)
    if ledger["events"] != committed:
        failed = True
        print(f"LEDGER MISMATCH: {ledger['events']} events stored, {committed} answered 201",
              file=sys.stderr)
    if not failed:
        print("Every response was checked: all succeeded, and the ledger holds exactly the "
              "events answered 201.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
