"""The world a PostgreSQL + Redis benchmark run makes for itself, and takes down again:
its own database, its own Redis prefix (keys deleted at the end), the campaigns of its
scenarios with the ids of everything it makes, the `promo-engine` commands that set the
database up, and the environment its servers get.

Apart from the load itself because `bench/record.py` makes the very same world to measure
the write path in one process: both import it from here.
"""
from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Sequence
from zoneinfo import ZoneInfo

from bench.bare_app import TABLE as BARE_TABLE

PG_ADMIN_URL = os.environ.get("PROMO_BENCH_PG_ADMIN_URL",
                              "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("PROMO_BENCH_REDIS_URL", "redis://127.0.0.1:6379/7")
SECRET_KEY = "bench-load-secret-key-0123456789abcdef"
ZONE = "Asia/Shanghai"
HOT_MERCHANTS = 200

# The server's settings this run sets; whatever the caller's environment has for them is
# dropped first, so the run never inherits another database, Redis or limit.
ENV_VARS = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "PROMO_TIMEZONE", "PROMO_CURRENCY",
            "PROMO_POINTS_PER_UNIT", "PROMETHEUS_MULTIPROC_DIR", "PROMO_REDIS_PREFIX",
            "PROMO_API_RATE_LIMIT")
# The API's per-client rate limit is set this high (one client sends all the load, as the
# one wallet backend does): the limiter's cost per request is measured, its cap is not.
RATE_LIMIT = "1000000/second"


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


def server_env(database_url: str, redis_url: str, tag: str, rate_limit: str) -> dict:
    """The environment of the run's servers and commands: this process's, with the run's
    database, Redis, prefix and secret; `rate_limit` "default" leaves the server's own."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    env.update(DATABASE_URL=database_url, REDIS_URL=redis_url, SECRET_KEY=SECRET_KEY,
               PROMO_TIMEZONE=ZONE, PROMO_REDIS_PREFIX=redis_prefix(tag))
    if rate_limit != "default":
        env["PROMO_API_RATE_LIMIT"] = rate_limit
    return env


# Set-up commands are started and finished apart, so that several run at once (and beside
# the first servers' start-up); `run_cli` is the one-at-a-time form.
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
                "bare": one(f"SELECT count(*) FROM {BARE_TABLE}"),
                "hot_redemptions": usage.get(hot_campaign(tag), 0),
                "redemptions": sum(usage.values()),
            }


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
