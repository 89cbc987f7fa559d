"""Real processes for the production tests: `promo-engine serve` (gunicorn) and the CLI as
operators run them, private redis-server and PostgreSQL instances a test may stop and start
under load, and readers of what the ledger and Redis hold afterwards.

Everything here is started in a session of its own and has a `close()` that kills what is
left (by pid, never by name); `Processes` is an ExitStack that closes them all, in reverse,
even when the test fails.
"""
from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

CLI = str(Path(sys.executable).with_name("promo-engine"))
SECRET_KEY = "test-secret-key-0123456789"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
START_TIMEOUT = 40
# The server's own settings come only from what a test passes, never from this shell.
_SERVER_ENV = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "PROMETHEUS_MULTIPROC_DIR")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition, timeout: float, what: str, interval: float = 0.05):
    """condition()'s first truthy value; AssertionError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def service_env(database_url: str, *, redis_url: str | None = None,
                redis_prefix: str | None = None, **settings: str) -> dict:
    """The environment of a server or CLI command: this one without any promo-engine
    setting, then the given ones (`PROMO_...=value` keyword arguments). The API's rate limit
    is off unless given: these tests are the load."""
    env = {k: v for k, v in os.environ.items()
           if k not in _SERVER_ENV and not k.startswith("PROMO_")}
    env.update(DATABASE_URL=database_url, SECRET_KEY=SECRET_KEY, PROMO_LOAD_ENTRY_POINTS="0",
               PROMO_API_RATE_LIMIT="none")
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    if redis_prefix is not None:
        env["PROMO_REDIS_PREFIX"] = redis_prefix
    env.update({k: str(v) for k, v in settings.items()})
    return env


def run_cli(env: dict, *args: str, cwd: Path, timeout: float = 60) -> str:
    """Runs `promo-engine ARGS...`; its stdout, or AssertionError with its whole output."""
    return run_cli_together(env, [list(args)], cwd=cwd, timeout=timeout)[0]


def run_cli_together(env: dict, commands: list[list[str]], *, cwd: Path,
                     timeout: float = 60) -> list[str]:
    """Runs several `promo-engine` commands at once (each start-up costs seconds on a busy
    machine); their stdouts, or AssertionError with the output of one that failed."""
    started = [subprocess.Popen([CLI, *args], env=env, cwd=cwd, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for args in commands]
    outputs, failures = [], []
    for args, process in zip(commands, started):
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
        if process.returncode != 0:
            failures.append(f"promo-engine {' '.join(args)} exited with {process.returncode}:"
                            f"\n{stdout}\n{stderr}")
        outputs.append(stdout)
    if failures:
        raise AssertionError("\n".join(failures))
    return outputs


def deploy(env: dict, cwd: Path, yaml_text: str, *, clients: int = 2) -> list[tuple[str, str]]:
    """As an operator sets up: `db upgrade`, then `campaigns apply` and one API client per
    wallet host (`clients create NAME --json`); their (key id, secret)."""
    run_cli(env, "db", "upgrade", cwd=cwd)
    path = cwd / "campaigns.yaml"
    path.write_text(yaml_text)
    outputs = run_cli_together(
        env, [["campaigns", "apply", str(path)],
              *(["clients", "create", f"wallet-host-{n}", "--json"] for n in range(clients))],
        cwd=cwd)
    assert "created" in outputs[0], outputs[0]
    return [(created["key_id"], created["secret"])
            for created in map(json.loads, outputs[1:])]


class Processes(contextlib.ExitStack):
    """Closes everything it was given (`add(thing)` returns the thing), last first."""

    def add(self, thing):
        self.callback(thing.close)
        return thing


# -- the server -------------------------------------------------------------------------

class Server:
    """`promo-engine serve --workers N --no-scheduler` on a free port: gunicorn's master
    (the process started) and its worker processes."""

    def __init__(self, env: dict, cwd: Path, *, workers: int = 3, name: str = "server"):
        self.env, self.cwd, self.workers = env, cwd, workers
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = cwd / f"{name}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> "Server":
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [CLI, "serve", "--port", str(self.port), "--workers", str(self.workers),
                 "--no-scheduler"],
                env=self.env, cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)

        def up():
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n"
                                     f"{self.log_text()}")
            try:
                return requests.get(f"{self.base}/healthz", timeout=2).status_code == 200
            except requests.RequestException:
                return False
        try:
            wait_until(up, START_TIMEOUT, "the server to answer /healthz", 0.2)
            wait_until(lambda: len(self.worker_pids()) == self.workers, START_TIMEOUT,
                       f"{self.workers} workers")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log_text()}") from None
        return self

    def worker_pids(self) -> list[int]:
        """gunicorn's workers: the master's children."""
        return children(self.process.pid)

    def kill_worker(self, pid: int) -> None:
        assert pid in self.worker_pids(), f"{pid} is not a worker of {self.process.pid}"
        os.kill(pid, signal.SIGKILL)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def assert_no_errors_logged(self) -> None:
        """No traceback in the log: no request met an error the service did not expect (a
        500), whatever the test did to its backing services."""
        text = self.log_text()
        assert "Traceback" not in text and "unhandled error" not in text, text[-20000:]

    def close(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # master and workers: one session
        self.process.wait(timeout=10)


def children(pid: int) -> list[int]:
    """Process ids whose parent is `pid` (from /proc)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return sorted(found)


