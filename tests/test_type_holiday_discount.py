"""holiday_discount: `percent` (0-100, optional `max_discount`) or `amount_off`, on payments."""
from __future__ import annotations

from decimal import Decimal

import pytest

from promo_engine.core.rewards import DISCOUNT, POINTS

from factories import (activation, builtin_registry, discount, load_params, make_engine, make_user,
                       params_errors, payment, refund, rewards)

TYPE = "holiday_discount"


def discount_on(amount: str, **params) -> list:
    """The rewards of one holiday_discount campaign `d` on a payment of `amount`."""
    decision = make_engine(discount("d", **params), points_per_unit="0").evaluate(
        payment(amount), make_user())
    return rewards(decision)


# --- params ---------------------------------------------------------------------------------

def test_percent_loads_as_an_exact_decimal():
    assert load_params(TYPE, {"percent": 15}) == {"percent": Decimal("15")}


def test_percent_from_a_yaml_float_keeps_its_shortest_text():
    loaded = load_params(TYPE, {"percent": 12.1})
    assert loaded["percent"] == Decimal("12.1")
    assert str(loaded["percent"]) == "12.1"


def test_percent_may_be_written_as_a_string():
    assert load_params(TYPE, {"percent": "12.5"}) == {"percent": Decimal("12.5")}


def test_percent_with_max_discount_loads_money_as_decimal():
    loaded = load_params(TYPE, {"percent": 15, "max_discount": "30.00"})
    assert loaded == {"percent": Decimal("15"), "max_discount": Decimal("30.00")}
    assert str(loaded["max_discount"]) == "30.00"


def test_max_discount_as_a_whole_number_loads_with_minor_digits():
    loaded = load_params(TYPE, {"percent": 15, "max_discount": 30})
    assert str(loaded["max_discount"]) == "30.00"


def test_amount_off_loads_as_decimal_money():
    loaded = load_params(TYPE, {"amount_off": "20.5"})
    assert str(loaded["amount_off"]) == "20.50"


@pytest.mark.parametrize("percent", [0, 100, "0.01", "99.99"])
def test_percent_accepts_the_edges_of_its_range(percent):
    assert params_errors(TYPE, {"percent": percent}) == {}


@pytest.mark.parametrize("percent", [-1, "-0.01", "100.01", 101])
def test_percent_outside_0_to_100_is_refused(percent):
    assert params_errors(TYPE, {"percent": percent}) == {"percent": ["must be between 0 and 100"]}


def test_percent_with_more_than_two_decimals_is_refused():
    assert params_errors(TYPE, {"percent": "12.345"}) == {"percent": ["at most 2 decimal places"]}


@pytest.mark.parametrize("percent", ["abc", True, False, [15], {"value": 15}, ""])
def test_percent_that_is_not_a_number_is_refused(percent):
    assert params_errors(TYPE, {"percent": percent}) == {"percent": ["must be a number"]}


@pytest.mark.parametrize("percent", ["NaN", "Infinity", "-Infinity"])
def test_percent_that_is_not_finite_is_refused(percent):
    assert params_errors(TYPE, {"percent": percent}) == {"percent": ["must be a finite number"]}


def test_percent_and_amount_off_together_are_refused():
    assert params_errors(TYPE, {"percent": 10, "amount_off": "5.00"}) == \
        {"percent": ["give exactly one of percent or amount_off"]}


def test_neither_percent_nor_amount_off_is_refused():
    assert params_errors(TYPE, {}) == {"percent": ["give exactly one of percent or amount_off"]}


def test_max_discount_without_percent_is_refused():
    assert params_errors(TYPE, {"amount_off": "5.00", "max_discount": "3.00"}) == \
        {"max_discount": ["max_discount goes with percent"]}


@pytest.mark.parametrize("field", ["amount_off", "max_discount"])
def test_money_written_as_a_float_is_refused(field):
    params = {"percent": 10} if field == "max_discount" else {}
    params[field] = 5.5
    assert params_errors(TYPE, params) == \
        {field: ['write money as a quoted string, e.g. "30.00"']}


@pytest.mark.parametrize("field", ["amount_off", "max_discount"])
def test_money_with_more_than_the_currency_minor_digits_is_refused(field):
    params = {"percent": 10} if field == "max_discount" else {}
    params[field] = "5.005"
    assert params_errors(TYPE, params) == {field: ["at most 2 decimal places for CNY"]}


def test_money_is_checked_against_the_program_currency():
    assert params_errors(TYPE, {"amount_off": "500.5"}, currency="JPY") == \
        {"amount_off": ["at most 0 decimal places for JPY"]}


@pytest.mark.parametrize("value", ["0", "0.00", "-5.00"])
def test_amount_off_must_be_greater_than_zero(value):
    assert params_errors(TYPE, {"amount_off": value}) == {"amount_off": ["must be greater than 0"]}


