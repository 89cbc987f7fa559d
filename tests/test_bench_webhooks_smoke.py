"""The webhooks benchmark (bench/webhooks.py) runs end to end in its smoke mode.

`--quick` records events in-process with and without an endpoint (part 1), then starts
`promo-engine serve --workers 1`, a local receiver and one `promo-engine webhooks run`,
drives the server for a few seconds and waits for the backlog to drain (part 2), each part
on a PostgreSQL database of its own that it drops. No timing is asserted (these are the
figures of a shared machine): only that it exits 0, prints its ratios and verdict, and that
its own checks passed: one delivery per reward, all delivered once with valid signatures.
"""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import BENCH_DIR, bench_script, bench_services

pytestmark = [pytest.mark.slow, pytest.mark.services]

BENCH = BENCH_DIR / "webhooks.py"
TIMEOUT = 150  # s; the run itself takes 15-30 s


@pytest.fixture(scope="module")
def bench():
    with bench_script("webhooks") as module:
        yield module


@pytest.fixture
def services(bench):
    """(libpq admin URL, Redis URL) for the benchmark; skips (or fails in CI) without them."""
    return bench_services(bench.REDIS_URL)


def test_quick_run_prints_the_ratios_and_passes_its_checks(services, tmp_path):
    admin_url, redis_url = services
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--pg-admin-url", admin_url,
         "--redis-url", redis_url],
        cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT)
    out, err = done.stdout, done.stderr
    assert done.returncode == 0, out + err
    assert "CHECKS FAILED" not in err, out + err

    # Part 1: the ratios on / off, and the outbox of exactly the events with an endpoint:
    # 20 campaigns readied with one event each, 2 rounds of 50 without and with the
    # endpoint, and one stepped round of each; two rewards (so deliveries) per payment.
    assert re.search(r"^webhooks on / off per event: CPU \d+\.\d\d, wall \d+\.\d\d "
                     r"\(target <= 1\.10\)$", out, re.MULTILINE), out
    assert ("Outbox: 150 events written with the endpoint, 300 rewards, 300 deliveries "
            "(one per reward); 170 events written without one, none for them.") in out
    assert "Ledger: 320 events stored, 320 answered 201." in out

    # Part 2: the series, the ratio, the verdict (either way: no timing is asserted).
    assert re.search(r"^dispatcher deliveries/s / deliveries written per s: \d+\.\d\d ",
                     out, re.MULTILINE), out
    assert re.search(r"^verdict: lag (flat|NOT flat) ", out, re.MULTILINE), out
    assert "Drain: " in out and "NOT drained" not in out
    assert re.search(r"Receiver: ([\d,]+) requests, \1 distinct webhook ids, [\d,]+ "
                     r"signatures verified, 0 refused\. Dispatcher exit status 0\.", out), out
    assert "one per reward, statuses delivered " in out
    assert ("Checks passed: every event answered 201 and stored, one delivery per reward, "
            "all delivered once with valid signatures.") in out
    assert out.count("dropped;") == 2