# -- a private Redis ----------------------------------------------------------------------

class PrivateRedis:
    """A redis-server of the test's own on a free port, without persistence: a restart
    brings it back empty, as a Redis that lost its data."""

    def __init__(self):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = Path(tempfile.mkdtemp(prefix="promo-redis-"))
        self.process: subprocess.Popen | None = None

    def client(self):
        import redis
        return redis.Redis(port=self.port, socket_connect_timeout=1, socket_timeout=2)

    def start(self) -> "PrivateRedis":
        with open(self.dir / "redis.log", "ab") as out:
            self.process = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", str(self.dir)],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

        def pong():
            if self.process.poll() is not None:
                raise AssertionError(f"redis-server exited:\n{self.log_text()}")
            try:
                with contextlib.closing(self.client()) as client:
                    return client.ping()
            except Exception:
                return False
        wait_until(pong, START_TIMEOUT, f"redis-server on port {self.port}")
        return self

    def shutdown_nosave(self) -> None:
        """SHUTDOWN NOSAVE: Redis stops and its data is gone."""
        import redis
        with contextlib.closing(self.client()) as client:
            with contextlib.suppress(redis.ConnectionError):
                client.shutdown(nosave=True)
        self.process.wait(timeout=10)

    def log_text(self) -> str:
        path = self.dir / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


# -- a private PostgreSQL -------------------------------------------------------------------

class PrivatePostgres:
    """A PostgreSQL 15 cluster of the test's own on a free port, run as the `postgres` OS
    user (PostgreSQL refuses root), which the test may stop and start; `url` is a database
    `promo` in it."""

    @staticmethod
    def missing() -> str | None:
        """Why a private cluster cannot be run here, or None."""
        if not (PG_BIN / "initdb").exists():
            return f"no {PG_BIN}/initdb"
        if shutil.which("runuser") is None:
            return "no runuser"
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "no postgres OS user"
        return None

    def __init__(self):
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="promo-pg-"))
        self.data = self.dir / "data"
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/promo"
        self.admin_url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self.running = False
        owner = pwd.getpwnam("postgres")
        os.chown(self.dir, owner.pw_uid, owner.pw_gid)

    def _as_postgres(self, *args: str, timeout: float = 60) -> None:
        done = subprocess.run(["runuser", "-u", "postgres", "--", *args], cwd=self.dir,
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} exited with {done.returncode}:\n"
                               f"{done.stdout}\n{done.stderr}\n{self.log_text()}")

    def init(self) -> "PrivatePostgres":
        self._as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust",
                          "-U", "postgres", "--no-sync")
        self.start()
        from sqlalchemy import create_engine, text
        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text("CREATE DATABASE promo"))
        finally:
            admin.dispose()
        return self

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                   f"-c fsync=off -c max_connections=200")
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l",
                          str(self.dir / "postgres.log"), "-o", options, "-w", "-t", "30",
                          "start")
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w",
                          "-t", "30", "stop")
        self.running = False

    def log_text(self) -> str:
        path = self.dir / "postgres.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        if self.running or (self.data / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


