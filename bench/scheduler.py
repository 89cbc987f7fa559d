#!/usr/bin/env python
"""Campaign scheduler benchmark: start-up with 10,000 campaigns, and how close to its instant
each of their 20,000 transitions is committed. Needs PostgreSQL and Redis.

What it does:

1. creates a database of its own (dropped at the end) and applies N campaigns (default
   10,000) with `apply_campaigns`, as `promo-engine campaigns apply` would: local times in
   Asia/Shanghai, Europe/Berlin, America/New_York and UTC, instants to the microsecond,
   staggered over --span seconds (default 60) starting --lead seconds after the apply; a
   fifth of them share one instant (the "midnight" burst: they all open together); each
   lasts 5 to 30 s, so every campaign opens and closes during the run;
2. start-up as an operator sees it: `promo-engine scheduler` as a process, from spawn to
   its log line "... jobs planned" (interpreter, imports, lease, catch-up, plan), then
   stopped; and in-process, `CampaignScheduler.start()` until it is ready (elected, caught
   up, every job planned), three times, the last one kept running. Baseline, in the same
   run: reading the schedule columns of the N campaigns, plus adding 2N no-op DateTrigger
   jobs to a bare APScheduler (what any scheduler that rebuilds its jobs from the table
   must at least do);
3. transitions: the scheduler (leading through a real Redis lease, fenced, with one plugin
   implementing both hooks installed) runs until every campaign has opened and closed.
   For each transition: committed - instant (measured when `act` returns, i.e. after the
   commit), audit `at` - instant, and hook call - instant. Then every campaign must have
   exactly one scheduler audit row scheduled->open and one open->closed.

    .venv/bin/python bench/scheduler.py                  # the figures in docs/performance.md
    .venv/bin/python bench/scheduler.py --quick          # 1,000 campaigns over 15 s
    .venv/bin/python bench/scheduler.py --campaigns 10000 --span 60 --lead 40

Exit status 1 when a target is missed (--check) or a transition was lost or doubled.
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import re
import signal
import statistics
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Sequence
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from promo_engine import hookimpl  # noqa: E402

UTC = timezone.utc
ZONES = ("Asia/Shanghai", "Europe/Berlin", "America/New_York", "UTC")
PG_ADMIN_URL = os.environ.get("PROMO_TEST_PG_ADMIN_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("PROMO_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
SECRET_KEY = "bench-secret-key-0123456789"
STARTUP_TARGET = 5.0
LATENCY_TARGET = 1.0
CLI = str(Path(sys.executable).with_name("promo-engine"))


class HookClock:
    """The bench's plugin: when each hook call arrived."""

    def __init__(self):
        self.calls: dict[tuple[str, str], float] = {}

    @hookimpl
    def promo_campaign_opened(self, campaign, at):
        self.calls[("open", campaign.id)] = time.time()

    @hookimpl
    def promo_campaign_closed(self, campaign, at):
        self.calls[("closed", campaign.id)] = time.time()


def make_documents(count: int, first: datetime, span: float, seed: int) -> tuple[list, dict]:
    """Campaign documents and {id: (starts_at, ends_at)} as UTC instants."""
    rng = random.Random(seed)
    burst = first + timedelta(seconds=span / 3)
    documents, instants = [], {}
    for n in range(count):
        zone = ZONES[n % len(ZONES)]
        if n % 5 == 0:
            starts = burst
        else:
            starts = first + timedelta(microseconds=rng.randrange(int(span * 1_000_000)))
        ends = starts + timedelta(microseconds=rng.randrange(5_000_000, 30_000_000))
        local = ZoneInfo(zone)
        campaign_id = f"bench-{n:05d}"
        documents.append({
            "id": campaign_id, "type": "holiday_discount", "timezone": zone,
            "merchants": [f"m_{n % 1000}"],
            "starts_at": starts.astimezone(local).replace(tzinfo=None).isoformat(),
            "ends_at": ends.astimezone(local).replace(tzinfo=None).isoformat(),
            "params": {"percent": 5 + n % 20}})
        instants[campaign_id] = (starts, ends)
    return documents, instants


