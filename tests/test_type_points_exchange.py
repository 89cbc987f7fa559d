"""points_exchange: a redemption naming the campaign spends `cost_points` for a voucher or
cashback; no other event ever sees the campaign (contract: the points_exchange row).
"""
from __future__ import annotations

from decimal import Decimal

import pytest

from promo_engine.campaigns.schema import load_campaign
from promo_engine.campaigns.schema_errors import CampaignInvalid
from promo_engine.core.event import REDEMPTION, Event
from promo_engine.core.rewards import CASHBACK, VOUCHER

from factories import (DEFAULT_AT, BudgetGate, activation, builtin_registry, load_params,
                       make_campaign, make_engine, make_user, params_errors, payment, rewards)

TYPE = "points_exchange"
VOUCHER_10 = {"amount": "10.00", "valid_days": 30}


def exchange(id: str = "mall-voucher", cost_points: int = 500, **params_and_overrides):
    """A points_exchange campaign: a 10.00 voucher for 500 points unless told otherwise."""
    params = {"cost_points": cost_points}
    for key in ("voucher", "cashback"):
        if key in params_and_overrides:
            params[key] = params_and_overrides.pop(key)
    if "cashback" not in params and "voucher" not in params:
        params["voucher"] = VOUCHER_10
    return make_campaign(id, TYPE, params, **params_and_overrides)


def redemption(campaign_id: str | None = "mall-voucher", at=DEFAULT_AT, **fields) -> Event:
    return Event(type=REDEMPTION, user_id="u_1", occurred_at=at, event_id="evt_redeem",
                 campaign_id=campaign_id, **fields)


def the_type():
    return builtin_registry().campaign_type(TYPE)


# --- params ---------------------------------------------------------------------------------

def test_voucher_exchange_loads_cost_and_voucher():
    assert load_params(TYPE, {"cost_points": 500, "voucher": VOUCHER_10}) == \
        {"cost_points": 500, "voucher": {"amount": Decimal("10.00"), "valid_days": 30}}


def test_cashback_exchange_loads_cost_and_cashback_as_money():
    loaded = load_params(TYPE, {"cost_points": 300, "cashback": "5"})
    assert loaded == {"cost_points": 300, "cashback": Decimal("5.00")}
    assert str(loaded["cashback"]) == "5.00"


def test_voucher_min_amount_loads_as_money():
    loaded = load_params(TYPE, {"cost_points": 500, "voucher": {
        "amount": "10.00", "valid_days": 30, "min_amount": "50"}})
    assert str(loaded["voucher"]["min_amount"]) == "50.00"


def test_cost_points_is_required():
    assert params_errors(TYPE, {"voucher": VOUCHER_10}) == \
        {"cost_points": ["Missing data for required field."]}


@pytest.mark.parametrize("cost", [0, -1])
def test_cost_points_below_one_are_refused(cost):
    assert params_errors(TYPE, {"cost_points": cost, "voucher": VOUCHER_10}) == \
        {"cost_points": ["Must be greater than or equal to 1."]}


def test_cost_points_of_one_is_accepted():
    assert params_errors(TYPE, {"cost_points": 1, "cashback": "0.01"}) == {}


@pytest.mark.parametrize("cost", ["500", 500.0, 12.5])
def test_cost_points_that_are_not_an_integer_are_refused(cost):
    assert params_errors(TYPE, {"cost_points": cost, "voucher": VOUCHER_10}) == \
        {"cost_points": ["Not a valid integer."]}


def test_cost_points_as_a_boolean_are_refused():
    assert params_errors(TYPE, {"cost_points": True, "voucher": VOUCHER_10}) == \
        {"cost_points": ["must be a whole number"]}


def test_no_reward_is_refused():
    assert params_errors(TYPE, {"cost_points": 500}) == \
        {"voucher": ["give exactly one of voucher or cashback"]}


def test_voucher_and_cashback_together_are_refused_at_cashback():
    assert params_errors(TYPE, {"cost_points": 500, "voucher": VOUCHER_10,
                                "cashback": "5.00"}) == \
        {"cashback": ["give exactly one of voucher or cashback"]}


