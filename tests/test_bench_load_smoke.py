"""The PostgreSQL + Redis benchmarks run end to end in their smoke modes.

`bench/load.py --quick` makes its own PostgreSQL database, migrates it, creates a client,
applies campaigns, starts `promo-engine serve --workers 1` and the bare floor app under
gunicorn, drives every phase for a moment, and drops the database. `bench/record.py
--quick` records events in-process against the floor's write. No timing is asserted
(the figures live in docs/performance.md): only that they exit 0, print their tables, and
that every event was answered as expected, with the ledger holding exactly those events.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from bench.load_requests import check_response
from conftest import BENCH_DIR, bench_script, bench_services

pytestmark = [pytest.mark.slow, pytest.mark.services]

BENCH = BENCH_DIR / "load.py"
TIMEOUT = 150  # s; the run itself takes about 20 s


@pytest.fixture(scope="module")
def bench():
    with bench_script("load") as module:
        yield module


@pytest.fixture
def services(bench):
    """(libpq admin URL, Redis URL) for the benchmark; skips (or fails in CI) without them."""
    return bench_services(bench.REDIS_URL)


def test_quick_run_prints_the_tables_with_no_errors(services, tmp_path):
    admin_url, redis_url = services
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--pg-admin-url", admin_url,
         "--redis-url", redis_url],
        cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT)
    out, err = done.stdout, done.stderr
    assert done.returncode == 0, out + err
    assert "ERRORS" not in err and "LEDGER MISMATCH" not in err, out + err
    assert "errors in" not in err, err

    # The per-phase table: every phase of both servers, none with an error.
    rows = [line.split() for line in out.splitlines()
            if line.split()[:1] == ["1"] and len(line.split()) > 8
            and line.split()[1] in ("bare", "events")]
    phases = {(r[1], r[2], r[3]) for r in rows}
    assert {("bare", "-", "unloaded"), ("bare", "-", "peak"), ("bare", "-", "paced"),
            ("events", "spread", "unloaded"), ("events", "spread", "peak"),
            ("events", "hot", "peak"), ("events", "spread", "paced")} <= phases, out
    for row in rows:
        shift = 1 if row[3] == "paced" else 0  # "paced 123/s" is two words
        requests, errors = row[5 + shift], row[6 + shift]
        assert errors == "0" and int(requests.replace(",", "")) > 0, row

    # The summary against the bare endpoint and the targets, each with a verdict.
    assert "Against the bare endpoint of the same run" in out
    targets = [line for line in out.splitlines() if line.strip().startswith("N=1 ")
               and line.rstrip().endswith((" met", " MISSED", " n/a"))]
    assert len(targets) == 3, out
    assert "all succeeded" in out and "the database holds exactly the events answered 201" in out
    assert "dropped" in out


def test_a_wrong_answer_is_an_error():
    event_id, campaign = "e-1", "ldtag-spread-001"
    good = (b'{"event_id": "e-1", "rewards": [{"campaign_id": null, "kind": "points", '
            b'"points": 12}, {"campaign_id": "ldtag-spread-001", "kind": "discount", '
            b'"amount": "1.20", "currency": "CNY"}], "points_balance": 12}')
    assert check_response(201, good, event_id, campaign) is None
    assert check_response(503, b'{"error": {}}', event_id, campaign).startswith("status 503")
    assert check_response(200, good, event_id, campaign).startswith("status 200")
    assert "another event" in check_response(201, good, "e-2", campaign)
    assert "without the reward" in check_response(201, good, event_id, "ldtag-hot")
    assert "not JSON" in check_response(201, b"<html>", event_id, None)
    assert check_response(201, b'{"event_id": "e-1", "id": 7}', event_id, None) is None


def test_percentiles_are_nearest_rank(bench):
    phase = bench.Phase(1, "events", "spread", "unloaded", 1, 1.0,
                        latencies=[i / 1000 for i in range(1, 101)])
    assert phase.pct(50) == pytest.approx(50.0)
    assert phase.pct(99) == pytest.approx(99.0)
    assert phase.pct(100) == pytest.approx(100.0)


@pytest.mark.parametrize("extra", [[], ["--abuse-controls"]], ids=["plain", "abuse-controls"])
def test_record_quick_run_compares_with_the_floor_and_shows_the_steps(services, tmp_path,
                                                                     extra):
    """bench/record.py: the write path in one process against the floor's write (with
    `--abuse-controls`, every payment with a device and a risk policy in force)."""
    admin_url, redis_url = services
    done = subprocess.run(
        [sys.executable, str(BENCH_DIR / "record.py"), "--quick", "--pg-admin-url", admin_url,
         "--redis-url", redis_url, *extra],
        cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    medians = {line.split(":")[0].strip(): line.split()[-3] for line in out.splitlines()
               if line.strip().startswith(("floor: one INSERT", "events: record_event_body"))}
    assert set(medians) == {"floor", "events"}, out
    assert all(float(value) > 0 for value in medians.values()), out
    assert "floor / events (medians)" in out
    steps = {line.split(" ms  ")[1] for line in out.splitlines() if line.strip().endswith(
        ("(PostgreSQL)", "(Redis)", "validate the body", "evaluate the campaigns"))}
    # No replay lookup in Redis: on PostgreSQL it is part of the user's read.
    assert steps == {"lock the user, read counters (PostgreSQL)", "evaluate the campaigns",
                     "write and commit (PostgreSQL)", "reserve budget (Redis)",
                     "confirm the reservation (Redis)", "validate the body"}, out
    # 20 campaigns readied with one event each, then 2 rounds of 50 and the stepped round.
    assert "Ledger: 170 events stored, 170 answered 201." in out
    assert "dropped" in out
