"""first_activation_bonus: points, cashback or a voucher, once, on the user's first
activation (default) or, with `on: first_payment`, on the user's first payment ever.
"""
from __future__ import annotations

from decimal import Decimal

import pytest

from promo_engine.core.rewards import CASHBACK, DISCOUNT, POINTS, VOUCHER

from factories import (activation, bonus, builtin_registry, discount, load_params, make_engine,
                       new_user, params_errors, payment, refund, rewards)

TYPE = "first_activation_bonus"


# --- params ---------------------------------------------------------------------------------

def test_on_defaults_to_activation():
    assert load_params(TYPE, {"points": 100}) == {"on": "activation", "points": 100}


def test_on_first_payment_is_accepted():
    assert load_params(TYPE, {"on": "first_payment", "points": 100}) == \
        {"on": "first_payment", "points": 100}


def test_cashback_loads_as_decimal_money():
    loaded = load_params(TYPE, {"cashback": "10"})
    assert loaded == {"on": "activation", "cashback": Decimal("10.00")}
    assert str(loaded["cashback"]) == "10.00"


def test_cashback_as_a_whole_number_loads_with_minor_digits():
    assert str(load_params(TYPE, {"cashback": 10})["cashback"]) == "10.00"


def test_voucher_loads_amount_and_valid_days():
    loaded = load_params(TYPE, {"voucher": {"amount": "10.00", "valid_days": 30}})
    assert loaded == {"on": "activation",
                      "voucher": {"amount": Decimal("10.00"), "valid_days": 30}}


def test_voucher_loads_an_optional_min_amount_as_money():
    loaded = load_params(TYPE, {"voucher": {"amount": "10.00", "valid_days": 30,
                                            "min_amount": "50"}})
    assert loaded == {"on": "activation", "voucher": {
        "amount": Decimal("10.00"), "valid_days": 30, "min_amount": Decimal("50.00")}}
    assert str(loaded["voucher"]["min_amount"]) == "50.00"


def test_voucher_min_amount_written_as_a_float_is_refused():
    assert params_errors(TYPE, {"voucher": {"amount": "10.00", "valid_days": 30,
                                            "min_amount": 50.0}}) == \
        {"voucher": {"min_amount": ['write money as a quoted string, e.g. "30.00"']}}


def test_voucher_min_amount_of_zero_is_refused():
    assert params_errors(TYPE, {"voucher": {"amount": "10.00", "valid_days": 30,
                                            "min_amount": "0"}}) == \
        {"voucher": {"min_amount": ["must be greater than 0"]}}


def test_on_other_than_activation_or_first_payment_is_refused():
    assert params_errors(TYPE, {"on": "signup", "points": 1}) == \
        {"on": ["Must be one of: activation, first_payment."]}


def test_no_reward_is_refused():
    assert params_errors(TYPE, {}) == \
        {"points": ["give exactly one of points, cashback or voucher"]}


def test_two_rewards_are_refused_at_the_second():
    assert params_errors(TYPE, {"points": 1, "voucher": {"amount": "1.00", "valid_days": 1}}) == \
        {"voucher": ["give exactly one of points, cashback or voucher"]}


def test_three_rewards_are_refused_at_the_second():
    assert params_errors(TYPE, {"points": 1, "cashback": "1.00",
                                "voucher": {"amount": "1.00", "valid_days": 1}}) == \
        {"cashback": ["give exactly one of points, cashback or voucher"]}


@pytest.mark.parametrize("points", [0, -5])
def test_points_below_one_are_refused(points):
    assert params_errors(TYPE, {"points": points}) == \
        {"points": ["Must be greater than or equal to 1."]}


@pytest.mark.parametrize("points", ["100", 10.0, 10.5])
def test_points_that_are_not_an_integer_are_refused(points):
    assert params_errors(TYPE, {"points": points}) == {"points": ["Not a valid integer."]}


def test_points_as_a_boolean_are_refused():
    assert params_errors(TYPE, {"points": True}) == {"points": ["must be a whole number"]}


def test_cashback_written_as_a_float_is_refused():
    assert params_errors(TYPE, {"cashback": 10.0}) == \
        {"cashback": ['write money as a quoted string, e.g. "30.00"']}


def test_cashback_with_more_than_the_currency_minor_digits_is_refused():
    assert params_errors(TYPE, {"cashback": "10.001"}) == \
        {"cashback": ["at most 2 decimal places for CNY"]}


def test_cashback_of_zero_is_refused():
    assert params_errors(TYPE, {"cashback": "0.00"}) == {"cashback": ["must be greater than 0"]}


def test_cashback_is_checked_against_the_program_currency():
    assert params_errors(TYPE, {"cashback": "10.5"}, currency="JPY") == \
        {"cashback": ["at most 0 decimal places for JPY"]}