@pytest.mark.parametrize("value", ["abc", "1e3", "", " 5.00", "5,00"])
def test_amount_off_that_is_not_a_decimal_string_is_refused(value):
    assert params_errors(TYPE, {"amount_off": value}) == \
        {"amount_off": ['must be a decimal string such as "12.50"']}


def test_amount_off_written_as_a_boolean_is_refused():
    assert params_errors(TYPE, {"amount_off": True}) == \
        {"amount_off": ['write money as a quoted string, e.g. "30.00"']}


def test_unknown_param_is_refused():
    assert params_errors(TYPE, {"percent": 10, "percentage": 10}) == \
        {"percentage": ["Unknown field."]}


# --- type metadata ---------------------------------------------------------------------------

def test_triggers_on_payments_only():
    campaign_type = builtin_registry().campaign_type(TYPE)
    assert campaign_type.triggers(load_params(TYPE, {"percent": 10})) == frozenset({"payment"})


def test_reward_unit_is_money():
    campaign_type = builtin_registry().campaign_type(TYPE)
    assert campaign_type.reward_unit(load_params(TYPE, {"amount_off": "5.00"})) == "money"


@pytest.mark.parametrize("params, text", [
    ({"percent": 15, "max_discount": "30"}, "15% off, at most 30.00 CNY"),
    ({"percent": "12.50"}, "12.5% off"),
    ({"percent": 10}, "10% off"),
    ({"amount_off": "20"}, "20.00 CNY off"),
])
def test_summary_describes_the_discount(params, text):
    campaign_type = builtin_registry().campaign_type(TYPE)
    assert campaign_type.summary(load_params(TYPE, params), "CNY") == text


# --- reward ---------------------------------------------------------------------------------

def test_percent_of_the_payment():
    assert discount_on("100.00", percent=15) == [("d", DISCOUNT, "15.00")]


def test_percent_rounds_half_up_to_the_minor_unit():
    assert discount_on("33.33", percent=15) == [("d", DISCOUNT, "5.00")]  # 4.9995


def test_percent_rounds_a_half_cent_up():
    assert discount_on("0.10", percent=15) == [("d", DISCOUNT, "0.02")]  # 0.015


def test_fractional_percent_rounds_a_half_cent_up():
    assert discount_on("0.04", percent="12.5") == [("d", DISCOUNT, "0.01")]  # 0.005


def test_percent_rounds_below_half_a_cent_down():
    assert discount_on("10.33", percent="1.5") == [("d", DISCOUNT, "0.15")]  # 0.15495


def test_percent_that_rounds_to_zero_grants_nothing():
    assert discount_on("0.03", percent=15) == []  # 0.0045


def test_zero_percent_grants_nothing():
    assert discount_on("100.00", percent=0) == []


def test_hundred_percent_is_the_whole_payment():
    assert discount_on("123.45", percent=100) == [("d", DISCOUNT, "123.45")]


def test_percent_is_capped_at_max_discount():
    assert discount_on("300.00", percent=15, max_discount="30.00") == [("d", DISCOUNT, "30.00")]


def test_percent_equal_to_max_discount_is_granted_in_full():
    assert discount_on("200.00", percent=15, max_discount="30.00") == [("d", DISCOUNT, "30.00")]


def test_percent_below_max_discount_is_not_raised_to_it():
    assert discount_on("100.00", percent=15, max_discount="30.00") == [("d", DISCOUNT, "15.00")]


def test_amount_off_is_granted_in_full_on_a_larger_payment():
    assert discount_on("100.00", amount_off="20.00") == [("d", DISCOUNT, "20.00")]


def test_amount_off_equal_to_the_payment_is_the_whole_payment():
    assert discount_on("20.00", amount_off="20.00") == [("d", DISCOUNT, "20.00")]


def test_amount_off_larger_than_the_payment_is_capped_at_the_payment():
    assert discount_on("12.34", amount_off="50.00") == [("d", DISCOUNT, "12.34")]


def test_discount_is_in_the_campaign_currency():
    decision = make_engine(discount("d", percent=10)).evaluate(payment(), make_user())
    assert decision.grants[1].reward.currency == "CNY"


def test_discount_is_not_a_stacking_group_member():
    decision = make_engine(discount("d", percent=10)).evaluate(payment(), make_user())
    assert decision.grants[1].reward.stacking_group is None


def test_discount_does_not_apply_to_an_activation():
    assert make_engine(discount("d", percent=10)).evaluate(activation(), make_user()).grants == ()


def test_discount_does_not_apply_to_a_refund():
    decision = make_engine(discount("d", percent=10)).evaluate(refund(), make_user())
    assert decision.grants == ()


def test_discount_comes_after_base_points():
    decision = make_engine(discount("d", percent=10)).evaluate(payment("88.80"), make_user())
    assert rewards(decision) == [(None, POINTS, 88), ("d", DISCOUNT, "8.88")]
