"""The HTTP benchmark's server: a fresh SQLite ledger, its campaigns and API client, and
`promo-engine serve --workers 1` started on it exactly as operators start it.

`set_up` prepares a working directory through the CLI (`campaigns apply` creates the
schema, `clients create --json` the signed client), with an environment cleared of the
caller's database and Redis settings so the run cannot touch anything else. `Server` starts
and always stops the server in its own session. Apart from the load and the report because
this is everything about what is measured, nothing about measuring it.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Sequence
from zoneinfo import ZoneInfo

from bench.processes import children_of, cli_command, free_port
from bench.servers import wait_until_healthy

HOST = "127.0.0.1"  # never anything else: the load stays on this machine
SECRET_KEY = "bench-secret-key-0123456789abcdef"
MERCHANTS = 200
ZONE = "Asia/Shanghai"
DATABASE_FILE = "promo.db"  # in the working directory; the report reads it afterwards
START_TIMEOUT = 60.0
STOP_TIMEOUT = 40.0  # gunicorn's graceful timeout is 30 s
ENV_VARS = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "PROMO_TIMEZONE", "PROMO_CURRENCY",
            "PROMO_POINTS_PER_UNIT", "PROMETHEUS_MULTIPROC_DIR")


def merchant_id(index: int) -> str:
    """The id of merchant `index` (0 to MERCHANTS - 1): the campaigns name these, the
    events are paid at them."""
    return f"m_{index:03d}"


def campaign_yaml(now: datetime) -> str:
    """Four campaigns open from yesterday to a month from now (local time), no windows,
    so every event falls in them; the budgets are far from running out, so the guarded
    UPDATE runs (and succeeds) for every grant, and the per-user limits do bite."""
    local = now.astimezone(ZoneInfo(ZONE)).replace(tzinfo=None, microsecond=0)
    starts = (local - timedelta(days=1)).isoformat()
    ends = (local + timedelta(days=30)).isoformat()
    shops = [merchant_id(i) for i in range(MERCHANTS)]
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


def set_up(workdir: Path) -> tuple[dict, dict]:
    """The server's environment (SQLite at workdir/DATABASE_FILE) and the API client made
    for the run (`key_id`, `secret`), with the campaigns applied."""
    db_path = workdir / DATABASE_FILE
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    env.update(DATABASE_URL=f"sqlite:///{db_path}", SECRET_KEY=SECRET_KEY, PROMO_TIMEZONE=ZONE)
    campaigns = workdir / "campaigns.yaml"
    campaigns.write_text(campaign_yaml(datetime.now(timezone.utc)))
    run_cli(["campaigns", "apply", str(campaigns)], env, workdir)  # creates the schema
    client = json.loads(run_cli(["clients", "create", "bench-http", "--json"], env, workdir))
    return env, client


def run_cli(args: Sequence[str], env: dict, cwd: Path) -> str:
    done = subprocess.run(cli_command() + list(args), env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"promo-engine {' '.join(args)} failed ({done.returncode}):\n"
                         f"{done.stdout}{done.stderr}")
    return done.stdout


class Server:
    """`promo-engine serve --workers 1` in its own session; always stopped by `stop`."""

    def __init__(self, env: dict, workdir: Path, workers: int, threads: int | None):
        self.port = free_port(HOST)
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