def test_voucher_without_valid_days_is_refused():
    assert params_errors(TYPE, {"voucher": {"amount": "10.00"}}) == \
        {"voucher": {"valid_days": ["Missing data for required field."]}}


def test_voucher_without_amount_is_refused():
    assert params_errors(TYPE, {"voucher": {"valid_days": 30}}) == \
        {"voucher": {"amount": ["Missing data for required field."]}}


@pytest.mark.parametrize("days", [0, 3651])
def test_voucher_valid_days_outside_1_to_3650_are_refused(days):
    assert params_errors(TYPE, {"voucher": {"amount": "10.00", "valid_days": days}}) == \
        {"voucher": {"valid_days": [
            "Must be greater than or equal to 1 and less than or equal to 3650."]}}


@pytest.mark.parametrize("days", [1, 3650])
def test_voucher_valid_days_accept_the_edges(days):
    assert params_errors(TYPE, {"voucher": {"amount": "10.00", "valid_days": days}}) == {}


def test_voucher_amount_written_as_a_float_is_refused():
    assert params_errors(TYPE, {"voucher": {"amount": 10.0, "valid_days": 30}}) == \
        {"voucher": {"amount": ['write money as a quoted string, e.g. "30.00"']}}


def test_voucher_unknown_key_is_refused():
    assert params_errors(TYPE, {"voucher": {"amount": "10.00", "valid_days": 30, "code": "X"}}) == \
        {"voucher": {"code": ["Unknown field."]}}


def test_unknown_param_is_refused():
    assert params_errors(TYPE, {"points": 100, "once": True}) == {"once": ["Unknown field."]}


# --- type metadata ---------------------------------------------------------------------------

def test_triggers_on_activation_by_default():
    campaign_type = builtin_registry().campaign_type(TYPE)
    assert campaign_type.triggers(load_params(TYPE, {"points": 1})) == frozenset({"activation"})


def test_triggers_on_payment_with_on_first_payment():
    campaign_type = builtin_registry().campaign_type(TYPE)
    params = load_params(TYPE, {"on": "first_payment", "points": 1})
    assert campaign_type.triggers(params) == frozenset({"payment"})


@pytest.mark.parametrize("params, unit", [
    ({"points": 1}, "points"),
    ({"cashback": "1.00"}, "money"),
    ({"voucher": {"amount": "1.00", "valid_days": 1}}, "money"),
])
def test_reward_unit_follows_the_reward(params, unit):
    campaign_type = builtin_registry().campaign_type(TYPE)
    assert campaign_type.reward_unit(load_params(TYPE, params)) == unit


@pytest.mark.parametrize("params, text", [
    ({"points": 100}, "100 points on your wallet activation"),
    ({"on": "first_payment", "cashback": "10"}, "10.00 CNY cashback on your first payment"),
    ({"voucher": {"amount": "10.00", "valid_days": 30}},
     "a 10.00 CNY voucher valid 30 days on your wallet activation"),
    ({"voucher": {"amount": "10.00", "valid_days": 30, "min_amount": "50"}},
     "a 10.00 CNY voucher valid 30 days (min. spend 50.00 CNY) on your wallet activation"),
])
def test_summary_describes_the_bonus(params, text):
    campaign_type = builtin_registry().campaign_type(TYPE)
    assert campaign_type.summary(load_params(TYPE, params), "CNY") == text
    assert campaign_type.localized_summary(load_params(TYPE, params), "CNY", "en") == text


@pytest.mark.parametrize("params, text", [
    ({"points": 100}, "开通钱包送 100 积分"),
    ({"on": "first_payment", "cashback": "10"}, "首次支付送 10.00 CNY 返现"),
    ({"voucher": {"amount": "10.00", "valid_days": 30}},
     "开通钱包送 10.00 CNY 优惠券，30 天内有效"),
    ({"voucher": {"amount": "10.00", "valid_days": 30, "min_amount": "50"}},
     "开通钱包送 10.00 CNY 优惠券（满 50.00 CNY 可用），30 天内有效"),
])
def test_summary_in_chinese(params, text):
    campaign_type = builtin_registry().campaign_type(TYPE)
    assert campaign_type.localized_summary(load_params(TYPE, params), "CNY", "zh") == text


# --- on activation ----------------------------------------------------------------------------

def test_first_activation_earns_the_points():
    engine = make_engine(bonus("welcome", points=100))
    assert rewards(engine.evaluate(activation(), new_user())) == [("welcome", POINTS, 100)]


def test_later_activation_earns_nothing():
    engine = make_engine(bonus("welcome", points=100))
    assert engine.evaluate(activation(), new_user(activations=1)).grants == ()


def test_activation_bonus_ignores_earlier_payments():
    engine = make_engine(bonus("welcome", points=100))
    assert rewards(engine.evaluate(activation(), new_user(payments=3))) == \
        [("welcome", POINTS, 100)]


