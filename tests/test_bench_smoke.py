"""The rule-evaluation benchmark (bench/evaluate.py) works, and its floor is the same rules.

Tiny sizes, in-process, no timing assertions: the figures live in docs/performance.md.
What is asserted is that the hand-written floor and the engine grant the same rewards for
the same events, so the benchmark compares equal work.
"""
from __future__ import annotations

import random
from decimal import Decimal

import pytest

from bench.evaluate_crosscheck import Mismatch, Totals, compile_engine, cross_check, engine_outcome
from bench.evaluate_data import (SCALING_CANDIDATES, make_campaigns, make_events, make_merchants,
                                 make_scaling_campaigns)
from bench.evaluate_floor import Floor
from promo_engine.core.campaign_type import UserState

from conftest import bench_admin_url, bench_script


@pytest.fixture(scope="module")
def bench():
    with bench_script("evaluate") as module:
        yield module


def totals_of_both(bench, campaigns, events):
    """Reward totals from the engine and from the floor, each on its own."""
    engine = compile_engine(campaigns)
    floor = Floor(campaigns)
    user = UserState(user_id="u_test")
    from_engine, from_floor = Totals(), Totals()
    for event in events:
        from_engine.add(engine_outcome(engine.evaluate(event, user)))
        from_floor.add(floor.evaluate(event))
    return from_engine, from_floor


def test_benchmark_runs_with_tiny_sizes(bench, capsys):
    status = bench.main(["--events", "300", "--repeat", "1", "--sizes", "10,60",
                         "--scaling-sizes", "10,41", "--no-pin"])
    out = capsys.readouterr().out
    assert status == 0
    assert "engine/floor" in out
    assert "identical rewards" in out
    for size in ("10", "60", "41"):
        assert any(line.split()[:1] == [size] for line in out.splitlines()), size


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("size", [10, 300])
def test_floor_and_engine_give_identical_reward_totals(bench, seed, size):
    rng = random.Random(seed)
    merchants = make_merchants(50, rng)
    campaigns = make_campaigns(size, merchants, rng)
    events = make_events(600, merchants, random.Random(seed + 1))
    from_engine, from_floor = totals_of_both(bench, campaigns, events)
    assert from_engine == from_floor
    assert from_engine.points > 0 and from_engine.grants > 0


@pytest.mark.parametrize("seed", [4, 5, 6, 7])
def test_floor_and_engine_agree_with_many_exclusive_campaigns(bench, seed):
    # Exclusive discounts and multipliers among stacked ones: the order rules at work.
    rng = random.Random(seed)
    merchants = make_merchants(20, rng)
    campaigns = make_campaigns(200, merchants, rng, exclusive_share=0.3)
    events = make_events(800, merchants, random.Random(seed + 1))
    from_engine, from_floor = totals_of_both(bench, campaigns, events)
    assert from_engine == from_floor
    assert from_engine.discount > Decimal(0)
    # and per event, not only in total
    engine = compile_engine(campaigns)
    cross_check(engine, Floor(campaigns), events, UserState(user_id="u_test"))


@pytest.mark.parametrize("size", [10, 41])
def test_constant_candidates_setup_has_five_per_event(bench, size):
    campaigns, merchants = make_scaling_campaigns(size)
    events = make_events(200, merchants, random.Random(9))
    engine = compile_engine(campaigns)
    assert len(campaigns) == size
    assert {len(engine.candidates(e)) for e in events} == {SCALING_CANDIDATES}
    from_engine, from_floor = totals_of_both(bench, campaigns, events)
    assert from_engine == from_floor


def test_cross_check_catches_a_floor_that_differs(bench):
    rng = random.Random(8)
    merchants = make_merchants(20, rng)
    campaigns = make_campaigns(100, merchants, rng)
    events = make_events(300, merchants, random.Random(9))

    class LosesLastReward(Floor):
        def evaluate(self, event):
            base, grants = super().evaluate(event)
            return base, grants[:-1]

    with pytest.raises(Mismatch):
        cross_check(compile_engine(campaigns), LosesLastReward(campaigns), events,
                    UserState(user_id="u_test"))


# -- points expiry at a month-end (bench/expiry.py) and redemptions (bench/record.py) ----------
# These need PostgreSQL (and record.py Redis): each makes and drops a database of its own.

