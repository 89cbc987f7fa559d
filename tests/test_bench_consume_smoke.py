"""`bench/consume.py --quick` runs end to end: its own PostgreSQL database and Redis prefix,
the HTTP side (`promo-engine serve --workers 1`, primed, a warm-up and a peak phase), then a
stream of 2,000 payments drained by one `promo-engine consume` process, and the database
dropped. No timing is asserted (the figures live in docs/performance.md): only that it exits
0 with every request and message accounted for (its own ledger check), and that it ends
with the line the issue asks for.
"""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import BENCH_DIR, bench_script, bench_services

pytestmark = [pytest.mark.slow, pytest.mark.services]

BENCH = BENCH_DIR / "consume.py"
TIMEOUT = 240  # s; the run itself takes about 35 s
LAST_LINE = re.compile(r"consume events/s: (\d+); HTTP events/s: (\d+); consume / HTTP: "
                       r"(\d+\.\d\d)")


@pytest.fixture(scope="module")
def bench():
    with bench_script("consume") as module:
        yield module


@pytest.fixture
def services(bench):
    """(libpq admin URL, Redis URL) for the benchmark; skips (or fails in CI) without them."""
    return bench_services(bench.REDIS_URL)


def test_quick_run_ends_with_the_ratio_line_and_no_errors(services, tmp_path):
    admin_url, redis_url = services
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--pg-admin-url", admin_url,
         "--redis-url", redis_url],
        cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT)
    out, err = done.stdout, done.stderr
    assert done.returncode == 0, out + err
    assert "ERROR" not in err, err
    lines = out.strip().splitlines()
    assert any(line.startswith("round 1 HTTP, 1 worker(s): ") for line in lines), out
    assert any(line.startswith("round 1 stream, 1 consumer(s): ") and "(2,000 messages" in line
               for line in lines), out
    match = LAST_LINE.fullmatch(lines[-1])
    assert match, lines[-1]
    consume, http, ratio = int(match[1]), int(match[2]), float(match[3])
    assert consume > 0 and http > 0
    assert abs(ratio - consume / http) < 0.05 + 0.01 * ratio
