"""The ZEN comparison (bench/zen.py) works and compares equal work: tiny sizes, no timing
assertions (the figures live in docs/performance.md). zen-engine is in the test extra as
well as the benchmark-only `bench` extra: the promo-engine package never imports it."""
from __future__ import annotations

import random
from dataclasses import replace
from decimal import Decimal

import pytest

from promo_engine.core.campaign import Conditions
from promo_engine.core.campaign_type import UserState

from bench.evaluate_data import Merchant, campaign, make_events, money
from conftest import bench_script


@pytest.fixture(scope="module")
def bench():
    with bench_script("zen") as module:
        yield module


def test_every_event_gets_the_same_winner_and_discount_from_both(bench):
    for total in (10, 300):
        size = bench.prepare(total, 400, seed=7)  # raises Mismatch on any difference
        assert 0 < size.hits <= 400


def test_ties_round_half_up_in_both_and_a_cap_and_a_minimum_hold(bench):
    campaigns = [
        campaign("high", {"percent": Decimal("12.5"), "max_discount": money("10")},
                 merchants=["m_1"], conditions=Conditions(min_amount=money("50")),
                 priority=2, exclusive=True),
        campaign("low", {"percent": Decimal("12.5")}, merchants=["m_1"], priority=1,
                 exclusive=True)]
    engine, (zen, keys) = bench.our_engine(campaigns), bench.zen_engine(campaigns)
    merchant = Merchant("m_1", "5812", "Asia/Shanghai")
    event = make_events(1, [merchant], random.Random(1))[0]
    for amount, expected in (("1.00", ("low", Decimal("0.13"))),  # 0.125 -> 0.13
                             ("60.00", ("high", Decimal("7.50"))),
                             ("500.00", ("high", Decimal("10.00")))):
        event = replace(event, amount=Decimal(amount))
        context = f'{{"amount": {amount}}}'.encode()
        assert bench.ours_outcome(engine, event, UserState(user_id="u_test")) == expected
        assert bench.zen_outcome(zen, keys, "m_1", context) == expected


def test_the_command_runs(bench, capsys):
    assert bench.main(["--events", "200", "--repeat", "1", "--sizes", "10,300",
                       "--no-pin"]) == 0
    out = capsys.readouterr().out
    assert "promo-engine/ZEN" in out
    assert "same winner and discount for every event" in out