@pytest.mark.services
def test_expiry_sweeps_every_lot_once_and_checks_the_ledger(tmp_path):
    import subprocess
    import sys
    from conftest import BENCH_DIR
    done = subprocess.run(
        [sys.executable, str(BENCH_DIR / "expiry.py"), "--lots", "3000", "--users", "700",
         "--batch", "1000", "--pg-admin-url", bench_admin_url()],
        cwd=tmp_path, capture_output=True, text=True, timeout=180)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "LEDGER MISMATCH" not in done.stderr, done.stderr
    assert "loaded 3,000 lots" in out

    def seconds(label: str) -> float:
        lines = [line for line in out.splitlines() if line.strip().startswith(label)]
        assert len(lines) == 1, out
        return float(lines[0].split(label, 1)[1].split()[0])

    assert seconds("floor: 4 statements, 1 commit, no locks") > 0
    assert seconds("sweep_points") > 0
    assert "floor / sweep (time)" in out
    # 3 batches of 1,000, the 4th finds none; the maturing pass before them finds none.
    assert "sweep: 3,000 lots expired, 0 matured, in 5 transactions" in out, out
    assert "second sweep right after: 0 expired, 0 matured" in out
    assert "target: every lot expired within 60 s of midnight:" in out
    assert "Ledger: 3,000 expiry entries and 3,000 moves for 3,000 lots;" in out
    assert " 0 lots and 0 users hold points" in out
    assert ("Every lot expired exactly once, in order, and every balance is exact "
            "(and on the floor's copy).") in out
    assert "dropped (and its copy)." in out


@pytest.mark.services
def test_the_ledger_check_of_the_points_benchmarks_finds_a_wrong_balance():
    """points_lots.verify, which both benchmarks trust, is not satisfied by anything."""
    import uuid
    from datetime import datetime, timezone

    import psycopg

    from bench import points_lots
    from promo_engine.ledger.schema import upgrade
    admin_url = bench_admin_url()
    name = f"promo_test_points_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = admin_url.rsplit("/", 1)[0] + "/" + name
    try:
        upgrade(dsn.replace("postgresql://", "postgresql+psycopg://", 1))
        with psycopg.connect(dsn) as conn:
            earned = datetime(2026, 1, 1, tzinfo=timezone.utc)
            points_lots.load(conn, points_lots.Lots(prefix="v_", users=50, lots=200,
                                                    earned_at=earned, expires_at=None))
            conn.commit()
            assert set(points_lots.verify(conn).values()) == {0}
            assert conn.execute("SELECT sum(points_balance) FROM users").fetchone()[0] == \
                conn.execute("SELECT sum(points) FROM rewards").fetchone()[0]
            conn.execute("UPDATE users SET points_balance = points_balance + 1"
                         " WHERE user_id = (SELECT min(user_id) FROM points_lots)")
            broken = points_lots.verify(conn)
        assert broken["users whose balances disagree with their lots"] == 1, broken
        assert broken["users whose points_balance + pending_points is not the sum of their "
                      "points rows"] == 1, broken
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.services
def test_record_times_redemptions_against_payments(tmp_path):
    """bench/record.py --quick: burns recorded and timed beside the payments, and checked."""
    import subprocess
    import sys

    from conftest import BENCH_DIR, bench_services
    from bench.load_setup import REDIS_URL
    admin_url, redis_url = bench_services(REDIS_URL)
    done = subprocess.run(
        [sys.executable, str(BENCH_DIR / "record.py"), "--quick", "--pg-admin-url",
         admin_url, "--redis-url", redis_url],
        cwd=tmp_path, capture_output=True, text=True, timeout=150)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    medians = {line.split(":")[0].strip(): float(line.split()[-3]) for line in out.splitlines()
               if line.strip().startswith(("events: record_event_body",
                                           "redemptions: record_event_body"))}
    assert set(medians) == {"events", "redemptions"} and min(medians.values()) > 0, out
    verdicts = [line for line in out.splitlines()
                if line.strip().startswith("redemptions / events (medians)")]
    assert len(verdicts) == 1 and verdicts[0].rstrip().endswith(("met)", "MISSED)")), out
    assert "Where a redemption's CPU goes" in out
    assert "points drawn from the lots, moves added" in out
    # 10 burns to warm up, 2 rounds of 50 and the stepped round.
    assert ("Redemptions: 160 stored, 160 answered 201; every user's points balance matches "
            "its lots and its rows.") in out, out
    assert "Ledger: 170 events stored, 170 answered 201." in out


@pytest.mark.parametrize("engine_us, floor_us, against_floor, met", [
    ((5.0, 8.0), (3.5, 5.6), True, True),     # 1.60x against the floor's 1.60x
    ((5.0, 8.9), (3.5, 5.6), True, False),    # 1.78x against 1.60x: over 1.1 times it
    ((5.0, 5.9), (3.5, 3.5), False, True),    # 1.18x, the floor aside
    ((5.0, 6.1), (3.5, 3.5), False, False),   # 1.22x
])
def test_the_scaling_verdicts(engine_us, floor_us, against_floor, met, capsys):
    """Over every merchant the engine's growth is held to 1.1x the floor's (the cache
    misses both pay); over the same merchants to 1.2x, whatever the floor does."""
    from bench.evaluate_report import print_scaling
    from bench.evaluate_timing import SizeResult
    results = [SizeResult(size, 2, 5.0, 2.45, 1e6 / engine, 1e6 / floor, None)
               for size, engine, floor in zip((10, 10_000), engine_us, floor_us)]
    assert print_scaling(results, "spread", against_floor=against_floor) is met
    verdict = capsys.readouterr().out.splitlines()[-1]
    assert verdict.endswith("met)" if met else "MISSED)"), verdict