def create_database() -> str:
    from sqlalchemy import create_engine, text
    name = f"promo_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"


def drop_database(url: str) -> None:
    from sqlalchemy import create_engine, text
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    admin.dispose()


def apply(app, documents: list[dict]) -> float:
    from promo_engine.campaigns.files import LoadedCampaign
    from promo_engine.campaigns.schema import load_campaign
    from promo_engine.campaigns.spec import canonical_spec
    from promo_engine.campaigns.store import apply_campaigns
    from promo_engine.service import promo_service
    started = time.perf_counter()
    with app.app_context():
        service = promo_service(app)
        loaded = [LoadedCampaign(load_campaign(doc, registry=service.registry, currency="CNY",
                                               default_timezone="Asia/Shanghai"),
                                 canonical_spec(doc, "Asia/Shanghai"), "bench.yaml", 1)
                  for doc in documents]
        report = apply_campaigns(loaded)
        assert len(report.created) == len(documents), report
    return time.perf_counter() - started


def baseline_startup(app, count: int) -> tuple[float, float]:
    """Seconds to read the schedule columns, and to add 2 x count no-op jobs to APScheduler."""
    from apscheduler.jobstores.memory import MemoryJobStore
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.date import DateTrigger
    from sqlalchemy import select

    from promo_engine.ledger.extensions import db
    from promo_engine.ledger.models import CampaignRecord
    started = time.perf_counter()
    with app.app_context():
        rows = db.session.execute(select(CampaignRecord.id, CampaignRecord.status,
                                         CampaignRecord.starts_at, CampaignRecord.ends_at,
                                         CampaignRecord.spec["timezone"].as_string())).all()
        db.session.rollback()
    read = time.perf_counter() - started
    aps = BackgroundScheduler(timezone=UTC, jobstores={"default": MemoryJobStore()})
    aps.start(paused=True)
    started = time.perf_counter()
    for campaign_id, _status, starts, ends, _zone in rows:
        aps.add_job(noop, DateTrigger(run_date=starts, timezone=UTC), id=f"open:{campaign_id}")
        aps.add_job(noop, DateTrigger(run_date=ends, timezone=UTC), id=f"close:{campaign_id}")
    added = time.perf_counter() - started
    aps.shutdown(wait=False)
    assert len(rows) == count
    return read, added


def noop() -> None:
    pass


