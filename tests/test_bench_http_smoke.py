"""The HTTP API benchmark (bench/http_api.py) runs end to end with tiny numbers.

It starts a real `promo-engine serve --workers 1` on SQLite, so it is marked slow. No timing
is asserted (the figures live in docs/performance.md): only that every request it sent was
answered as expected (201 for every event) and that the ledger holds exactly those events.
"""
from __future__ import annotations

import sqlite3
from contextlib import closing

import pytest

from conftest import bench_script

pytestmark = pytest.mark.slow

REQUESTS = 30
CONCURRENCY = (1, 4)


@pytest.fixture(scope="module")
def bench():
    with bench_script("http_api") as module:
        yield module


def table_rows(out: str) -> dict[tuple[int, str], list[str]]:
    """(concurrency, endpoint) -> the row's columns after the endpoint."""
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) > 3 and parts[0].isdigit() and parts[1] in ("GET", "POST"):
            rows[(int(parts[0]), f"{parts[1]} {parts[2]}")] = parts[3:]
    return rows


def test_benchmark_runs_with_tiny_numbers(bench, tmp_path, capsys):
    status = bench.main(["--requests", str(REQUESTS),
                         "--concurrency", ",".join(map(str, CONCURRENCY)),
                         "--warmup", "0", "--workdir", str(tmp_path)])
    captured = capsys.readouterr()
    assert status == 0, captured.out + captured.err
    assert "ERRORS" not in captured.err and "MISMATCH" not in captured.err

    rows = table_rows(captured.out)
    assert set(rows) == {(c, e) for c in CONCURRENCY for e in bench.ENDPOINTS}
    for (concurrency, endpoint), columns in rows.items():
        requests, errors = int(columns[0].replace(",", "")), int(columns[1])
        assert (requests, errors) == (REQUESTS, 0), (concurrency, endpoint, columns)
    assert "events/s" in captured.out and "/ healthz" in captured.out
    assert "all succeeded" in captured.out

    # Every event was answered 201 (the benchmark checks each response) and the ledger, read
    # straight from the SQLite file, holds exactly those events and no others.
    events_sent = REQUESTS * len(CONCURRENCY)
    with closing(sqlite3.connect(tmp_path / "promo.db")) as conn:
        stored = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        distinct = conn.execute("SELECT count(DISTINCT event_id) FROM events").fetchone()[0]
        rewarded = conn.execute("SELECT count(DISTINCT event_pk) FROM rewards").fetchone()[0]
    assert stored == distinct == events_sent
    assert rewarded == events_sent  # base points at least, for every payment
    assert f"{events_sent:,} answered 201" in captured.out


def test_a_wrong_status_is_an_error(bench):
    # A driver that gets a wrong status counts an error rather than a success.
    assert bench.Driver._check(201, b"{}", expect=201) is None
    problem = bench.Driver._check(503, b'{"error": {"code": "unavailable"}}', expect=201)
    assert problem.startswith("status 503")


def test_percentiles_are_nearest_rank(bench):
    result = bench.PhaseResult(bench.EVENTS, 1, 1.0, [i / 1000 for i in range(1, 101)], 100)
    assert result.percentile(50) == pytest.approx(50.0)
    assert result.percentile(99) == pytest.approx(99.0)
    assert result.percentile(100) == pytest.approx(100.0)
    assert result.rate == 100
