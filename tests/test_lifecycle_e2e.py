"""End to end, as operators and the wallet backend see it: `promo-engine serve --workers 2` on
the embedded default (SQLite, no Redis, the server's own scheduler), a campaign applied from
the command line to start a few seconds ahead, and signed payments through HTTP: the
campaign rewards nothing before its start, opens on time in every worker, and closes."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests
from sqlalchemy import create_engine, text

from promo_engine.api.auth import signed_headers

pytestmark = pytest.mark.slow

UTC = timezone.utc
SHANGHAI = ZoneInfo("Asia/Shanghai")
SECRET_KEY = "test-secret-key-0123456789"
CLI = str(Path(sys.executable).with_name("promo-engine"))
ENV_VARS = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "PROMO_TIMEZONE", "PROMO_CURRENCY",
            "PROMO_POINTS_PER_UNIT", "PROMETHEUS_MULTIPROC_DIR")
LEAD = timedelta(seconds=8)  # from the apply to the start: applied by then, even when busy
LENGTH = timedelta(seconds=5)
# The scheduler opens within a second of the instant, and each worker reloads within a
# second of that.
VISIBLE_WITHIN = timedelta(seconds=2.5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_cli(args, env, cwd) -> str:
    result = subprocess.run([CLI, *args], env=env, cwd=cwd, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def local(instant: datetime) -> str:
    """A local time in Shanghai, as marketing writes it (to the millisecond here)."""
    return instant.astimezone(SHANGHAI).replace(tzinfo=None).isoformat(timespec="milliseconds")


def test_campaign_applied_ahead_opens_on_time_and_closes_through_the_http_api(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    database = tmp_path / "promo.db"
    env.update(DATABASE_URL=f"sqlite:///{database}", SECRET_KEY=SECRET_KEY,
               PROMO_LOAD_ENTRY_POINTS="0")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen([CLI, "serve", "--port", str(port), "--workers", "2"],
                                  env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, log.read_text()
            try:
                if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):  # not listening, or busy starting
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        client = json.loads(run_cli(["clients", "create", "wallet-backend", "--json"], env,
                                    tmp_path))

        starts = (datetime.now(UTC) + LEAD).replace(microsecond=0)
        ends = starts + LENGTH
        (tmp_path / "flash.yaml").write_text(
            f"id: flash-sale\nname: Flash sale\ntype: holiday_discount\n"
            f"timezone: Asia/Shanghai\nstarts_at: {local(starts)}\nends_at: {local(ends)}\n"
            "params: {amount_off: \"5.00\"}\n")
        assert "created flash-sale" in run_cli(["campaigns", "apply", "flash.yaml"], env,
                                               tmp_path)

        seen: list[tuple[datetime, bool]] = []
        n = 0
        while datetime.now(UTC) < ends + timedelta(seconds=1.5):
            n += 1
            at = datetime.now(UTC)
            body = json.dumps({"event_id": f"p{n}", "type": "payment", "user_id": f"u_{n}",
                               "occurred_at": at.isoformat(), "merchant_id": "m_100",
                               "amount": "100.00", "currency": "CNY"}).encode()
            headers = signed_headers(client["key_id"], client["secret"], "POST", "/v1/events",
                                     body)
            headers["Content-Type"] = "application/json"
            # A new connection each time, so that both workers answer.
            headers["Connection"] = "close"
            response = requests.post(f"{base}/v1/events", data=body, headers=headers,
                                     timeout=10)
            assert response.status_code == 201, response.text
            campaigns = [r["campaign_id"] for r in response.json()["rewards"]]
            seen.append((at, "flash-sale" in campaigns))
            time.sleep(0.1)

        server.send_signal(signal.SIGTERM)
        assert server.wait(40) == 0
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)

    assert not [at for at, rewarded in seen if rewarded and not starts <= at < ends]
    first_rewarded = min(at for at, rewarded in seen if rewarded)
    assert first_rewarded - starts < VISIBLE_WITHIN
    missed = [at for at, rewarded in seen if starts + VISIBLE_WITHIN <= at < ends and not rewarded]
    assert missed == []
    assert len([1 for at, _ in seen if starts + VISIBLE_WITHIN <= at < ends]) >= 5

    engine = create_engine(f"sqlite:///{database}")
    with engine.connect() as conn:
        audit = conn.execute(text(
            "SELECT from_status, to_status, actor, at FROM campaign_audit "
            "WHERE campaign_id = 'flash-sale' ORDER BY id")).all()
        status = conn.execute(text(
            "SELECT status FROM campaigns WHERE id = 'flash-sale'")).scalar_one()
    engine.dispose()
    assert status == "closed"
    assert [(f, t, actor.split(":")[0]) for f, t, actor, _ in audit] == [  # cli:<user>
        (None, "scheduled", "cli"), ("scheduled", "open", "scheduler"),
        ("open", "closed", "scheduler")]
    opened_at = datetime.fromisoformat(audit[1][3]).replace(tzinfo=UTC)
    closed_at = datetime.fromisoformat(audit[2][3]).replace(tzinfo=UTC)
    assert starts <= opened_at < starts + timedelta(seconds=1)
    assert ends <= closed_at < ends + timedelta(seconds=1)
    text_log = log.read_text()
    assert "Started the campaign scheduler" in text_log
    assert "acting alone (no REDIS_URL)" in text_log


def test_serve_restarts_its_scheduler_and_never_leaves_it_behind(tmp_path):
    """The server's scheduler is started again if it dies, and ends when the server does,
    even when the server is killed outright."""
    import re
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'promo.db'}", SECRET_KEY=SECRET_KEY,
               PROMO_LOAD_ENTRY_POINTS="0")
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen([CLI, "serve", "--port", str(free_port()), "--workers", "1"],
                                  env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)

    def scheduler_pids() -> list[int]:
        return [int(pid) for pid in
                re.findall(r"Started the campaign scheduler \(pid: (\d+)\)", log.read_text())]

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        status = Path(f"/proc/{pid}/stat")
        return not (status.exists() and status.read_text().split()[2] == "Z")

    def wait_for(predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.1)
        return False

    try:
        assert wait_for(lambda: "leading (alone)" in log.read_text(), 30), log.read_text()
        first = scheduler_pids()[0]
        os.kill(first, signal.SIGKILL)
        # Noticed within a second (gunicorn's loop), started again after a second's backoff.
        assert wait_for(lambda: len(scheduler_pids()) == 2, 5), log.read_text()
        assert f"The campaign scheduler (pid: {first}) exited with" in log.read_text()
        second = scheduler_pids()[1]
        assert wait_for(lambda: log.read_text().count("leading (alone)") == 2, 15)
        os.kill(server.pid, signal.SIGKILL)  # the master only: no chance to stop anything
        assert wait_for(lambda: not alive(second), 5), "the scheduler outlived its server"
        assert "the server is gone; stopping" in log.read_text()
    finally:
        try:  # the workers and any scheduler still in the server's process group
            os.killpg(server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        server.wait(10)
