"""Several `promo-engine scheduler` processes (and `promo-engine serve --workers 2`, whose
embedded scheduler competes too) against real PostgreSQL and Redis: each transition is made
exactly once, a leader killed with SIGKILL is replaced within the lease time with nothing
lost or doubled, and a scheduler started after downtime catches up at once.

Every test has its own database and lease key; every process is killed in `finally`.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests
from sqlalchemy import select

from conftest import TEST_REDIS_URL, make_settings

pytestmark = [pytest.mark.slow, pytest.mark.services]

UTC = timezone.utc
REDIS_URL = TEST_REDIS_URL
SECRET_KEY = "test-secret-key-0123456789"
LEASE_MS = 2000
CLI = str(Path(sys.executable).with_name("promo-engine"))
ZONES = ("Asia/Shanghai", "Europe/Berlin", "America/New_York")
ENV_VARS = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "PROMO_TIMEZONE", "PROMO_CURRENCY",
            "PROMO_POINTS_PER_UNIT", "PROMETHEUS_MULTIPROC_DIR", "PROMO_SCHEDULER_LEASE_MS",
            "PROMO_SCHEDULER_LEASE_KEY")


@pytest.fixture
def lease_key(redis_client):
    key = f"promo-test-{uuid.uuid4().hex}:scheduler:leader"
    yield key
    redis_client.delete(key, f"{key}:token")


@pytest.fixture
def database(postgres_url):
    """The test's PostgreSQL database with the schema, and an app on it for set-up."""
    from promo_engine.app import create_app
    from promo_engine.ledger.extensions import db
    from promo_engine.ledger.schema import upgrade
    upgrade(postgres_url)
    app = create_app(make_settings(postgres_url, points_per_unit=Decimal(1)))
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def processes(tmp_path):
    """Starts CLI processes; every one still running is killed afterwards."""
    started: list[tuple[subprocess.Popen, Path]] = []

    def start(args: list[str], env: dict, name: str) -> subprocess.Popen:
        log = tmp_path / f"{name}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen([CLI, *args], env=env, cwd=tmp_path, stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        process.log = log
        started.append((process, log))
        return process

    yield start
    for process, _log in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def environ(database_url: str, lease_key: str, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    env.update(DATABASE_URL=database_url, REDIS_URL=REDIS_URL, SECRET_KEY=SECRET_KEY,
               PROMO_SCHEDULER_LEASE_MS=str(LEASE_MS), PROMO_SCHEDULER_LEASE_KEY=lease_key,
               PROMO_REDIS_PREFIX="{" + lease_key + "}", PROMO_LOAD_ENTRY_POINTS="0", **extra)
    return env


def apply_staggered(app, count: int, first: datetime, spread: float, length: float,
                    prefix: str = "c") -> dict[str, tuple[datetime, datetime]]:
    """`count` campaigns starting over `spread` seconds from `first` (every third at the
    same instant), each open `length` seconds, written in local time of several zones."""
    from promo_engine.campaigns.files import LoadedCampaign
    from promo_engine.campaigns.schema import load_campaign
    from promo_engine.campaigns.spec import canonical_spec
    from promo_engine.campaigns.store import apply_campaigns
    from promo_engine.service import promo_service
    instants, loaded = {}, []
    with app.app_context():
        registry = promo_service(app).registry
        for n in range(count):
            starts = first if n % 3 == 0 else first + timedelta(seconds=spread * n / count)
            ends = starts + timedelta(seconds=length)
            zone = ZONES[n % len(ZONES)]
            local = ZoneInfo(zone)
            document = {"id": f"{prefix}{n:03d}", "type": "holiday_discount", "timezone": zone,
                        "starts_at": starts.astimezone(local).replace(tzinfo=None).isoformat(),
                        "ends_at": ends.astimezone(local).replace(tzinfo=None).isoformat(),
                        "params": {"percent": 10}}
            campaign = load_campaign(document, registry=registry, currency="CNY",
                                     default_timezone="Asia/Shanghai")
            assert (campaign.starts_at, campaign.ends_at) == (starts, ends)
            loaded.append(LoadedCampaign(campaign, canonical_spec(document, "Asia/Shanghai"),
                                         "c.yaml", 1))
            instants[campaign.id] = (starts, ends)
        apply_campaigns(loaded)
    return instants


def scheduler_audit(app) -> dict[str, list[tuple[str, str, datetime]]]:
    from promo_engine.ledger.extensions import db
    from promo_engine.ledger.models import CampaignAudit
    with app.app_context():
        rows = db.session.execute(
            select(CampaignAudit.campaign_id, CampaignAudit.from_status,
                   CampaignAudit.to_status, CampaignAudit.at)
            .where(CampaignAudit.actor == "scheduler").order_by(CampaignAudit.id)).all()
        db.session.rollback()
    audit: dict[str, list] = {}
    for campaign_id, from_status, to_status, at in rows:
        audit.setdefault(campaign_id, []).append((from_status, to_status, at))
    return audit


def statuses(app) -> dict[str, str]:
    from promo_engine.ledger.extensions import db
    from promo_engine.ledger.models import CampaignRecord
    with app.app_context():
        result = dict(db.session.execute(select(CampaignRecord.id, CampaignRecord.status)).all())
        db.session.rollback()
    return result


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"{what} did not happen within {timeout} s")


