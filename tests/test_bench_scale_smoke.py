"""docs/scaling.md's sub-budgets, against a real Redis, and `bench/scale.py` end to end.

The claims tested: a campaign's budget split into sub-budgets (bench/scale_budget.py)
never grants more than its total, whatever concurrent processes do; with unit costs it
grants exactly the total (the last unit is found wherever it sits); quota is neither lost
nor made by the moves between sub-budgets, and a move cut short by a dead process is
finished by `recover` exactly once; every script touches the keys of one Redis Cluster slot.
"""
from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import uuid

import pytest
import redis
from conftest import BENCH_DIR, service_missing
from redis.crc import key_slot

from bench import scale_budget as sb

pytestmark = [pytest.mark.services]

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def client():
    c = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=5)
    try:
        c.ping()
    except redis.RedisError as exc:
        service_missing("Redis", exc)
    yield c
    c.close()


@pytest.fixture
def prefix(client):
    name = "t-scale-" + uuid.uuid4().hex[:10]  # no braces: each sub-budget's tag is its slot
    yield name
    keys = list(client.scan_iter(match=f"{name}*", count=1000))
    if keys:
        client.delete(*keys)


def run_processes(prefix: str, n: int, budget: int, costs: list[int], processes: int):
    """`processes` spawned processes reserving until refused; their (granted, grants) and
    the split's totals afterwards."""
    client = redis.Redis.from_url(REDIS_URL)
    split = sb.SplitBudget([client], "c1", n, prefix=prefix)
    split.create(budget)
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=sb.grant_until_refused,
                         args=(REDIS_URL, "c1", n, costs, 100 + i, prefix, out))
             for i in range(processes)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    errors = [r for r in results if r[0] != "ok"]
    assert not errors, errors
    return results, split


def test_unit_costs_grant_exactly_the_budget_across_processes(prefix):
    results, split = run_processes(prefix, n=4, budget=3000, costs=[1], processes=4)
    granted = sum(r[1] for r in results)
    assert granted == 3000
    assert sum(r[2] for r in results) == 3000
    assert split.totals() == (3000, 3000)  # every quota spent, none lost or made
    assert all(q == s and transit == 0 for q, s, _, transit in split.collect())
    assert sum(r[3] for r in results) == 0  # no request gave up without an answer
    assert sum(r[4] for r in results) > 0  # the last units were moved between sub-budgets


def test_mixed_costs_never_exceed_the_budget(prefix):
    costs = [1, 2, 3, 5, 8]
    results, split = run_processes(prefix, n=4, budget=2001, costs=costs, processes=4)
    granted = sum(r[1] for r in results)
    quota, spent = split.totals()
    assert quota == 2001
    assert spent == granted
    # Refused only when the whole campaign had less than the cost left: what is left is
    # less than the largest cost.
    assert 2001 - max(costs) < granted <= 2001
    for q, s, _, transit in split.collect():
        assert s <= q and transit == 0
    assert sum(r[3] for r in results) == 0
    assert sum(r[4] for r in results) > 0


def test_last_unit_in_another_sub_budget_is_found(client, prefix):
    split = sb.SplitBudget([client], "c2", 4, prefix=prefix)
    split.create(4)  # one unit in each
    homes = [split.reserve(1, home=0) for _ in range(4)]
    assert all(h is not None for h in homes)  # three of them came from the others
    assert split.reserve(1, home=0) is None
    assert split.totals() == (4, 4)


def test_a_cost_larger_than_any_sub_budget_gathers_from_several(client, prefix):
    split = sb.SplitBudget([client], "c3", 4, prefix=prefix)
    split.create(40)  # 10 each
    assert split.reserve(35, home=2) is not None
    assert split.reserve(6, home=1) is None  # 5 left
    assert split.reserve(5, home=3) is not None
    assert split.totals() == (40, 40)


def test_a_transfer_cut_short_is_under_spending_until_recovered_once(client, prefix):
    split = sb.SplitBudget([client], "c4", 2, prefix=prefix)
    split.create(10)
    given = split.give_only(donor=0, to=1, need=3)  # the process dies after GIVE
    assert given == 3
    assert split.totals() == (7, 0)  # quota in transit: counted nowhere, so never granted
    # 7 left plus 3 in transit could hold 8: neither granted nor refused, but "try again"
    # (a 503) until the transfer is finished; 11 is refused at once.
    with pytest.raises(sb.Exhausted):
        split.reserve(8, home=1)
    assert split.reserve(11, home=1) is None
    assert split.recover() == 1
    assert split.recover() == 0  # done once
    assert split.totals() == (10, 0)
    assert split.reserve(8, home=1) is not None


def test_a_rolled_back_reservation_gives_its_cost_back(client, prefix):
    split = sb.SplitBudget([client], "c5", 2, prefix=prefix)
    split.create(2)
    a = split.reserve(2, home=0)
    assert split.reserve(1, home=1) is None
    split.release(*a)
    split.release(*a)  # only once
    assert split.reserve(2, home=1) is not None
    assert split.totals() == (2, 2)


def test_each_sub_budget_is_one_cluster_slot_and_they_spread():
    slots = []
    for k in range(8):
        keys = sb.SubKeys.of("summer-cashback", k)
        assert len({key_slot(key.encode()) for key in keys.all()}) == 1
        slots.append(key_slot(keys.budget.encode()))
    assert len(set(slots)) == 8


def test_bench_scale_quick_runs(client, tmp_path):
    done = subprocess.run(
        [sys.executable, str(BENCH_DIR / "scale.py"), "--quick", "--redis-url", REDIS_URL],
        cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "today's scripts, one key" in out and "sub-budgets, one server" in out
    assert "simulated throughput at 1/2/4/8/16 workers, one key, as ratios to 1 worker: 1.00" in out
    assert not list(client.scan_iter(match="*bench-scale-*", count=1000))  # cleaned up
