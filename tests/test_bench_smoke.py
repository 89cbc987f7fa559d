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

from conftest import bench_script


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