def test_points_as_the_reward_is_refused():
    assert params_errors(TYPE, {"cost_points": 500, "points": 100}) == \
        {"points": ["Unknown field."]}


def test_cashback_written_as_a_float_is_refused():
    assert params_errors(TYPE, {"cost_points": 300, "cashback": 5.0}) == \
        {"cashback": ['write money as a quoted string, e.g. "30.00"']}


def test_cashback_is_checked_against_the_program_currency():
    assert params_errors(TYPE, {"cost_points": 300, "cashback": "5.5"}, currency="JPY") == \
        {"cashback": ["at most 0 decimal places for JPY"]}


def test_voucher_without_valid_days_is_refused():
    assert params_errors(TYPE, {"cost_points": 500, "voucher": {"amount": "10.00"}}) == \
        {"voucher": {"valid_days": ["Missing data for required field."]}}


@pytest.mark.parametrize("days", [0, 3651])
def test_voucher_valid_days_outside_1_to_3650_are_refused(days):
    assert params_errors(TYPE, {"cost_points": 500,
                                "voucher": {"amount": "10.00", "valid_days": days}}) == \
        {"voucher": {"valid_days": [
            "Must be greater than or equal to 1 and less than or equal to 3650."]}}


def test_voucher_min_amount_of_zero_is_refused():
    assert params_errors(TYPE, {"cost_points": 500, "voucher": {
        "amount": "10.00", "valid_days": 30, "min_amount": "0.00"}}) == \
        {"voucher": {"min_amount": ["must be greater than 0"]}}


def test_voucher_min_amount_written_as_a_float_is_refused():
    assert params_errors(TYPE, {"cost_points": 500, "voucher": {
        "amount": "10.00", "valid_days": 30, "min_amount": 50.0}}) == \
        {"voucher": {"min_amount": ['write money as a quoted string, e.g. "30.00"']}}


def test_voucher_unknown_key_is_refused():
    assert params_errors(TYPE, {"cost_points": 500, "voucher": {
        "amount": "10.00", "valid_days": 30, "code": "X"}}) == \
        {"voucher": {"code": ["Unknown field."]}}


def test_unknown_param_is_refused():
    assert params_errors(TYPE, {"cost_points": 500, "voucher": VOUCHER_10, "stock": 3}) == \
        {"stock": ["Unknown field."]}


# --- type metadata ---------------------------------------------------------------------------

def test_triggers_on_redemption_only():
    assert the_type().triggers(load_params(TYPE, {"cost_points": 1, "cashback": "1"})) == \
        frozenset({"redemption"})


@pytest.mark.parametrize("params", [{"cost_points": 1, "cashback": "1"},
                                    {"cost_points": 1, "voucher": VOUCHER_10}])
def test_reward_unit_is_money(params):
    assert the_type().reward_unit(load_params(TYPE, params)) == "money"


def test_cost_points_is_the_params_cost():
    assert the_type().cost_points(load_params(TYPE, {"cost_points": 750, "cashback": "1"})) == 750


@pytest.mark.parametrize("params, text", [
    ({"cost_points": 500, "voucher": VOUCHER_10}, "a 10.00 CNY voucher for 500 points"),
    ({"cost_points": 500, "voucher": {**VOUCHER_10, "min_amount": "50"}},
     "a 10.00 CNY voucher (min. spend 50.00 CNY) for 500 points"),
    ({"cost_points": 300, "cashback": "5"}, "5.00 CNY cashback for 300 points"),
])
def test_summary_names_the_reward_and_its_price(params, text):
    assert the_type().summary(load_params(TYPE, params), "CNY") == text


@pytest.mark.parametrize("params, text", [
    ({"cost_points": 500, "voucher": VOUCHER_10}, "500 积分兑换 10.00 CNY 优惠券"),
    ({"cost_points": 500, "voucher": {**VOUCHER_10, "min_amount": "50"}},
     "500 积分兑换 10.00 CNY 优惠券（满 50.00 CNY 可用）"),
    ({"cost_points": 300, "cashback": "5"}, "300 积分兑换 5.00 CNY 返现"),
])
def test_summary_in_chinese(params, text):
    assert the_type().localized_summary(load_params(TYPE, params), "CNY", "zh") == text