def leader_pid(redis_client, key: str) -> int | None:
    value = redis_client.get(key)
    if value is None:
        return None
    token, host, pid, _ = value.decode().split(":")
    return int(pid)


def assert_each_transition_once(audit, instants, late_by: float):
    """One scheduled->open at or after starts_at and one open->closed at or after ends_at
    for every campaign, each within `late_by` seconds; nothing else."""
    assert sorted(audit) == sorted(instants)
    for campaign_id, (starts, ends) in instants.items():
        (f1, t1, opened), (f2, t2, closed) = audit[campaign_id]
        assert (f1, t1, f2, t2) == ("scheduled", "open", "open", "closed"), campaign_id
        assert starts <= opened < starts + timedelta(seconds=late_by), campaign_id
        assert ends <= closed < ends + timedelta(seconds=late_by), campaign_id


def stop(process, timeout: float = 40) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_three_schedulers_and_a_serve_with_two_workers_make_each_transition_once(
        database, postgres_url, lease_key, redis_client, processes):
    env = environ(postgres_url, lease_key)
    first = datetime.now(UTC) + timedelta(seconds=7)
    instants = apply_staggered(database, 45, first, spread=5, length=2.5)
    port = free_port()
    server = processes(["serve", "--port", str(port), "--workers", "2"], env, "serve")
    schedulers = [processes(["scheduler"], env, f"scheduler-{n}") for n in range(3)]
    try:
        wait_until(lambda: leader_pid(redis_client, lease_key), 10, "a leader")
        last = max(ends for _, ends in instants.values())
        wait_until(lambda: set(statuses(database).values()) == {"closed"},
                   (last - datetime.now(UTC)).total_seconds() + 10, "every campaign closed")
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        time.sleep(1.5)  # anything late or doubled would show up now
        assert_each_transition_once(scheduler_audit(database), instants, late_by=2.0)
        # One of the four competitors (three schedulers, the server's own) holds the lease.
        server_scheduler = wait_until(lambda: embedded_scheduler_pid(server), 5,
                                      "the server's scheduler")
        assert leader_pid(redis_client, lease_key) in {p.pid for p in schedulers} | {
            server_scheduler}
        assert all(p.poll() is None for p in [server, *schedulers])
        assert stop(server) == 0
        assert [stop(p) for p in schedulers] == [0, 0, 0]
    finally:
        for process in [server, *schedulers]:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    serve_log = server.log.read_text()
    assert f"Started the campaign scheduler (pid: {server_scheduler})" in serve_log
    assert "competing for the lease" in serve_log
    assert "promo-engine: scheduler stopped" in serve_log


def embedded_scheduler_pid(server) -> int | None:
    import re
    match = re.search(r"Started the campaign scheduler \(pid: (\d+)\)", server.log.read_text())
    return int(match.group(1)) if match else None