# -- what the ledger and Redis hold ---------------------------------------------------------

class LedgerView:
    """Plain SQL over the ledger tables (promo_engine/ledger/models.py), read independently of the
    engine's own code."""

    def __init__(self, database_url: str):
        from sqlalchemy import create_engine
        self.engine = create_engine(database_url, pool_pre_ping=True)

    def rows(self, sql: str, **params) -> list:
        from sqlalchemy import text
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).all()

    def events(self) -> dict[tuple[str, str], dict]:
        """(client_id, event_id) -> {"pk", "type", "response", "reward_ids"}."""
        found = {}
        for pk, client_id, event_id, type_, response in self.rows(
                "SELECT id, client_id, event_id, type, response FROM events"):
            assert (client_id, event_id) not in found, f"two event rows for {event_id}"
            found[(client_id, event_id)] = {"pk": pk, "type": type_, "response": response,
                                            "reward_ids": set()}
        by_pk = {event["pk"]: event for event in found.values()}
        for event_pk, reward_id in self.rows("SELECT event_pk, reward_id FROM rewards"):
            assert event_pk in by_pk, f"reward {reward_id} without its event row"
            by_pk[event_pk]["reward_ids"].add(reward_id)
        return found

    def campaign_sums(self) -> dict[str, tuple[int, int]]:
        """(spent, redemptions) per campaign from the reward rows: spent in minor units or
        points, reversals included; a grant is a redemption unless its payment was refunded
        in full."""
        spent = dict(self.rows(
            "SELECT campaign_id, SUM(COALESCE(points, amount_minor)) FROM rewards "
            "WHERE campaign_id IS NOT NULL GROUP BY campaign_id"))
        redemptions = dict(self.rows(
            "SELECT r.campaign_id, COUNT(*) FROM rewards r JOIN events e ON e.id = r.event_pk "
            "WHERE r.campaign_id IS NOT NULL AND r.reverses_id IS NULL "
            "AND (e.amount_minor IS NULL OR e.refunded_minor < e.amount_minor) "
            "GROUP BY r.campaign_id"))
        return {c: (int(spent.get(c, 0)), int(redemptions.get(c, 0)))
                for c in set(spent) | set(redemptions)}

    def usage_rows(self) -> dict[str, tuple[int, int]]:
        return {c: (int(s), int(r)) for c, s, r in
                self.rows("SELECT campaign_id, spent, redemptions FROM campaign_usage")}

    def close(self) -> None:
        self.engine.dispose()


def redis_counters(client, prefix: str, campaign_ids) -> dict[str, tuple[int, int] | None]:
    """(spent, redemptions) of each campaign's counter in Redis; None where there is none."""
    found = {}
    for campaign_id in campaign_ids:
        spent, redemptions = client.hmget(f"{prefix}:usage:{campaign_id}", "s", "r")
        found[campaign_id] = None if spent is None else (int(spent), int(redemptions))
    return found


def check_redis_counters(env: dict, cwd: Path, client, prefix: str, ledger: LedgerView,
                         campaign_ids) -> dict:
    """Redis's counters are never below the ledger's sums (a counter not built yet is
    built from the ledger when needed); after `promo-engine reconcile` they equal them, and
    so do the database's usage rows. Returns the counters as they were before."""
    sums = ledger.campaign_sums()
    expected = {c: sums.get(c, (0, 0)) for c in campaign_ids}
    before = redis_counters(client, prefix, campaign_ids)
    for campaign_id, counter in before.items():
        if counter is not None:
            assert counter[0] >= expected[campaign_id][0], (campaign_id, before, expected)
            assert counter[1] >= expected[campaign_id][1], (campaign_id, before, expected)
    assert "Redis counters" in run_cli(env, "reconcile", cwd=cwd)
    assert redis_counters(client, prefix, campaign_ids) == expected
    assert ledger.usage_rows() == expected
    return before