def test_summary_in_english_is_the_summary():
    params = load_params(TYPE, {"cost_points": 300, "cashback": "5"})
    assert the_type().localized_summary(params, "CNY", "en") == \
        "5.00 CNY cashback for 300 points"


# --- as a campaign document --------------------------------------------------------------------

def document(**fields):
    return {"id": "mall-voucher", "type": TYPE, "starts_at": "2027-01-01T00:00:00",
            "ends_at": "2028-01-01T00:00:00",
            "params": {"cost_points": 500, "voucher": VOUCHER_10}, **fields}


def test_campaign_with_a_money_budget_and_stock_loads():
    campaign = load_campaign(document(budget={"amount": "1000.00"},
                                      limits={"max_redemptions": 100, "per_user": 2}),
                             registry=builtin_registry(), currency="CNY",
                             default_timezone="Asia/Shanghai")
    assert (campaign.type, campaign.params["cost_points"], campaign.budget.amount,
            campaign.limits.max_redemptions) == (TYPE, 500, Decimal("1000.00"), 100)


def test_campaign_with_a_points_budget_is_refused():
    with pytest.raises(CampaignInvalid) as info:
        load_campaign(document(budget={"points": 1000}), registry=builtin_registry(),
                      currency="CNY", default_timezone="Asia/Shanghai")
    assert info.value.messages == \
        {"budget": {"points": ["this campaign grants money: use budget.amount"]}}


# --- the evaluator -----------------------------------------------------------------------------

def test_redemption_gets_the_voucher_with_its_terms():
    engine = make_engine(exchange(voucher={"amount": "10.00", "valid_days": 30,
                                           "min_amount": "50.00"}))
    reward = engine.evaluate(redemption(), make_user()).grants[0].reward
    assert (reward.campaign_id, reward.kind, str(reward.amount), reward.currency,
            reward.voucher_valid_days, str(reward.voucher_min_amount)) == \
        ("mall-voucher", VOUCHER, "10.00", "CNY", 30, "50.00")


def test_voucher_without_min_amount_has_none():
    engine = make_engine(exchange())
    assert engine.evaluate(redemption(), make_user()).grants[0].reward.voucher_min_amount is None


def test_redemption_gets_the_cashback():
    engine = make_engine(exchange(cashback="5.00", cost_points=300))
    decision = engine.evaluate(redemption(), make_user())
    assert rewards(decision) == [("mall-voucher", CASHBACK, "5.00")]
    assert decision.base_points == 0


def test_the_reward_is_shared_between_redemptions():
    engine = make_engine(exchange())
    first = engine.evaluate(redemption(), make_user()).grants[0].reward
    assert engine.evaluate(redemption(), make_user(user_id="u_2")).grants[0].reward is first


def test_compiled_exchange_carries_its_price():
    engine = make_engine(exchange(cost_points=750))
    assert engine.exchange_campaign("mall-voucher").cost_points == 750


def test_redemption_of_another_campaign_gets_nothing():
    engine = make_engine(exchange())
    assert engine.evaluate(redemption("other-offer"), make_user()).grants == ()


def test_payment_never_gets_the_exchange_reward():
    engine = make_engine(exchange())
    assert rewards(engine.evaluate(payment("100.00"), make_user())) == [(None, "points", 100)]


def test_activation_never_gets_the_exchange_reward():
    engine = make_engine(exchange())
    assert engine.evaluate(activation(), make_user()).grants == ()


def test_redemption_without_campaign_id_gets_nothing():
    engine = make_engine(exchange())
    assert engine.evaluate(redemption(None, points=100), make_user()).grants == ()


def test_stock_is_max_redemptions():
    engine = make_engine(exchange(limits={"max_redemptions": 1}))
    gate = BudgetGate()
    assert len(engine.evaluate(redemption(), make_user(), gate).grants) == 1
    assert engine.evaluate(redemption(), make_user(user_id="u_2"), gate).grants == ()


def test_per_user_limit_stops_a_second_exchange():
    engine = make_engine(exchange(limits={"per_user": 1}))
    assert engine.evaluate(redemption(), make_user(campaign_uses={"mall-voucher": 1})).grants \
        == ()