def cli_startup(database_url: str, lease_key: str, timeout: float = 60) -> tuple[float, float]:
    """(seconds from spawn to "jobs planned", the plan time the process itself logged)."""
    env = dict(os.environ, DATABASE_URL=database_url, REDIS_URL=REDIS_URL, SECRET_KEY=SECRET_KEY,
               PROMO_SCHEDULER_LEASE_KEY=lease_key, PROMO_LOAD_ENTRY_POINTS="0")
    started = time.perf_counter()
    process = subprocess.Popen([CLI, "scheduler"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + timeout
        for line in process.stdout:
            match = re.search(r"jobs planned in ([0-9.]+) s", line)
            if match:
                return time.perf_counter() - started, float(match.group(1))
            if time.monotonic() > deadline:
                break
        raise RuntimeError("promo-engine scheduler did not report its plan")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class TimedScheduler:
    """CampaignScheduler recording when each transition's transaction returned (committed)."""

    @staticmethod
    def build(app, pm, lease):
        from promo_engine.campaigns.scheduler import CampaignScheduler

        class Timed(CampaignScheduler):
            committed: dict[tuple[str, str], float] = {}

            def act(self, campaign_ids=None, *, now=None):
                made = super().act(campaign_ids, now=now)
                done = time.time()
                for change in made:
                    self.committed[(change.to_status, change.campaign_id)] = done
                return made

        return Timed(app, pm=pm, lease=lease)


def summary(values: list[float]) -> str:
    values = sorted(values)
    if not values:
        return "none"
    p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
    return (f"p50 {statistics.median(values) * 1000:7.1f} ms  p99 {p99 * 1000:7.1f} ms  "
            f"max {values[-1] * 1000:7.1f} ms  min {values[0] * 1000:6.1f} ms")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--campaigns", type=int, default=10_000)
    parser.add_argument("--span", type=float, default=60.0,
                        help="seconds over which the campaigns start (60)")
    parser.add_argument("--lead", type=float, default=None,
                        help="seconds from the apply to the first start (default: 3 s per "
                             "1,000 campaigns, at least 15)")
    parser.add_argument("--seed", type=int, default=2027)
    parser.add_argument("--quick", action="store_true", help="1,000 campaigns over 15 s")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.quick:
        args.campaigns, args.span = 1000, 15.0
    lead = args.lead if args.lead is not None else max(15.0, 3.0 * args.campaigns / 1000)

    from promo_engine.app import create_app
    from promo_engine.campaigns.scheduler import LeaseSettings, redis_lease
    from promo_engine.config import Settings
    from promo_engine.core.registry import build_registry, get_plugin_manager
    from promo_engine.ledger.schema import upgrade

    print(f"Campaign scheduler: {args.campaigns:,} campaigns, starts staggered over "
          f"{args.span:.0f} s (a fifth at one instant), each open 5-30 s; PostgreSQL + Redis")
    print(f"Python {platform.python_version()} ({platform.python_implementation()}), "
          f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs; load average "
          f"before the run: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    database_url = create_database()
    lease_key = f"promo-bench-{uuid.uuid4().hex[:8]}:scheduler:leader"
    scheduler = None
    failures = []
    try:
        upgrade(database_url)
        settings = Settings.from_env({"DATABASE_URL": database_url, "REDIS_URL": REDIS_URL,
                                      "SECRET_KEY": SECRET_KEY})
        hook_clock = HookClock()
        pm = get_plugin_manager(load_entry_points=False)
        pm.register(hook_clock, name="bench-hook-clock")
        app = create_app(settings, registry=build_registry(pm))

        first = datetime.now(UTC) + timedelta(seconds=lead)
        documents, instants = make_documents(args.campaigns, first, args.span, args.seed)
        applied = apply(app, documents)
        print(f"\napplied {args.campaigns:,} campaigns in {applied:.2f} s; first start in "
              f"{(first - datetime.now(UTC)).total_seconds():.1f} s")

        read, added = baseline_startup(app, args.campaigns)
        print("\nStart-up (target < 5 s):")
        print(f"  baseline: read the schedule columns {read:.3f} s + add "
              f"{2 * args.campaigns:,} no-op jobs to a bare APScheduler {added:.3f} s "
              f"= {read + added:.3f} s")
        spawn_to_plan, process_plan = cli_startup(database_url, lease_key + "-cli")
        print("  `promo-engine scheduler` process: spawn to \"jobs planned\" "
              f"{spawn_to_plan:.2f} s (of which lease, catch-up and plan {process_plan:.2f} s)")
        if spawn_to_plan >= STARTUP_TARGET:
            failures.append("process start-up")

        lease_settings = LeaseSettings(ttl_ms=5000, key=lease_key)
        timings = []
        for attempt in range(3):
            scheduler = TimedScheduler.build(app, pm, redis_lease(REDIS_URL, lease_settings))
            started = time.perf_counter()
            scheduler.start()
            if not scheduler.ready.wait(60):
                raise RuntimeError("the scheduler did not get ready in 60 s")
            timings.append(time.perf_counter() - started)
            jobs = len(scheduler.job_plan())
            if attempt < 2:
                scheduler.stop()
                scheduler = None
        print(f"  in-process CampaignScheduler.start() to ready (lease, catch-up, {jobs:,} jobs "
              f"planned): {', '.join(f'{t:.2f}' for t in timings)} s")
        if max(timings) >= STARTUP_TARGET:
            failures.append("in-process start-up")

        last = max(ends for _, ends in instants.values())
        wait = (last - datetime.now(UTC)).total_seconds()
        print(f"\nTransitions (target: each within 1 s of its instant); waiting {wait:.0f} s "
              "for the last one ...")
        expected = {("open", i) for i in instants} | {("closed", i) for i in instants}
        deadline = time.monotonic() + wait + 30
        while time.monotonic() < deadline and not expected <= set(scheduler.committed):
            time.sleep(0.5)
        time.sleep(1)  # the last hook calls
        scheduler.stop()

        from sqlalchemy import func, select

        from promo_engine.ledger.extensions import db
        from promo_engine.ledger.models import CampaignAudit, CampaignRecord
        with app.app_context():
            audits = db.session.execute(
                select(CampaignAudit.campaign_id, CampaignAudit.from_status,
                       CampaignAudit.to_status, CampaignAudit.at)
                .where(CampaignAudit.actor == "scheduler")).all()
            statuses = dict(db.session.execute(
                select(CampaignRecord.status, func.count()).group_by(CampaignRecord.status)
            ).all())
        per_transition: dict[tuple[str, str], list] = {}
        for campaign_id, from_status, to_status, at in audits:
            per_transition.setdefault((to_status, campaign_id), []).append((from_status, at))
        once = all(len(per_transition.get(key, ())) == 1 for key in expected) and \
            len(audits) == len(expected)
        wrong_path = [k for k, v in per_transition.items()
                      if v[0][0] != ("scheduled" if k[0] == "open" else "open")]
        commit_lag, audit_lag, hook_lag = [], [], []
        burst_lag, rest_lag = [], []
        starts_count: dict[datetime, int] = {}
        for starts, _ in instants.values():
            starts_count[starts] = starts_count.get(starts, 0) + 1
        burst = max(starts_count, key=starts_count.get)
        for to_status, campaign_id in expected:
            starts, ends = instants[campaign_id]
            instant = (starts if to_status == "open" else ends).timestamp()
            if (to_status, campaign_id) in scheduler.committed:
                lag = scheduler.committed[(to_status, campaign_id)] - instant
                commit_lag.append(lag)
                (burst_lag if to_status == "open" and starts == burst else rest_lag).append(lag)
            if (to_status, campaign_id) in per_transition:
                audit_lag.append(per_transition[(to_status, campaign_id)][0][1].timestamp()
                                 - instant)
            if (to_status, campaign_id) in hook_clock.calls:
                hook_lag.append(hook_clock.calls[(to_status, campaign_id)] - instant)
        print(f"  transitions: {len(audits):,} audit rows for {len(expected):,} expected; "
              f"exactly one each: {'yes' if once and not wrong_path else 'NO'}; "
              f"statuses now {statuses}")
        rows = [("committed - instant", commit_lag),
                (f"  {starts_count[burst]:,} opening together", burst_lag),
                (f"  the other {len(rest_lag):,}", rest_lag),
                ("audit at - instant", audit_lag), ("hook call - instant", hook_lag)]
        for label, values in rows:
            print(f"  {label + ':':<26}{summary(values)}")
        early = [lag for lag in audit_lag if lag < 0]
        late = [lag for lag in commit_lag if lag >= LATENCY_TARGET]
        print(f"  early: {len(early)}; committed 1 s or more after the instant: {len(late)} "
              f"({'target met' if not late and len(commit_lag) == len(expected) else 'MISSED'})")
        if not once or wrong_path or early:
            print("ERROR: a transition was lost, doubled or early")
            return 1
        if late or len(commit_lag) != len(expected):
            failures.append("transition latency")
    finally:
        if scheduler is not None:
            scheduler.stop()
        drop_database(database_url)
        import redis
        client = redis.Redis.from_url(REDIS_URL)
        client.delete(lease_key, f"{lease_key}:token", f"{lease_key}-cli",
                      f"{lease_key}-cli:token")
        client.close()
    print("\ntargets: " + ("all met" if not failures else "MISSED: " + ", ".join(failures)))
    return 1 if failures and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