# -- points lots: what the rows derive (the lifecycle and points sweep tests) -----------

def points_problems(ledger: LedgerView, user_ids=None) -> list[str]:
    """Every way the points rows disagree with each other, in plain SQL (empty if none):

    each lot: remaining == points - debt_paid + sum(its moves), 0 <= remaining, debt_paid >= 0,
    its reward row a positive points grant of the same user; each spent, returned or
    expired row: its moves add up to its points, on lots of its user; each user:
    points_balance + pending_points == sum of the user's points rows, pending_points == what
    the pending lots hold, and points_balance == what the available lots hold less the debt
    (a negative balance; with one, no available lot holds anything)."""
    where = "" if user_ids is None else " AND {col} = ANY(:users)"
    params = {} if user_ids is None else {"users": list(user_ids)}
    problems = []
    for pk, user_id, points, remaining, debt_paid, moved, grant_user, grant_points in \
            ledger.rows(
                "SELECT l.reward_pk, l.user_id, l.points, l.remaining, l.debt_paid, "
                "COALESCE((SELECT SUM(m.points) FROM points_lot_moves m "
                "          WHERE m.lot_pk = l.reward_pk), 0), r.user_id, r.points "
                "FROM points_lots l JOIN rewards r ON r.id = l.reward_pk WHERE true"
                + where.format(col="l.user_id"), **params):
        if remaining != points - debt_paid + int(moved):
            problems.append(f"lot {pk} of {user_id}: remaining {remaining} != points {points}"
                            f" - debt_paid {debt_paid} + moves {int(moved)}")
        if remaining < 0 or debt_paid < 0:
            problems.append(f"lot {pk} of {user_id}: remaining {remaining}, debt_paid {debt_paid}")
        if grant_user != user_id or grant_points != points or points <= 0:
            problems.append(f"lot {pk} of {user_id} ({points}): its reward is {grant_points} "
                            f"points of {grant_user}")
    for entry_pk, user_id, reason, points, moved, foreign in ledger.rows(
            "SELECT r.id, r.user_id, r.reason, r.points, "
            "COALESCE(SUM(m.points), 0), COUNT(l.reward_pk) FILTER (WHERE l.user_id <> r.user_id) "
            "FROM rewards r LEFT JOIN points_lot_moves m ON m.entry_pk = r.id "
            "LEFT JOIN points_lots l ON l.reward_pk = m.lot_pk "
            "WHERE r.reason IN ('spent', 'returned', 'expired')" + where.format(col="r.user_id")
            + " GROUP BY r.id", **params):
        if int(moved) != points or foreign:
            problems.append(f"{reason} row {entry_pk} of {user_id}: {points} points, its moves "
                            f"{int(moved)} ({foreign} on another user's lots)")
    sums = dict(ledger.rows("SELECT user_id, SUM(points) FROM rewards WHERE kind = 'points'"
                            + where.format(col="user_id") + " GROUP BY user_id", **params))
    held = {user_id: (int(available), int(pending)) for user_id, available, pending in ledger.rows(
        "SELECT user_id, COALESCE(SUM(remaining) FILTER (WHERE NOT pending), 0), "
        "COALESCE(SUM(remaining) FILTER (WHERE pending), 0) FROM points_lots WHERE true"
        + where.format(col="user_id") + " GROUP BY user_id", **params)}
    for user_id, balance, pending in ledger.rows(
            "SELECT user_id, points_balance, pending_points FROM users WHERE true"
            + where.format(col="user_id"), **params):
        total = int(sums.get(user_id, 0))
        available, in_pending = held.get(user_id, (0, 0))
        if balance + pending != total:
            problems.append(f"user {user_id}: balance {balance} + pending {pending} != "
                            f"{total}, the sum of their points rows")
        if pending != in_pending:
            problems.append(f"user {user_id}: pending {pending} != {in_pending} in pending lots")
        if available - max(0, -balance) != balance:
            problems.append(f"user {user_id}: balance {balance}, available lots hold {available}")
    return problems
