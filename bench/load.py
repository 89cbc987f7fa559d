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

Targets (from the issue), checked per N: events/s at least 0.50 of the bare endpoint's
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
import http.client
import itertools
import json
import math
import multiprocessing
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from array import array
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Sequence
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # runnable as `python bench/load.py` from anywhere
    sys.path.insert(0, str(ROOT))

from bench.servers import wait_until_healthy  # noqa: E402
from promo_engine.api.auth import (KEY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER,  # noqa: E402
                                   sign_request)

HOST = "127.0.0.1"  # the load stays on this machine
PG_ADMIN_URL = os.environ.get("PROMO_BENCH_PG_ADMIN_URL",
                              "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("PROMO_BENCH_REDIS_URL", "redis://127.0.0.1:6379/7")
SECRET_KEY = "bench-load-secret-key-0123456789abcdef"
ZONE = "Asia/Shanghai"
EVENTS_PATH = "/v1/events"
BARE_PATH = "/bare/events"  # bench/bare_app.py's endpoint
BARE_APP = Path(__file__).resolve().with_name("bare_app.py")

WORKERS = (1, 2, 4)
SECONDS = 10.0
CONCURRENCY = 16
GENERATORS = 2
LOAD_FRACTION = 0.8
SPREAD_CAMPAIGNS = 200
HOT_MERCHANTS = 200
USERS = 20_000
MAX_RATE = 5000  # requests/s a closed-loop phase is pre-built for; more are built on the fly
SKEW_MARGIN = 240  # s: a pre-signed request must be sent within this (server allows 300)
# `promo-engine serve` keeps idle connections 5 s (gunicorn keepalive): a connection idle
# longer than this is replaced before its next request rather than risk the server's close.
IDLE_RECONNECT = 4.0

START_TIMEOUT = 60.0
STOP_TIMEOUT = 40.0  # gunicorn's graceful timeout is 30 s
REQUEST_TIMEOUT = 60.0
ENV_VARS = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "PROMO_TIMEZONE", "PROMO_CURRENCY",
            "PROMO_POINTS_PER_UNIT", "PROMETHEUS_MULTIPROC_DIR", "PROMO_REDIS_PREFIX",
            "PROMO_API_RATE_LIMIT")
# The API's per-client rate limit is set this high (one client sends all the load, as the
# one wallet backend does): the limiter's cost per request is measured, its cap is not.
RATE_LIMIT = "1000000/second"
PRIME_TIMEOUT = 90.0  # s: Redis counters are built (or settle, after a data loss) before use

TARGET_VS_BARE = 0.50
TARGET_TAIL = 4.0
TARGET_HOT = 0.70


# --------------------------------------------------------------------------- setup


def campaign_yaml(tag: str, scenarios: Sequence[str], spread: int, now: datetime) -> str:
    """Campaigns open from yesterday to a month from now (local time), no windows, no
    conditions, no per-user limits: every payment at their merchants gets exactly one
    discount, and the budgets never run out, so every grant passes the guarded update."""
    local = now.astimezone(ZoneInfo(ZONE)).replace(tzinfo=None, microsecond=0)
    starts = (local - timedelta(days=1)).isoformat()
    ends = (local + timedelta(days=30)).isoformat()
    docs = []

    def doc(campaign_id: str, name: str, merchants: list[str]) -> str:
        return (f"id: {campaign_id}\nname: {name}\ntype: holiday_discount\n"
                f"merchants: [{', '.join(merchants)}]\ntimezone: {ZONE}\n"
                f"starts_at: {starts}\nends_at: {ends}\n"
                f"budget:\n  amount: \"1000000000.00\"\n"
                f"limits:\n  max_redemptions: 100000000\n"
                f"params:\n  percent: 10\n  max_discount: \"20.00\"\n")

    if "spread" in scenarios:
        for i in range(spread):
            docs.append(doc(spread_campaign(tag, i), f"Load spread {i}", [spread_merchant(tag, i)]))
    if "hot" in scenarios:
        docs.append(doc(hot_campaign(tag), "Load hot campaign",
                        [hot_merchant(tag, i) for i in range(HOT_MERCHANTS)]))
    return f"# Written by bench/load.py for run {tag}.\n" + "---\n".join(docs)


# Every id carries the run's tag, so that nothing this run keeps in Redis can meet a key of
# an earlier run (the database is new, Redis is not), and this run's keys can be deleted.
def redis_prefix(tag: str) -> str:
    """PROMO_REDIS_PREFIX of the run: none of its keys meets another run's."""
    return f"{{bench-load-{tag}}}"


def spread_campaign(tag: str, i: int) -> str:
    return f"ld{tag}-spread-{i:03d}"


def hot_campaign(tag: str) -> str:
    return f"ld{tag}-hot"


def spread_merchant(tag: str, i: int) -> str:
    return f"m_{tag}_s{i:03d}"


def hot_merchant(tag: str, i: int) -> str:
    return f"m_{tag}_h{i:03d}"


def cli_command() -> list[str]:
    script = Path(sys.executable).with_name("promo-engine")
    return [str(script)] if script.exists() else [sys.executable, "-m", "promo_engine.cli"]


