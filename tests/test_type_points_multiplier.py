"""points_multiplier: a payment earns `multiplier` x its base points in total."""
from __future__ import annotations

from decimal import Decimal

import pytest

from promo_engine.core.rewards import POINTS

from factories import (activation, builtin_registry, load_params, make_engine, make_user,
                       multiplier, params_errors, payment, refund, rewards)

TYPE = "points_multiplier"


def points_on(amount: str, value, points_per_unit: str = "1") -> list:
    engine = make_engine(multiplier("m", value), points_per_unit=points_per_unit)
    return rewards(engine.evaluate(payment(amount), make_user()))


# --- params ---------------------------------------------------------------------------------

def test_multiplier_loads_as_an_exact_decimal():
    assert load_params(TYPE, {"multiplier": 2}) == {"multiplier": Decimal("2")}


def test_multiplier_from_a_yaml_float_keeps_its_shortest_text():
    loaded = load_params(TYPE, {"multiplier": 1.1})
    assert str(loaded["multiplier"]) == "1.1"


def test_multiplier_may_be_written_as_a_string():
    assert load_params(TYPE, {"multiplier": "1.25"}) == {"multiplier": Decimal("1.25")}


@pytest.mark.parametrize("value", ["1.01", 100, "100.00", "2.5"])
def test_multiplier_accepts_values_above_one_up_to_100(value):
    assert params_errors(TYPE, {"multiplier": value}) == {}


@pytest.mark.parametrize("value", [1, "1.00", "0.5", 0, -2])
def test_multiplier_of_one_or_less_is_refused(value):
    assert params_errors(TYPE, {"multiplier": value}) == {"multiplier": ["must be greater than 1"]}


@pytest.mark.parametrize("value", ["100.01", 1000])
def test_multiplier_over_100_is_refused(value):
    assert params_errors(TYPE, {"multiplier": value}) == {"multiplier": ["must be at most 100"]}


def test_multiplier_with_more_than_two_decimals_is_refused():
    assert params_errors(TYPE, {"multiplier": "1.005"}) == \
        {"multiplier": ["at most 2 decimal places"]}


@pytest.mark.parametrize("value", ["double", True, [2], ""])
def test_multiplier_that_is_not_a_number_is_refused(value):
    assert params_errors(TYPE, {"multiplier": value}) == {"multiplier": ["must be a number"]}


def test_multiplier_that_is_not_finite_is_refused():
    assert params_errors(TYPE, {"multiplier": "Infinity"}) == \
        {"multiplier": ["must be a finite number"]}


def test_multiplier_is_required():
    assert params_errors(TYPE, {}) == {"multiplier": ["Missing data for required field."]}


def test_unknown_param_is_refused():
    assert params_errors(TYPE, {"multiplier": 2, "cap": 500}) == {"cap": ["Unknown field."]}


# --- type metadata ---------------------------------------------------------------------------

def test_triggers_on_payments_only():
    campaign_type = builtin_registry().campaign_type(TYPE)
    assert campaign_type.triggers(load_params(TYPE, {"multiplier": 2})) == frozenset({"payment"})


def test_reward_unit_is_points():
    campaign_type = builtin_registry().campaign_type(TYPE)
    assert campaign_type.reward_unit(load_params(TYPE, {"multiplier": 2})) == "points"


@pytest.mark.parametrize("value, text", [(2, "2x points"), ("1.50", "1.5x points"),
                                         ("10", "10x points"), ("1.25", "1.25x points")])
def test_summary_describes_the_multiplier(value, text):
    campaign_type = builtin_registry().campaign_type(TYPE)
    assert campaign_type.summary(load_params(TYPE, {"multiplier": value}), "CNY") == text


# --- reward ---------------------------------------------------------------------------------

def test_double_points_grants_the_base_again():
    assert points_on("100.00", 2) == [(None, POINTS, 100), ("m", POINTS, 100)]


def test_extra_points_make_the_total_multiplier_times_base():
    decision = make_engine(multiplier("m", 3)).evaluate(payment("250.00"), make_user())
    assert decision.points == 750


def test_extra_points_are_floor_of_base_times_multiplier_minus_base():
    # base 33; 33 x 1.5 = 49.5 -> 49; 49 - 33 = 16
    assert points_on("33.00", "1.5") == [(None, POINTS, 33), ("m", POINTS, 16)]


def test_extra_points_use_the_floored_base_not_the_amount():
    # base floor(99.99) = 99; 99 x 1.25 = 123.75 -> 123; 123 - 99 = 24
    assert points_on("99.99", "1.25") == [(None, POINTS, 99), ("m", POINTS, 24)]


def test_extra_points_follow_points_per_unit():
    # base floor(10.00 x 2) = 20; 20 x 1.5 = 30; 30 - 20 = 10
    assert points_on("10.00", "1.5", points_per_unit="2") == [(None, POINTS, 20), ("m", POINTS, 10)]


def test_multiplier_that_adds_less_than_one_point_grants_nothing():
    # base 50; 50 x 1.01 = 50.5 -> 50; no extra
    assert points_on("50.00", "1.01") == [(None, POINTS, 50)]


def test_multiplier_grants_nothing_when_base_points_are_off():
    assert points_on("100.00", 2, points_per_unit="0") == []


def test_multiplier_grants_nothing_on_a_payment_with_no_base_points():
    assert points_on("0.99", 5) == []


def test_large_multiplier_is_exact():
    # base 999999999; x 99.99 = 99989999900.01 -> floor 99989999900; minus base = 98989999901
    assert points_on("999999999.99", "99.99") == \
        [(None, POINTS, 999999999), ("m", POINTS, 98989999901)]


def test_reward_is_in_the_multiplier_stacking_group_ranked_by_multiplier():
    decision = make_engine(multiplier("m", "2.5")).evaluate(payment(), make_user())
    reward = decision.grants[1].reward
    assert (reward.stacking_group, reward.rank) == ("points_multiplier", Decimal("2.5"))


def test_several_multipliers_do_not_compound():
    engine = make_engine(multiplier("x2", 2), multiplier("x3", 3))
    decision = engine.evaluate(payment("100.00"), make_user())
    assert rewards(decision) == [(None, POINTS, 100), ("x3", POINTS, 200)]
    assert decision.points == 300


def test_multiplier_does_not_apply_to_an_activation():
    assert make_engine(multiplier("m", 2)).evaluate(activation(), make_user()).grants == ()


def test_multiplier_does_not_apply_to_a_refund():
    assert make_engine(multiplier("m", 2)).evaluate(refund(), make_user()).grants == ()