def test_leader_killed_is_replaced_within_the_lease_time_and_nothing_is_lost_or_doubled(
        database, postgres_url, lease_key, redis_client, processes):
    from promo_engine.ledger.extensions import db
    from promo_engine.ledger.models import ProgramState
    env = environ(postgres_url, lease_key)
    first = datetime.now(UTC) + timedelta(seconds=4)
    # Each open longer than a takeover, so each opens and closes (a campaign whose whole
    # period fell between leaders would go from scheduled straight to closed).
    instants = apply_staggered(database, 30, first, spread=8, length=LEASE_MS / 1000 + 1.5)
    schedulers = {p.pid: p for p in (processes(["scheduler"], env, f"scheduler-{n}")
                                     for n in range(2))}
    old = wait_until(lambda: leader_pid(redis_client, lease_key), 10, "a leader")
    old_token = int(redis_client.get(lease_key).decode().split(":")[0])
    # Kill it once it has made some of the transitions, with more to come.
    wait_until(lambda: len(scheduler_audit(database)) >= 5, 15, "the first transitions")
    schedulers[old].send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    schedulers[old].wait(5)
    new = wait_until(lambda: (pid := leader_pid(redis_client, lease_key)) not in (None, old)
                     and pid, LEASE_MS / 1000 + 3, "a takeover", interval=0.01)
    took_over = time.monotonic() - killed_at
    assert new in schedulers
    assert took_over <= LEASE_MS / 1000 + 0.5  # the lease time, one retry and some slack
    assert int(redis_client.get(lease_key).decode().split(":")[0]) > old_token

    last = max(ends for _, ends in instants.values())
    wait_until(lambda: set(statuses(database).values()) == {"closed"},
               (last - datetime.now(UTC)).total_seconds() + 10, "every campaign closed")
    time.sleep(1)
    # Transitions due while nobody led are made late (by up to the lease time), not lost.
    assert_each_transition_once(scheduler_audit(database), instants,
                                late_by=LEASE_MS / 1000 + 2)
    with database.app_context():
        fence = db.session.get(ProgramState, 1).scheduler_fence
    assert fence == int(redis_client.get(lease_key).decode().split(":")[0])
    assert stop(schedulers[new]) == 0
    assert redis_client.get(lease_key) is None  # released on the way out


def test_a_scheduler_started_after_downtime_catches_up_at_once(
        database, postgres_url, lease_key, redis_client, processes):
    env = environ(postgres_url, lease_key)
    first = processes(["scheduler"], env, "before-downtime")
    wait_until(lambda: leader_pid(redis_client, lease_key) == first.pid, 10, "a leader")
    assert stop(first) == 0  # downtime begins
    assert redis_client.get(lease_key) is None

    # While no scheduler runs, six campaigns start and end, and one only starts.
    now = datetime.now(UTC)
    passed = apply_staggered(database, 6, now + timedelta(seconds=1.5), spread=1, length=1,
                             prefix="gone-")
    apply_staggered(database, 1, now + timedelta(seconds=1.5), spread=0, length=60,
                    prefix="open-")
    time.sleep(max(0.0, (max(e for _, e in passed.values()) - datetime.now(UTC))
                   .total_seconds()) + 0.3)
    assert scheduler_audit(database) == {}

    restarted_at = datetime.now(UTC)
    second = processes(["scheduler"], env, "after-downtime")
    expected = {**{i: "closed" for i in passed}, "open-000": "open"}
    wait_until(lambda: statuses(database) == expected, 10, "the catch-up")
    caught_up = datetime.now(UTC)
    audit = scheduler_audit(database)
    assert {campaign_id: [(f, t) for f, t, _ in rows] for campaign_id, rows in audit.items()} \
        == {**{i: [("scheduled", "closed")] for i in passed}, "open-000": [("scheduled", "open")]}
    assert all(restarted_at < at < caught_up for rows in audit.values() for _, _, at in rows)
    assert stop(second) == 0
    assert "0 transitions caught up" in first.log.read_text()
    assert "7 transitions caught up" in second.log.read_text()