def start_cli(args: Sequence[str], env: dict, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(list(args), env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish_cli(process: subprocess.Popen, what: str) -> str:
    try:
        out, _ = process.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"{what} failed ({process.returncode}):\n{out}")
    return out


def run_cli(args: Sequence[str], env: dict, cwd: Path, what: str) -> str:
    return finish_cli(start_cli(args, env, cwd), what)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class Database:
    """A PostgreSQL database of this run's own; `drop` removes it (idempotent)."""

    def __init__(self, admin_url: str, tag: str):
        import psycopg
        self.admin_url = admin_url
        self.name = f"promo_load_{tag}"
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
            self.server_version = conn.execute("SHOW server_version").fetchone()[0]
            self.settings = {name: conn.execute(f"SHOW {name}").fetchone()[0]
                             for name in ("synchronous_commit", "fsync", "max_connections")}
        self.dropped = False
        base = admin_url.rsplit("/", 1)[0]
        self.url = base.replace("postgresql://", "postgresql+psycopg://", 1) + "/" + self.name
        self.dsn = base + "/" + self.name

    def drop(self) -> None:
        if self.dropped:
            return
        import psycopg
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self.dropped = True

    def counts(self, tag: str) -> dict:
        import psycopg
        with psycopg.connect(self.dsn, connect_timeout=5) as conn:
            one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
            usage = dict(conn.execute("SELECT campaign_id, redemptions FROM campaign_usage"))
            return {
                "events": one("SELECT count(*) FROM events"),
                "rewards": one("SELECT count(*) FROM rewards"),
                "campaign_rewards": one("SELECT count(*) FROM rewards WHERE campaign_id IS NOT NULL"),
                "bare": one("SELECT count(*) FROM bench_bare_events"),
                "hot_redemptions": usage.get(hot_campaign(tag), 0),
                "redemptions": sum(usage.values()),
            }


class Server:
    """A gunicorn server in its own session (so Ctrl-C reaches us, not it); `stop` always
    ends it and its workers."""

    def __init__(self, name: str, command: list[str], env: dict, workdir: Path):
        self.name = name
        self.port = free_port()
        self.base = (HOST, self.port)
        self.log_path = workdir / f"{name}-{self.port}.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command + ["--host", HOST, "--port", str(self.port)],
                                            env=env, cwd=workdir, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_ready(self, workers: int) -> None:
        """Until /healthz answers and all `workers` worker processes have started."""
        wait_until_healthy(self.process, self.base, timeout=START_TIMEOUT,
                           log_tail=self.log_tail, label=f"{self.name}: ",
                           extra_ready=lambda: len(children_of(self.process.pid)) >= workers)

    def pids(self) -> list[int]:
        return [self.process.pid] + children_of(self.process.pid)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        if self.process.poll() is None:
            try:
                self.process.send_signal(signal.SIGTERM)
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # its own group: workers left behind
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        return self.process.returncode


def children_of(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except (OSError, ValueError):
        return []


# --------------------------------------------------------------------------- CPU (/proc)

CLOCK_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICK
    except (OSError, ValueError, IndexError):
        return 0.0


def pg_backends_cpu(database: str) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend serving `database` (its process title names
    it), by pid: other databases' backends on a shared server are not ours to count."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                title = f.read()
            if not title.startswith(b"postgres:") or f" {database} ".encode() not in title:
                continue
            found[int(entry.name)] = process_cpu(int(entry.name))
        except OSError:
            continue
    return found


def redis_cpu() -> float:
    total = 0.0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/comm") as f:
                    if f.read().strip() == "redis-server":
                        total += process_cpu(int(entry.name))
            except OSError:
                continue
    return total


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot."""
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return float(sum(values[:8]) - idle), float(sum(values[:8]))


@dataclass
class CpuSnapshot:
    server: float
    pg: dict  # pid -> CPU seconds of this run's PostgreSQL backends
    redis: float
    busy: float
    total: float

    @classmethod
    def take(cls, server: Server | None, database: str) -> "CpuSnapshot":
        busy, total = machine_cpu()
        return cls(sum(process_cpu(p) for p in server.pids()) if server else 0.0,
                   pg_backends_cpu(database), redis_cpu(), busy, total)

    def pg_since(self, before: "CpuSnapshot") -> float:
        """Backends that started meanwhile count whole; those that ended are lost (the
        servers' connection pools keep theirs)."""
        return sum(max(0.0, cpu - before.pg.get(pid, 0.0)) for pid, cpu in self.pg.items())


# --------------------------------------------------------------------------- load generator


@dataclass
class Plan:
    """What one generator process does in one phase (sent to it when it is forked)."""
    kind: str  # "events" or "bare"
    scenario: str  # "spread" or "hot" (which merchants; bare gets the same bodies)
    mode: str  # "closed" or "open"
    threads: int
    seconds: float
    host: str
    port: int
    key_id: str
    secret: str
    tag: str
    id_prefix: str  # unique per phase and process
    seed: int
    users: int
    spread: int
    prebuild: int  # closed: requests built per thread before the start
    rate: float = 0.0  # open: this process's share of the arrival rate (per second)
    arrivals: str = "poisson"


def payment_body(event_id: str, user_id: str, merchant_id: str, cents: int,
                 occurred_at: str) -> dict:
    """The payment every benchmark sends: base points and, at a campaign's merchant, one
    discount."""
    return {"event_id": event_id, "type": "payment", "user_id": user_id,
            "occurred_at": occurred_at, "merchant_id": merchant_id,
            "amount": f"{cents // 100}.{cents % 100:02d}", "currency": "CNY",
            "mcc": "5812", "channel": "qr"}


class RequestMaker:
    """Signed payment requests with new event ids; the body is the same for bare."""

    def __init__(self, plan: Plan, salt: int):
        self.plan = plan
        self.path = EVENTS_PATH if plan.kind == "events" else BARE_PATH
        self.rng = random.Random(plan.seed * 1009 + salt)
        self.prefix = f"{plan.id_prefix}-{salt}-"
        self.count = 0
        self.occurred = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.timestamp = str(int(time.time()))
        self.user_prefix = f"u_{plan.tag}_"

    def make(self, merchant_index: int | None = None) -> tuple[bytes, dict, str, str | None]:
        """A new signed payment, at a random merchant of the scenario unless one is given."""
        plan, rng = self.plan, self.rng
        self.count += 1
        event_id = f"{self.prefix}{self.count}"
        if plan.scenario == "hot":
            i = rng.randrange(HOT_MERCHANTS) if merchant_index is None else merchant_index
            merchant, campaign = hot_merchant(plan.tag, i), hot_campaign(plan.tag)
        else:
            i = rng.randrange(plan.spread) if merchant_index is None else merchant_index
            merchant, campaign = spread_merchant(plan.tag, i), spread_campaign(plan.tag, i)
        cents = rng.randint(1000, 50000)
        user_id = f"{self.user_prefix}{rng.randrange(plan.users):05d}"
        body = json.dumps(payment_body(event_id, user_id, merchant, cents, self.occurred)).encode()
        headers = {"Content-Type": "application/json", KEY_HEADER: plan.key_id,
                   TIMESTAMP_HEADER: self.timestamp,
                   SIGNATURE_HEADER: sign_request(plan.secret, self.timestamp, "POST", self.path, body)}
        return body, headers, event_id, campaign if plan.kind == "events" else None


def check_response(status: int, raw: bytes, event_id: str, campaign: str | None) -> str | None:
    """None if the answer is the expected one; else what was wrong (for the report)."""
    if status != 201:
        return f"status {status}: {raw[:300]!r}"
    try:
        body = json.loads(raw)
    except ValueError:
        return f"201 with a body that is not JSON: {raw[:300]!r}"
    if not isinstance(body, dict) or body.get("event_id") != event_id:
        return f"201 for another event: {raw[:300]!r}"
    if campaign is not None and not any(isinstance(r, dict) and r.get("campaign_id") == campaign
                                        for r in body.get("rewards") or ()):
        return f"201 without the reward of {campaign}: {raw[:300]!r}"
    return None


def generator_main(plan: Plan, pipe) -> None:
    """One load-generator process: build, connect, report ready, run, report results."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us; it sees Ctrl-C
    try:
        _generate(plan, pipe)
    except BaseException as exc:  # noqa: BLE001 - anything goes back to the parent
        try:
            pipe.send({"fatal": f"{type(exc).__name__}: {exc}"})
        except OSError:
            pass


def _generate(plan: Plan, pipe) -> None:
    clock, sleep = time.monotonic, time.sleep
    makers = [RequestMaker(plan, i) for i in range(plan.threads)]
    if plan.mode == "closed":
        queues = [[m.make() for _ in range(plan.prebuild)] for m in makers]
        schedule = None
    else:
        rng = random.Random(plan.seed)
        n = max(1, int(round(plan.rate * plan.seconds)))
        if plan.arrivals == "uniform":
            schedule = [i / plan.rate for i in range(n)]
        else:
            schedule, t = [], 0.0
            for _ in range(n):
                t += rng.expovariate(plan.rate)
                schedule.append(t)
        shared = [makers[i % plan.threads].make() for i in range(n)]
        queues = None
    conns = [http.client.HTTPConnection(plan.host, plan.port, timeout=REQUEST_TIMEOUT)
             for _ in range(plan.threads)]
    connect_errors = Counter()
    for conn in conns:
        try:
            conn.connect()
        except OSError as exc:
            connect_errors[f"connect: {type(exc).__name__}"] += 1
    pipe.send({"ready": True})
    message = pipe.recv()
    if "start" not in message:
        return
    start = message["start"]
    deadline = start + plan.seconds
    counter = itertools.count()
    per_thread: list = [None] * plan.threads

    last_used = [clock()] * plan.threads

    def call(index: int, request) -> tuple[str | None, float]:
        conn = conns[index]
        body, headers, event_id, campaign = request
        if clock() - last_used[index] > IDLE_RECONNECT:
            conn.close()  # the server may be closing it (keep-alive): a new one instead
        try:
            conn.request("POST", makers[0].path, body, headers)
            response = conn.getresponse()
            raw = response.read()
            status = response.status
        except (OSError, http.client.HTTPException) as exc:
            conn.close()  # http.client reconnects on the next request
            return f"{type(exc).__name__}: {exc}", clock()
        last_used[index] = done = clock()
        return check_response(status, raw, event_id, campaign), done

    def closed(index: int) -> None:
        queue, maker = queues[index], makers[index]
        lat, fin, errors, samples, late = array("d"), array("d"), Counter(), [], 0
        delay = start - clock()
        if delay > 0:
            sleep(delay)
        i = 0
        while True:
            began = clock()
            if began >= deadline:
                break
            if i < len(queue):
                request = queue[i]
                queue[i] = None  # let it go
            else:
                request = maker.make()
                late += 1
            i += 1
            problem, done = call(index, request)
            if problem is None:
                lat.append(done - began)
                fin.append(done - start)
            else:
                errors[problem.split(":", 1)[0]] += 1
                if len(samples) < 3:
                    samples.append(problem)
        per_thread[index] = (lat, fin, array("d"), errors, samples, late)

    def open_loop(index: int) -> None:
        lat, fin, lag, errors, samples = array("d"), array("d"), array("d"), Counter(), []
        while True:
            i = next(counter)
            if i >= len(shared):
                break
            due = start + schedule[i]
            delay = due - clock()
            if delay > 0:
                sleep(delay)
            sent = clock()
            request = shared[i]
            shared[i] = None
            problem, done = call(index, request)
            if problem is None:
                lat.append(done - due)
                fin.append(done - start)
                lag.append(sent - due)
            else:
                errors[problem.split(":", 1)[0]] += 1
                if len(samples) < 3:
                    samples.append(problem)
        per_thread[index] = (lat, fin, lag, errors, samples, 0)

    target = closed if plan.mode == "closed" else open_loop
    threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(plan.threads)]
    cpu_before = time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(0.0, deadline + REQUEST_TIMEOUT + 30 - clock()))
    cpu = time.process_time() - cpu_before
    for conn in conns:
        conn.close()
    result = {"lat": array("d"), "fin": array("d"), "lag": array("d"), "errors": connect_errors,
              "samples": [], "late_built": 0, "cpu": cpu,
              "hung": sum(t.is_alive() for t in threads)}
    for part in per_thread:
        if part is None:
            continue
        lat, fin, lag, errors, samples, late = part
        result["lat"].extend(lat)
        result["fin"].extend(fin)
        result["lag"].extend(lag)
        result["errors"].update(errors)
        result["samples"].extend(samples[: max(0, 3 - len(result["samples"]))])
        result["late_built"] += late
    for key in ("lat", "fin", "lag"):
        result[key] = result[key].tobytes()
    pipe.send(result)


# --------------------------------------------------------------------------- phases


@dataclass
class Phase:
    workers: int
    kind: str  # "events" | "bare"
    scenario: str
    load: str  # "unloaded" | "peak" | "paced" | "warm-up"
    connections: int
    seconds: float
    target_rate: float = 0.0
    latencies: list[float] = field(default_factory=list)  # s, sorted
    finishes: list[float] = field(default_factory=list)  # s from the start
    lags: list[float] = field(default_factory=list)  # open loop: send - scheduled, s
    errors: Counter = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)
    late_built: int = 0
    generator_cpu: float = 0.0
    cpu: dict = field(default_factory=dict)  # server / pg / redis seconds, busy share
    wall: float = 0.0

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def requests(self) -> int:
        return self.ok + sum(self.errors.values())

    @property
    def ramp(self) -> float:
        """Closed loop: completions in the first moments (connections filling) not counted."""
        return min(1.0, 0.1 * self.seconds) if self.load == "peak" else 0.0

    @property
    def rate(self) -> float:
        """Successful requests per second: for closed loops, completions inside
        [start + ramp, start + seconds]; for open loops, all of them over the schedule."""
        if self.load == "paced":
            span = max(self.finishes[-1] if self.finishes else 0.0, self.seconds)
            return self.ok / span if span > 0 else 0.0
        window = self.seconds - self.ramp
        inside = sum(1 for f in self.finishes if self.ramp <= f <= self.seconds)
        return inside / window if window > 0 else 0.0

    def pct(self, p: float, values: list[float] | None = None) -> float:
        """Nearest-rank percentile in milliseconds."""
        values = self.latencies if values is None else values
        if not values:
            return math.nan
        return 1000 * values[max(0, math.ceil(p / 100 * len(values)) - 1)]

    def cpu_ms(self, key: str) -> float:
        value = self.cpu.get(key)
        return 1000 * value / self.ok if value is not None and self.ok else math.nan


@dataclass
class Primed:
    began: float | None = None
    ready: set = field(default_factory=set)
    waited: float = 0.0
    ok: int = 0
    hot: int = 0
    errors: Counter = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)


def prime(server: Server, runner: "Runner", scenarios: Sequence[str], workers: int,
          result: Primed, *, wait: bool) -> None:
    """Events one at a time, not timed: with `wait`, one for every campaign not primed yet
    in this run (and one per scenario at least), each sent again until it is answered 201,
    following Retry-After; without, one per scenario, whatever the answer.

    A server builds a campaign's Redis counter from the ledger when an event first needs it
    (503 to the events that need one meanwhile), after a settle period if its Redis lost
    its data. That is start-up, waited out here rather than measured. Any answer
    other than 201 or 503 is an error."""
    args = runner.args
    if result.began is None:
        result.began = time.monotonic()
    targets = []
    for scenario in scenarios:
        campaigns = range(args.campaigns) if scenario == "spread" else range(1)
        todo = [i for i in campaigns if (scenario, i) not in runner.primed]
        if not wait:
            todo = todo[:1] or [0]
        elif scenario not in result.ready and not todo:
            todo = [0]
        targets += [(scenario, i) for i in todo]
    makers = {}
    conn = http.client.HTTPConnection(*server.base, timeout=REQUEST_TIMEOUT)
    try:
        for scenario, index in targets:
            if scenario not in makers:
                runner.phase_no += 1
                makers[scenario] = RequestMaker(Plan(
                    kind="events", scenario=scenario, mode="closed", threads=1, seconds=0.0,
                    host=HOST, port=server.port, key_id=runner.client["key_id"],
                    secret=runner.client["secret"], tag=runner.tag,
                    id_prefix=f"{runner.tag}-{runner.phase_no}-p", seed=args.seed + runner.phase_no,
                    users=args.users, spread=args.campaigns, prebuild=0), 0)
            while True:
                body, headers, event_id, campaign = makers[scenario].make(index)
                retry_after = None
                try:
                    conn.request("POST", EVENTS_PATH, body, headers)
                    response = conn.getresponse()
                    raw, status = response.read(), response.status
                    retry_after = response.getheader("Retry-After")
                    problem = check_response(status, raw, event_id, campaign)
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()
                    status, problem = 0, f"{type(exc).__name__}: {exc}"
                if problem is None:
                    result.ok += 1
                    result.hot += scenario == "hot"
                    result.ready.add(scenario)
                    runner.primed.add((scenario, index))
                    break
                result.errors[problem.split(":", 1)[0]] += 1
                if len(result.samples) < 1:
                    result.samples.append(problem)
                if status == 503 and not wait:
                    break
                if status != 503 or time.monotonic() - result.began > PRIME_TIMEOUT:
                    raise SystemExit(f"N={workers}: the events server did not accept events: "
                                     f"{problem}\n{server.log_tail()}")
                try:
                    pause = float(retry_after) if retry_after else 0.5
                except ValueError:
                    pause = 0.5
                time.sleep(min(max(pause, 0.05), 0.5))
    finally:
        conn.close()
    result.waited = time.monotonic() - result.began


class Profiler:
    """py-spy on the one events worker during a peak phase: where its CPU goes, per event.

    `py-spy record --gil` samples the thread holding the interpreter lock; the collapsed
    stacks are kept in a file. The samples give the shares; the worker's CPU time per
    event measured in the same phase (from /proc) turns them into milliseconds."""

    def __init__(self, py_spy: str, output: Path, rate: int = 200):
        self.py_spy, self.output, self.rate = py_spy, output, rate
        self.process: subprocess.Popen | None = None
        self.worker: int | None = None
        self.cpu_before = 0.0

    def start(self, server: Server, seconds: float) -> None:
        workers = children_of(server.process.pid)
        if len(workers) != 1:
            raise SystemExit("--profile needs a single worker process (N=1)")
        self.worker = workers[0]
        self.process = subprocess.Popen(
            [self.py_spy, "record", "--pid", str(self.worker), "--rate", str(self.rate), "--gil",
             "--format", "raw", "--duration", str(max(1, int(seconds))),
             "--output", str(self.output)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)  # let it attach
        self.cpu_before = process_cpu(self.worker)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def finish(self, phase: "Phase") -> None:
        cpu = process_cpu(self.worker) - self.cpu_before
        try:
            _, err = self.process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.kill()
            err = "timed out"
        if self.process.returncode != 0 or not self.output.exists():
            print(f"py-spy failed ({self.process.returncode}): {err.strip()[-500:]}", file=sys.stderr)
            return
        print_profile(self.output, cpu / phase.ok if phase.ok else math.nan, phase.ok)


APP_ROOT = "Flask.wsgi_app"


def print_profile(path: Path, cpu_per_event: float, events: int, threshold: float = 0.05) -> None:
    """The app's call tree (promo_engine's own functions, inclusive ms per event, with the
    libraries each spends in directly), then own time by library and the top functions."""
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append(([_frame(f) for f in stack.split(";") if f], int(count)))
    total = sum(n for _, n in stacks)
    if not total or not events or math.isnan(cpu_per_event):
        print("profile: no samples")
        return
    ms = 1000 * cpu_per_event / total  # ms per event of one sample
    tree, below, libraries, functions, app = Counter(), {}, Counter(), Counter(), 0
    for frames, n in stacks:
        top = next((i for i, (_, fn) in enumerate(frames) if fn == APP_ROOT), None)
        leaf_file, leaf_fn = frames[-1] if frames else ("?", "?")
        libraries[_library(leaf_file)] += n
        functions[f"{leaf_file}:{leaf_fn}"] += n
        if top is None:
            continue
        app += n
        node: tuple = ()
        for file, fn in frames[top:]:
            if fn == APP_ROOT or _library(file) == "promo_engine":
                node += (f"{file}:{fn}",)
                tree[node] += n
        below.setdefault(node, Counter())[_library(leaf_file)] += n
    print(f"\nProfile of the events worker during this peak phase (py-spy --gil; {total:,} "
          f"samples; scaled to the worker's CPU time, {1000 * cpu_per_event:.2f} ms per event, "
          f"{events:,} events; stacks in {path}):")
    print(f"  in the app (below {APP_ROOT}) {app * ms:.2f} ms; outside it (gunicorn, "
          f"HTTP parsing, threads) {(total - app) * ms:.2f} ms")

    def show(prefix: tuple, depth: int) -> None:
        children = sorted(((k, v) for k, v in tree.items()
                           if len(k) == len(prefix) + 1 and k[:len(prefix)] == prefix),
                          key=lambda kv: -kv[1])
        for key, n in children:
            if n * ms < threshold:
                continue
            direct = ", ".join(f"{lib} {c * ms:.2f}" for lib, c in below.get(key, Counter()).most_common(4)
                               if c * ms >= threshold / 2)
            print(f"  {'  ' * depth}{n * ms:6.2f} ms  {key[-1]}" + (f"   [directly in: {direct}]" if direct else ""))
            show(key, depth + 1)

    show((), 0)
    print("  own time by library (whole worker):")
    for lib, n in libraries.most_common(14):
        print(f"    {n * ms:6.2f} ms  {100 * n / total:5.1f}%  {lib}")
    print("  top functions by own time:")
    for name, n in functions.most_common(15):
        print(f"    {n * ms:6.3f} ms  {name}")


def _frame(frame: str) -> tuple[str, str]:
    """'function (path/to/file.py:123)' -> ('path/to/file.py' shortened, 'function')."""
    function, _, where = frame.partition(" (")
    file = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/python3.11/", "/python3.12/", "/python3.13/", str(ROOT) + "/"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return file, function.strip()


def _library(file: str) -> str:
    """A file's package for the summaries: promo_engine, sqlalchemy/orm, psycopg, ..."""
    parts = file.split("/")
    if parts[0] in ("promo_engine", "merchant_portal"):
        return "promo_engine"
    if parts[0] == "sqlalchemy" and len(parts) > 2:
        return "sqlalchemy/" + parts[1]
    if len(parts) == 1:
        return "python: " + file
    return parts[0]


class Runner:
    def __init__(self, args, client: dict, tag: str, database: str):
        self.args, self.client, self.tag, self.database = args, client, tag, database
        self.primed: set[tuple[str, int]] = set()  # (scenario, campaign) answered 201
        self.phase_no = 0
        self.live: list = []  # generator processes of the running phase
        self.context = multiprocessing.get_context("fork")

    def run(self, server: Server, workers: int, kind: str, scenario: str, load: str, *,
            connections: int, seconds: float, rate: float = 0.0, profiler=None) -> Phase:
        args = self.args
        self.phase_no += 1
        procs = min(args.generators, connections)
        share = [connections // procs + (i < connections % procs) for i in range(procs)]
        plans = []
        for i in range(procs):
            prebuild = 0
            if load != "paced":
                prebuild = int(args.max_rate * seconds / connections * 1.1) + 16 \
                    if connections > 1 else int(min(args.max_rate, 2000) * seconds) + 16
            plans.append(Plan(
                kind=kind, scenario=scenario, mode="open" if load == "paced" else "closed",
                threads=share[i], seconds=seconds, host=HOST, port=server.port,
                key_id=self.client["key_id"], secret=self.client["secret"], tag=self.tag,
                id_prefix=f"{self.tag}-{self.phase_no}-{i}", seed=args.seed * 7919 + self.phase_no * 31 + i,
                users=args.users, spread=args.campaigns, prebuild=prebuild,
                rate=rate * share[i] / connections, arrivals=args.arrivals))
        pipes = []
        try:
            for plan in plans:
                parent_end, child_end = self.context.Pipe()
                process = self.context.Process(target=generator_main, args=(plan, child_end),
                                               daemon=True)
                process.start()
                child_end.close()
                self.live.append(process)
                pipes.append(parent_end)
            for pipe in pipes:
                if not pipe.poll(180):
                    raise SystemExit("a load generator did not get ready in 180 s")
                message = pipe.recv()
                if "fatal" in message:
                    raise SystemExit(f"load generator failed: {message['fatal']}")
            if profiler is not None:
                profiler.start(server, seconds)
            before = CpuSnapshot.take(server, self.database)
            start = time.monotonic() + 0.05
            for pipe in pipes:
                pipe.send({"start": start})
            results = []
            for pipe in pipes:
                if not pipe.poll(max(1.0, start + seconds + REQUEST_TIMEOUT + 60 - time.monotonic())):
                    raise SystemExit("a load generator hung")
                message = pipe.recv()
                if "fatal" in message:
                    raise SystemExit(f"load generator failed: {message['fatal']}")
                results.append(message)
            after = CpuSnapshot.take(server, self.database)
            wall = time.monotonic() - start
        except BaseException:
            self.stop_generators()
            if profiler is not None:
                profiler.kill()
            raise
        finally:
            for process in self.live:
                process.join(timeout=5)
                if process.is_alive():
                    process.kill()
                    process.join(timeout=5)
            self.live.clear()
            for pipe in pipes:
                pipe.close()
        phase = Phase(workers, kind, scenario, load, connections, seconds, target_rate=rate,
                      wall=wall)
        for result in results:
            for key, target in (("lat", phase.latencies), ("fin", phase.finishes),
                                ("lag", phase.lags)):
                values = array("d")
                values.frombytes(result[key])
                target.extend(values)
            phase.errors.update(result["errors"])
            phase.samples.extend(result["samples"][: max(0, 3 - len(phase.samples))])
            phase.late_built += result["late_built"]
            phase.generator_cpu += result["cpu"]
            if result["hung"]:
                phase.errors["client thread hung"] += result["hung"]
        phase.latencies.sort()
        phase.finishes.sort()
        phase.lags.sort()
        span = after.total - before.total
        phase.cpu = {"server": after.server - before.server, "pg": after.pg_since(before),
                     "redis": after.redis - before.redis, "generator": phase.generator_cpu,
                     "busy": (after.busy - before.busy) / span if span > 0 else math.nan}
        # What the rest of the machine used meanwhile (other jobs on a shared machine).
        ours = sum(phase.cpu[k] for k in ("server", "pg", "redis", "generator"))
        phase.cpu["other"] = (max(0.0, (after.busy - before.busy) / CLOCK_TICK - ours) * CLOCK_TICK / span
                              if span > 0 else math.nan)
        return phase

    def stop_generators(self) -> None:
        for process in self.live:
            if process.is_alive():
                process.kill()
        for process in self.live:
            process.join(timeout=5)
        self.live.clear()


# --------------------------------------------------------------------------- report


def machine_note(db: Database, redis_version: str) -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"Python {platform.python_version()} ({platform.python_implementation()}), "
            f"PostgreSQL {db.server_version} (synchronous_commit {db.settings['synchronous_commit']}, "
            f"fsync {db.settings['fsync']}), Redis {redis_version}, {platform.system()} "
            f"{platform.machine()}, {model}, {os.cpu_count()} CPUs")


def fmt(value: float, spec: str = ".2f") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def print_phases(phases: Sequence[Phase]) -> None:
    print(f"{'N':>2} {'server':<6} {'scenario':<8} {'load':<15} {'conns':>5} {'requests':>8} "
          f"{'errors':>6} {'ok/s':>8} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'max ms':>7} "
          f"{'srv ms/req':>10} {'pg ms/req':>9} {'gen ms/req':>10} {'CPU busy':>8} {'other':>5}")
    for p in phases:
        load = p.load if p.load != "paced" else f"paced {p.target_rate:,.0f}/s"
        print(f"{p.workers:>2} {p.kind:<6} {p.scenario if p.kind == 'events' else '-':<8} "
              f"{load:<15} {p.connections:>5} {p.requests:>8,} {sum(p.errors.values()):>6} "
              f"{p.rate:>8,.0f} {fmt(p.pct(50)):>7} {fmt(p.pct(90)):>7} {fmt(p.pct(99)):>7} "
              f"{fmt(p.pct(100)):>7} {fmt(p.cpu_ms('server')):>10} {fmt(p.cpu_ms('pg')):>9} "
              f"{fmt(p.cpu_ms('generator')):>10} {fmt(100 * p.cpu.get('busy', math.nan), '.0f'):>7}% "
              f"{fmt(100 * p.cpu.get('other', math.nan), '.0f'):>4}%")


def find(phases, workers, kind, load, scenario=None) -> Phase | None:
    for p in phases:
        if p.workers == workers and p.kind == kind and p.load == load and \
                (scenario is None or p.scenario == scenario):
            return p
    return None


def ratio(a: float | None, b: float | None) -> float:
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return math.nan
    return a / b


def verdict(value: float, limit: float, at_least: bool) -> str:
    if math.isnan(value):
        return "n/a"
    return "met" if (value >= limit if at_least else value <= limit) else "MISSED"


def summarize(phases: Sequence[Phase], workers: Sequence[int], scenarios: Sequence[str],
              load: float = LOAD_FRACTION) -> list[str]:
    """Prints the summary and the targets; returns the targets missed."""
    main_scenario = scenarios[0]
    print(f"{'N':>2} {'bare req/s':>10} {'events/s':>9} {'/ bare':>7} "
          + (f"{'hot ev/s':>9} {'hot/spread':>10} " if len(scenarios) > 1 else "")
          + f"{'ev p50 unl':>10} {'ev p99 unl':>10} {'ev p50@80%':>10} {'ev p99@80%':>10} "
          f"{'p99@80/p50unl':>13}   {'bare p50 unl':>12} {'bare p99@80%':>12} {'bare ratio':>10}")
    missed: list[str] = []
    rows = []
    for n in workers:
        bare_peak = find(phases, n, "bare", "peak")
        ev_peak = find(phases, n, "events", "peak", main_scenario)
        hot_peak = find(phases, n, "events", "peak", "hot") if len(scenarios) > 1 else None
        ev_unl = find(phases, n, "events", "unloaded", main_scenario)
        ev_paced = find(phases, n, "events", "paced", main_scenario)
        bare_unl = find(phases, n, "bare", "unloaded")
        bare_paced = find(phases, n, "bare", "paced")
        vs_bare = ratio(ev_peak.rate if ev_peak else None, bare_peak.rate if bare_peak else None)
        hot = ratio(hot_peak.rate if hot_peak else None,
                    find(phases, n, "events", "peak", "spread").rate
                    if hot_peak and find(phases, n, "events", "peak", "spread") else None)
        tail = ratio(ev_paced.pct(99) if ev_paced else None, ev_unl.pct(50) if ev_unl else None)
        bare_tail = ratio(bare_paced.pct(99) if bare_paced else None,
                          bare_unl.pct(50) if bare_unl else None)
        rows.append((n, bare_peak, ev_peak, hot_peak, vs_bare, hot, tail))
        print(f"{n:>2} {fmt(bare_peak.rate if bare_peak else math.nan, ',.0f'):>10} "
              f"{fmt(ev_peak.rate if ev_peak else math.nan, ',.0f'):>9} {fmt(vs_bare):>7} "
              + (f"{fmt(hot_peak.rate if hot_peak else math.nan, ',.0f'):>9} {fmt(hot):>10} "
                 if len(scenarios) > 1 else "")
              + f"{fmt(ev_unl.pct(50) if ev_unl else math.nan):>10} "
              f"{fmt(ev_unl.pct(99) if ev_unl else math.nan):>10} "
              f"{fmt(ev_paced.pct(50) if ev_paced else math.nan):>10} "
              f"{fmt(ev_paced.pct(99) if ev_paced else math.nan):>10} {fmt(tail, '.1f'):>12}x"
              f"   {fmt(bare_unl.pct(50) if bare_unl else math.nan):>12} "
              f"{fmt(bare_paced.pct(99) if bare_paced else math.nan):>12} {fmt(bare_tail, '.1f'):>9}x")
    first = rows[0]
    if len(rows) > 1:
        print("Throughput from 1 worker process to N (x the first row):")
        for n, bare_peak, ev_peak, hot_peak, *_ in rows:
            parts = [f"bare {fmt(ratio(bare_peak.rate if bare_peak else None, first[1].rate if first[1] else None))}x",
                     f"events ({main_scenario}) {fmt(ratio(ev_peak.rate if ev_peak else None, first[2].rate if first[2] else None))}x"]
            if hot_peak is not None and first[3] is not None:
                parts.append(f"hot {fmt(ratio(hot_peak.rate, first[3].rate))}x")
            print(f"  N={n}: " + ", ".join(parts))
    # CPU time per request hardly depends on what else runs on the machine; throughput does.
    print("CPU per request at peak, server processes + PostgreSQL (ms): the cost ratio says what "
          "events/s / bare req/s would be where these two are the bottleneck:")
    for n, bare_peak, ev_peak, hot_peak, *_ in rows:
        def cost(p: Phase | None) -> float:
            return p.cpu_ms("server") + p.cpu_ms("pg") if p is not None else math.nan
        parts = [f"bare {fmt(cost(bare_peak))}", f"events ({main_scenario}) {fmt(cost(ev_peak))}"]
        if hot_peak is not None:
            parts.append(f"hot {fmt(cost(hot_peak))}")
        print(f"  N={n}: " + ", ".join(parts) + f"; bare / events {fmt(ratio(cost(bare_peak), cost(ev_peak)))}")
    print()
    print("Targets:")
    for n, _, _, _, vs_bare, hot, tail in rows:
        checks = [(f"events/s >= {TARGET_VS_BARE:.2f} x bare req/s", vs_bare, TARGET_VS_BARE, True, ".2f"),
                  (f"p99 at {100 * load:.0f}% of peak <= {TARGET_TAIL:g} x unloaded p50", tail,
                   TARGET_TAIL, False, ".1f")]
        if len(scenarios) > 1:
            checks.append((f"hot campaign >= {TARGET_HOT:.2f} x spread", hot, TARGET_HOT, True, ".2f"))
        for label, value, limit, at_least, spec in checks:
            state = verdict(value, limit, at_least)
            if state == "MISSED":
                missed.append(f"N={n}: {label}")
            print(f"  N={n}  {label:<46} {fmt(value, spec):>6}  {state}")
    return missed


# --------------------------------------------------------------------------- main


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

    stop_requested = []

    def on_sigterm(signum, _frame):  # cleaned up like Ctrl-C
        stop_requested.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        with tempfile.TemporaryDirectory(prefix="promo-bench-load-") as tmp:
            return run(args, Path(tmp))
    except KeyboardInterrupt:
        print("\ninterrupted: everything started was stopped and the database dropped",
              file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args, workdir: Path) -> int:
    run_began = time.monotonic()
    tag = uuid.uuid4().hex[:8]
    scenarios = args.scenario
    redis_client, redis_version, db = connect_services(args.pg_admin_url, args.redis_url, tag)
    servers: list[Server] = []
    runner: Runner | None = None
    try:
        env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
        env.update(DATABASE_URL=db.url, REDIS_URL=args.redis_url, SECRET_KEY=SECRET_KEY,
                   PROMO_TIMEZONE=ZONE, PROMO_REDIS_PREFIX=redis_prefix(tag))
        if args.rate_limit != "default":
            env["PROMO_API_RATE_LIMIT"] = args.rate_limit
        run_cli(cli_command() + ["db", "upgrade"], env, workdir, "promo-engine db upgrade")
        campaigns = workdir / "campaigns.yaml"
        campaigns.write_text(campaign_yaml(tag, scenarios, args.campaigns, datetime.now(timezone.utc)))
        threads = ["--threads", str(args.threads)] if args.threads else []

        def start_servers(n: int) -> tuple[Server, Server]:
            pair = (Server("events", cli_command() + ["serve", "--workers", str(n), "--no-scheduler"]
                           + threads, env, workdir),
                    Server("bare", [sys.executable, str(BARE_APP), "serve", "--workers", str(n)]
                           + threads, env, workdir))
            servers.extend(pair)
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
        print(f"Load benchmark: POST /v1/events on `promo-engine serve --workers N --no-scheduler` "
              f"vs the floor (bench/bare_app.py: parse JSON, one INSERT committed) on the same "
              f"gunicorn, both on PostgreSQL; REDIS_URL {args.redis_url}")
        print(machine_note(db, redis_version))
        if hasattr(os, "getloadavg"):
            print("load average before the run: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
        parts = []
        if "spread" in scenarios:
            parts.append(f"spread: {args.campaigns} campaigns, one per merchant, events spread over them")
        if "hot" in scenarios:
            parts.append(f"hot: 1 campaign over {HOT_MERCHANTS} merchants, every event hits it")
        print(f"Scenarios: {'; '.join(parts)}. {args.users:,} users; every event a new payment "
              f"(base points + one 10% discount).")
        print(f"Phases of {seconds:g} s: unloaded = 1 connection, closed loop; peak = "
              f"{args.concurrency} connections, closed loop, over {min(args.generators, args.concurrency)} "
              f"generator processes; paced = open loop, {args.arrivals} arrivals at "
              f"{args.load:g} x the peak, {args.paced_connections} connections, latency from the "
              f"scheduled time. Workers: {', '.join(map(str, args.workers))}.")
        print()
        sys.stdout.flush()

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
                if result.errors:
                    print(f"  errors in {kind} {scenario} {load} (N={n}): "
                          + ", ".join(f"{k} x{v}" for k, v in result.errors.most_common()),
                          file=sys.stderr)
                    for sample in result.samples:
                        print(f"    e.g. {sample}", file=sys.stderr)
                print(f"  {time.monotonic() - run_began:5.1f}s N={n} {kind:<6} "
                      f"{scenario if kind == 'events' else '':<6} {load:<9} "
                      f"{result.rate:>8,.0f}/s  p50 {fmt(result.pct(50))} ms  p99 {fmt(result.pct(99))} ms"
                      f"{'  errors ' + str(sum(result.errors.values())) if result.errors else ''}",
                      flush=True)
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
            before = (", ".join(f"{k} x{v}" for k, v in primed.errors.most_common())
                      + (f", e.g. {primed.samples[0]}" if primed.samples else ""))
            print(f"  {time.monotonic() - run_began:5.1f}s N={n} events server: "
                  + (f"answered {before} before it answered 201 for each campaign (start-up: "
                     f"not measured)" if primed.errors else "201 for each campaign at once"),
                  flush=True)
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

    print()
    print_phases(phases)
    print()
    print("Against the bare endpoint of the same run (peak = closed loop; unl = unloaded, "
          f"1 connection; @80% = paced at {100 * args.load:.0f}% of the peak; latencies in ms):")
    missed = summarize(phases, args.workers, scenarios, args.load)

    all_phases = phases + warmups
    committed = sum(p.ok for p in all_phases if p.kind == "events") + sum(p.ok for p in primes)
    bare_committed = sum(p.ok for p in all_phases if p.kind == "bare")
    hot_committed = sum(p.ok for p in all_phases if p.kind == "events" and p.scenario == "hot") \
        + sum(p.hot for p in primes)
    print()
    print(f"Ledger: {counts['events']:,} events stored, {committed:,} answered 201 (warm-ups "
          f"and the events sent until the server was ready included); {counts['rewards']:,} "
          f"rewards ({counts['campaign_rewards']:,} from campaigns). Bare: {counts['bare']:,} "
          f"rows, {bare_committed:,} answered 201.")
    print(f"campaign_usage rows: {counts['redemptions']:,} redemptions in all, "
          f"{counts['hot_redemptions']:,} for the hot campaign ({hot_committed:,} hot events); "
          f"where budgets are counted in Redis these rows are rebuilt by the scheduler's "
          f"reconciliation, which a --no-scheduler server does not run.")
    print(f"Database {db.name} {'kept' if args.keep_db else 'dropped'}; {deleted} Redis keys of "
          f"this run deleted.")
    late = sum(p.late_built for p in all_phases)
    if late:
        print(f"note: {late:,} requests were built during a phase (more than --max-rate "
              f"{args.max_rate}/s were pre-built); raise --max-rate for a leaner generator")
    slow = [p for p in phases if p.load == "paced" and p.lags and p.pct(99, p.lags) > 5]
    for p in slow:
        print(f"note: N={p.workers} {p.kind} paced: p99 of send - scheduled time is "
              f"{p.pct(99, p.lags):.1f} ms (all {p.connections} connections busy, or the "
              f"generator short of CPU); latencies include it")

    disturbed = [p for p in phases if p.cpu.get("other", 0) > 0.10]
    if disturbed:
        worst = max(disturbed, key=lambda p: p.cpu["other"])
        print(f"WARNING: other processes used more than 10% of the machine's CPU in "
              f"{len(disturbed)} of {len(phases)} phases (up to {100 * worst.cpu['other']:.0f}%, "
              f"N={worst.workers} {worst.kind} {worst.load}): those figures are disturbed; "
              f"run again on a quiet machine")
    failed = False
    sys.stdout.flush()
    for p in all_phases:
        if p.errors:
            failed = True
            print(f"ERRORS: N={p.workers} {p.kind} {p.scenario} {p.load}: "
                  + ", ".join(f"{k} x{v}" for k, v in p.errors.most_common()), file=sys.stderr)
            for sample in p.samples:
                print(f"  e.g. {sample}", file=sys.stderr)
    if counts["events"] != committed or counts["bare"] != bare_committed:
        failed = True
        print(f"LEDGER MISMATCH: {counts['events']} events stored for {committed} answered 201; "
              f"{counts['bare']} bare rows for {bare_committed}", file=sys.stderr)
    if not failed:
        print("Every response was checked: all succeeded (201, the event echoed, the campaign's "
              "reward granted), and the database holds exactly the events answered 201.")
    if missed:
        print(f"targets missed: {len(missed)} ({'; '.join(missed)})")
    else:
        print("targets: all met")
    print(f"(the run took {time.monotonic() - run_began:.0f} s)")
    return 1 if failed or (args.check and missed) else 0


def connect_services(pg_admin_url: str, redis_url: str, tag: str):
    """(a Redis client, Redis's version, the run's new Database); SystemExit, saying which,
    when PostgreSQL or Redis does not answer."""
    import redis
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=3, socket_timeout=10)
    try:
        version = client.info("server")["redis_version"]
    except redis.RedisError as exc:
        raise SystemExit(f"Redis at {redis_url} is not reachable: {exc}")
    try:
        database = Database(pg_admin_url, tag)
    except Exception as exc:  # psycopg.OperationalError and friends
        raise SystemExit(f"PostgreSQL at {pg_admin_url} is not reachable: {exc}")
    return client, version, database


def cleanup_redis(client, tag: str) -> int:
    """Delete the keys this run made (every id it used carries its tag)."""
    try:
        # The run's PROMO_REDIS_PREFIX, and every id it used, carry the tag.
        keys = list(set(client.scan_iter(match=f"*{tag}*", count=1000)))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start:start + 500])
        return len(keys)
    except Exception as exc:  # noqa: BLE001 - cleanup must not hide the results
        print(f"warning: could not clean Redis: {exc}", file=sys.stderr)
        return 0


if __name__ == "__main__":
    sys.exit(main())