def test_activation_bonus_does_not_apply_to_a_payment():
    engine = make_engine(bonus("welcome", points=100))
    assert rewards(engine.evaluate(payment("10.00"), new_user())) == [(None, POINTS, 10)]


def test_activation_bonus_does_not_apply_to_a_refund():
    engine = make_engine(bonus("welcome", points=100))
    assert engine.evaluate(refund(), new_user()).grants == ()


def test_first_activation_earns_the_cashback():
    engine = make_engine(bonus("welcome", cashback="10.00"))
    decision = engine.evaluate(activation(), new_user())
    assert rewards(decision) == [("welcome", CASHBACK, "10.00")]
    assert decision.grants[0].reward.currency == "CNY"


def test_first_activation_earns_the_voucher():
    engine = make_engine(bonus("welcome", voucher={"amount": "10.00", "valid_days": 30}))
    reward = engine.evaluate(activation(), new_user()).grants[0].reward
    assert (reward.campaign_id, reward.kind, str(reward.amount), reward.currency,
            reward.voucher_valid_days) == ("welcome", VOUCHER, "10.00", "CNY", 30)


def test_first_activation_earns_a_voucher_with_its_min_amount():
    engine = make_engine(bonus("welcome", voucher={"amount": "10.00", "valid_days": 30,
                                                   "min_amount": "50.00"}))
    reward = engine.evaluate(activation(), new_user()).grants[0].reward
    assert (reward.kind, str(reward.amount), reward.voucher_valid_days,
            str(reward.voucher_min_amount)) == (VOUCHER, "10.00", 30, "50.00")


def test_voucher_without_min_amount_has_none():
    engine = make_engine(bonus("welcome", voucher={"amount": "10.00", "valid_days": 30}))
    assert engine.evaluate(activation(), new_user()).grants[0].reward.voucher_min_amount is None


def test_bonus_is_in_the_campaign_currency():
    engine = make_engine(bonus("welcome", cashback="500", currency="JPY"), currency="JPY",
                         minor_digits=0)
    reward = engine.evaluate(activation(), new_user()).grants[0].reward
    assert (str(reward.amount), reward.currency) == ("500", "JPY")


def test_activation_bonus_has_no_stacking_group():
    engine = make_engine(bonus("welcome", points=100))
    assert engine.evaluate(activation(), new_user()).grants[0].reward.stacking_group is None


# --- on first payment --------------------------------------------------------------------------

def test_first_payment_earns_the_bonus_after_base_points():
    engine = make_engine(bonus("first", on="first_payment", points=200))
    assert rewards(engine.evaluate(payment("50.00"), new_user(activations=1))) == \
        [(None, POINTS, 50), ("first", POINTS, 200)]


def test_second_payment_earns_no_bonus():
    engine = make_engine(bonus("first", on="first_payment", points=200))
    assert rewards(engine.evaluate(payment("50.00"), new_user(activations=1, payments=1))) == \
        [(None, POINTS, 50)]


def test_first_payment_bonus_does_not_apply_to_an_activation():
    engine = make_engine(bonus("first", on="first_payment", points=200))
    assert engine.evaluate(activation(), new_user()).grants == ()


def test_first_payment_bonus_ignores_earlier_activations():
    engine = make_engine(bonus("first", on="first_payment", cashback="8.88"))
    assert rewards(engine.evaluate(payment("1.00"), new_user(activations=2))) == \
        [(None, POINTS, 1), ("first", CASHBACK, "8.88")]


def test_first_payment_cashback_is_not_a_discount_on_the_payment():
    engine = make_engine(bonus("first", on="first_payment", cashback="50.00"))
    assert rewards(engine.evaluate(payment("10.00"), new_user())) == \
        [(None, POINTS, 10), ("first", CASHBACK, "50.00")]


def test_first_payment_bonus_respects_merchant_scope():
    engine = make_engine(bonus("first", on="first_payment", points=200, merchants=["m_9"]))
    assert rewards(engine.evaluate(payment("50.00", merchant_id="m_1"), new_user())) == \
        [(None, POINTS, 50)]


def test_first_payment_bonus_with_a_discount_both_apply():
    engine = make_engine(bonus("first", on="first_payment", points=200, priority=1),
                         discount("d", percent=10))
    assert rewards(engine.evaluate(payment("50.00"), new_user())) == \
        [(None, POINTS, 50), ("first", POINTS, 200), ("d", DISCOUNT, "5.00")]


def test_per_user_limit_of_one_stops_a_second_bonus_even_if_counts_lag():
    engine = make_engine(bonus("welcome", points=100, limits={"per_user": 1}))
    user = new_user(campaign_uses={"welcome": 1})
    assert engine.evaluate(activation(), user).grants == ()

