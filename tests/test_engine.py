"""The rules engine: which campaigns apply to an event, in which order, and what they grant.

Contract section 2. Windows, time zones and DST are in test_engine_schedule.py; each
built-in type's own arithmetic is in its test_type_*.py.
"""
from __future__ import annotations

import logging
from datetime import date, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import INCLUDE, Schema

from promo_engine.core.campaign_type import CampaignType, EvaluationContext
from promo_engine.core.engine import CompiledCampaign, RulesEngine
from promo_engine.core.event import Event
from promo_engine.core.money import round_half_up
from promo_engine.core.registry import Registry
from promo_engine.core.rewards import CASHBACK, DISCOUNT, POINTS, Reward, points_reward

from factories import (DEFAULT_AT, BudgetGate, RecordingGate, activation, bonus, builtin_registry,
                       campaign_ids, discount, make_campaign, make_engine, make_user, multiplier,
                       new_user, payment, raise_on_error, refund, rewards, utc, window)

# --- a campaign type whose evaluator the tests control --------------------------------------

class ProbeParams(Schema):
    class Meta:
        unknown = INCLUDE


class ProbeType(CampaignType):
    """Grants `points` for payments; records every call, raises when told to."""
    name = "probe"
    params_schema = ProbeParams

    def __init__(self):
        self.calls: list[tuple[str, str | None]] = []
        self.fail_compile: set[str] = set()
        self.fail_evaluate: set[str] = set()

    def triggers(self, params):
        return frozenset(params.get("triggers", ("payment",)))

    def reward_unit(self, params):
        return "points"

    def compile(self, campaign):
        if campaign.id in self.fail_compile:
            raise RuntimeError(f"cannot compile {campaign.id}")
        points = campaign.params.get("points", 1)

        def evaluate(ctx: EvaluationContext):
            self.calls.append((campaign.id, ctx.event.merchant_id))
            if campaign.id in self.fail_evaluate:
                raise ValueError(f"{campaign.id} is broken")
            return points_reward(points, campaign.id)
        return evaluate


@pytest.fixture
def probe():
    return ProbeType()


@pytest.fixture
def registry(probe):
    builtin = builtin_registry()
    return Registry(campaign_types={**builtin.campaign_types, "probe": probe},
                    event_types=builtin.event_types)


def probe_campaign(id, registry, **overrides):
    return make_campaign(id, "probe", overrides.pop("params", {}), registry=registry, **overrides)


class ErrorLog:
    def __init__(self):
        self.errors: list[tuple[str, BaseException]] = []

    def __call__(self, campaign, exc):
        self.errors.append((campaign.id, exc))


# --- base points -------------------------------------------------------------------------

def test_payment_earns_floor_of_amount_times_points_per_unit_as_base_points():
    decision = make_engine().evaluate(payment("99.99"), make_user())
    assert rewards(decision) == [(None, POINTS, 99)]
    assert decision.base_points == 99


def test_base_points_use_a_fractional_points_per_unit_and_round_down():
    decision = make_engine(points_per_unit="1.5").evaluate(payment("10.01"), make_user())
    assert rewards(decision) == [(None, POINTS, 15)]


def test_base_points_of_zero_grant_no_base_reward():
    decision = make_engine().evaluate(payment("0.99"), make_user())
    assert decision.grants == ()
    assert decision.base_points == 0


def test_points_per_unit_zero_turns_base_points_off():
    decision = make_engine(points_per_unit="0").evaluate(payment("100.00"), make_user())
    assert decision.grants == ()
    assert decision.base_points == 0


def test_activation_earns_no_base_points():
    decision = make_engine().evaluate(activation(), make_user())
    assert decision.grants == ()
    assert decision.base_points == 0


def test_refund_earns_no_base_points():
    decision = make_engine().evaluate(refund("100.00"), make_user())
    assert decision.grants == ()


def test_base_points_reward_comes_first_with_no_campaign():
    engine = make_engine(discount("d", percent=15, priority=100))
    decision = engine.evaluate(payment("100.00"), make_user())
    assert rewards(decision) == [(None, POINTS, 100), ("d", DISCOUNT, "15.00")]
    assert decision.grants[0].campaign is None
    assert decision.grants[0].local_day is None


def test_decision_points_total_base_and_campaign_points():
    engine = make_engine(multiplier("x3", 3))
    decision = engine.evaluate(payment("100.00"), make_user())
    assert decision.points == 300
    assert decision.base_points == 100


def test_grant_carries_the_campaign_and_its_local_day():
    campaign = discount("d", percent=10)
    decision = make_engine(campaign).evaluate(payment(), make_user())
    grant = decision.grants[1]
    assert grant.campaign == campaign
    assert grant.local_day == date(2027, 6, 15)


# --- triggers and merchant scope ------------------------------------------------------------

def test_payment_campaign_does_not_apply_to_an_activation():
    engine = make_engine(discount("d", percent=10))
    assert engine.evaluate(activation(), make_user()).grants == ()


def test_payment_campaigns_do_not_apply_to_a_refund():
    engine = make_engine(discount("d", percent=10), multiplier("x2", 2))
    assert engine.evaluate(refund("100.00"), make_user()).grants == ()


def test_campaign_without_merchants_applies_to_every_merchant():
    engine = make_engine(discount("d", percent=10))
    assert campaign_ids(engine.evaluate(payment(merchant_id="m_1"), make_user())) == [None, "d"]
    assert campaign_ids(engine.evaluate(payment(merchant_id="m_999"), make_user())) == [None, "d"]


def test_scoped_campaign_applies_to_each_listed_merchant():
    engine = make_engine(discount("d", percent=10, merchants=["m_1", "m_2"]))
    assert campaign_ids(engine.evaluate(payment(merchant_id="m_2"), make_user())) == [None, "d"]


def test_scoped_campaign_does_not_apply_to_another_merchant():
    engine = make_engine(discount("d", percent=10, merchants=["m_1"]))
    assert campaign_ids(engine.evaluate(payment(merchant_id="m_2"), make_user())) == [None]


def test_scoped_campaign_never_applies_to_an_event_without_merchant():
    engine = make_engine(bonus("welcome", points=50, merchants=["m_1"]))
    assert engine.evaluate(activation(), new_user()).grants == ()


def test_bank_wide_campaign_applies_to_an_event_without_merchant():
    engine = make_engine(bonus("welcome", points=50))
    assert rewards(engine.evaluate(activation(), new_user())) == [("welcome", POINTS, 50)]


def test_candidate_index_never_evaluates_a_campaign_for_another_merchant(probe, registry):
    engine = make_engine(probe_campaign("for-a", registry, merchants=["m_a"]),
                         probe_campaign("everywhere", registry), registry=registry)
    engine.evaluate(payment(merchant_id="m_b"), make_user())
    assert probe.calls == [("everywhere", "m_b")]


def test_candidate_index_evaluates_a_merchant_campaign_for_its_merchant(probe, registry):
    engine = make_engine(probe_campaign("for-a", registry, merchants=["m_a"]),
                         probe_campaign("everywhere", registry), registry=registry)
    engine.evaluate(payment(merchant_id="m_a"), make_user())
    assert probe.calls == [("everywhere", "m_a"), ("for-a", "m_a")]


def test_candidate_index_never_evaluates_a_campaign_for_another_event_type(probe, registry):
    engine = make_engine(probe_campaign("on-payment", registry), registry=registry)
    engine.evaluate(activation(merchant_id="m_1"), make_user())
    assert probe.calls == []


def test_candidates_merge_merchant_and_bank_wide_campaigns_in_priority_order(registry):
    engine = make_engine(probe_campaign("b-wide", registry, priority=5),
                         probe_campaign("a-scoped", registry, priority=5, merchants=["m_1"]),
                         probe_campaign("c-scoped", registry, priority=9, merchants=["m_1"]),
                         probe_campaign("d-wide", registry, priority=1), registry=registry)
    assert [c.id for c in engine.candidates(payment(merchant_id="m_1"))] == \
        ["c-scoped", "a-scoped", "b-wide", "d-wide"]


def test_campaign_with_a_plugin_trigger_applies_to_that_event_type(probe, registry):
    engine = make_engine(probe_campaign("on-checkin", registry,
                                        params={"triggers": ["checkin"], "points": 7}),
                         registry=registry)
    checkin = Event(type="checkin", user_id="u_1", occurred_at=DEFAULT_AT)
    assert rewards(engine.evaluate(checkin, make_user())) == [("on-checkin", POINTS, 7)]


# --- conditions ---------------------------------------------------------------------------

def test_min_amount_applies_to_a_payment_of_exactly_that_amount():
    engine = make_engine(discount("d", percent=10, conditions={"min_amount": "50.00"}))
    assert rewards(engine.evaluate(payment("50.00"), make_user())) == \
        [(None, POINTS, 50), ("d", DISCOUNT, "5.00")]


def test_min_amount_refuses_a_payment_one_cent_below():
    engine = make_engine(discount("d", percent=10, conditions={"min_amount": "50.00"}))
    assert campaign_ids(engine.evaluate(payment("49.99"), make_user())) == [None]


def test_min_amount_refuses_an_event_without_amount():
    engine = make_engine(bonus("welcome", points=50, conditions={"min_amount": "1.00"}))
    assert engine.evaluate(activation(), new_user()).grants == ()


def test_mcc_condition_applies_to_a_listed_mcc():
    engine = make_engine(discount("d", percent=10, conditions={"mcc": ["5812", "5814"]}))
    assert campaign_ids(engine.evaluate(payment(mcc="5814"), make_user())) == [None, "d"]


def test_mcc_condition_refuses_an_unlisted_mcc():
    engine = make_engine(discount("d", percent=10, conditions={"mcc": ["5812", "5814"]}))
    assert campaign_ids(engine.evaluate(payment(mcc="5411"), make_user())) == [None]


def test_mcc_condition_refuses_an_event_without_mcc():
    engine = make_engine(discount("d", percent=10, conditions={"mcc": ["5812"]}))
    assert campaign_ids(engine.evaluate(payment(), make_user())) == [None]


def test_channel_condition_applies_to_a_listed_channel():
    engine = make_engine(discount("d", percent=10, conditions={"channels": ["qr", "in_store"]}))
    assert campaign_ids(engine.evaluate(payment(channel="in_store"), make_user())) == [None, "d"]


def test_channel_condition_refuses_an_unlisted_channel():
    engine = make_engine(discount("d", percent=10, conditions={"channels": ["qr"]}))
    assert campaign_ids(engine.evaluate(payment(channel="online"), make_user())) == [None]


def test_channel_condition_refuses_an_event_without_channel():
    engine = make_engine(discount("d", percent=10, conditions={"channels": ["qr"]}))
    assert campaign_ids(engine.evaluate(payment(), make_user())) == [None]


def test_attribute_condition_applies_to_a_listed_string_value():
    engine = make_engine(discount("d", percent=10,
                                  conditions={"attributes": {"segment": ["student", "young_pro"]}}))
    event = payment(attributes={"segment": "young_pro"})
    assert campaign_ids(engine.evaluate(event, make_user())) == [None, "d"]


def test_attribute_condition_refuses_an_unlisted_value():
    engine = make_engine(discount("d", percent=10,
                                  conditions={"attributes": {"segment": ["student"]}}))
    event = payment(attributes={"segment": "retired"})
    assert campaign_ids(engine.evaluate(event, make_user())) == [None]


def test_attribute_condition_refuses_an_event_without_the_attribute():
    engine = make_engine(discount("d", percent=10,
                                  conditions={"attributes": {"segment": ["student"]}}))
    event = payment(attributes={"tier": "student"})
    assert campaign_ids(engine.evaluate(event, make_user())) == [None]


def test_attribute_condition_needs_every_listed_attribute():
    engine = make_engine(discount("d", percent=10, conditions={
        "attributes": {"segment": ["student"], "city": ["shanghai"]}}))
    event = payment(attributes={"segment": "student", "city": "beijing"})
    assert campaign_ids(engine.evaluate(event, make_user())) == [None]


def test_attribute_true_matches_the_text_true():
    engine = make_engine(discount("d", percent=10, conditions={"attributes": {"vip": ["true"]}}))
    assert campaign_ids(engine.evaluate(payment(attributes={"vip": True}), make_user())) == \
        [None, "d"]


def test_attribute_false_matches_the_text_false():
    engine = make_engine(discount("d", percent=10, conditions={"attributes": {"vip": ["false"]}}))
    assert campaign_ids(engine.evaluate(payment(attributes={"vip": False}), make_user())) == \
        [None, "d"]


def test_attribute_false_does_not_match_the_text_true():
    engine = make_engine(discount("d", percent=10, conditions={"attributes": {"vip": ["true"]}}))
    assert campaign_ids(engine.evaluate(payment(attributes={"vip": False}), make_user())) == \
        [None]


def test_attribute_boolean_does_not_match_the_number_one():
    engine = make_engine(discount("d", percent=10, conditions={"attributes": {"vip": ["1"]}}))
    assert campaign_ids(engine.evaluate(payment(attributes={"vip": True}), make_user())) == \
        [None]


def test_attribute_whole_number_matches_its_digits():
    engine = make_engine(discount("d", percent=10, conditions={"attributes": {"age": ["21"]}}))
    event = payment(attributes={"age": Decimal("21")})
    assert campaign_ids(engine.evaluate(event, make_user())) == [None, "d"]


def test_attribute_whole_number_written_with_decimals_matches_its_digits():
    engine = make_engine(discount("d", percent=10, conditions={"attributes": {"age": ["21"]}}))
    event = payment(attributes={"age": Decimal("21.0")})
    assert campaign_ids(engine.evaluate(event, make_user())) == [None, "d"]


def test_attribute_number_in_exponent_form_matches_its_digits():
    engine = make_engine(discount("d", percent=10, conditions={"attributes": {"level": ["100"]}}))
    event = payment(attributes={"level": Decimal("1E+2")})
    assert campaign_ids(engine.evaluate(event, make_user())) == [None, "d"]


def test_attribute_fraction_matches_its_shortest_text():
    # JSON 2.50 reaches the engine as Decimal("2.50"); it is the number 2.5, as 21.0 is 21.
    engine = make_engine(discount("d", percent=10, conditions={"attributes": {"score": ["2.5"]}}))
    event = payment(attributes={"score": Decimal("2.50")})
    assert campaign_ids(engine.evaluate(event, make_user())) == [None, "d"]


def test_attribute_small_fraction_matches_its_plain_text():
    # JSON 1e-7 reaches the engine as Decimal("1E-7").
    engine = make_engine(discount("d", percent=10,
                                  conditions={"attributes": {"ratio": ["0.0000001"]}}))
    event = payment(attributes={"ratio": Decimal("1E-7")})
    assert campaign_ids(engine.evaluate(event, make_user())) == [None, "d"]


def test_attribute_number_does_not_match_a_different_number():
    engine = make_engine(discount("d", percent=10, conditions={"attributes": {"age": ["21"]}}))
    event = payment(attributes={"age": Decimal("22")})
    assert campaign_ids(engine.evaluate(event, make_user())) == [None]


def test_every_condition_must_hold():
    engine = make_engine(discount("d", percent=10, conditions={
        "min_amount": "10.00", "mcc": ["5812"], "channels": ["qr"]}))
    assert campaign_ids(engine.evaluate(payment("20.00", mcc="5812", channel="qr"),
                                        make_user())) == [None, "d"]
    assert campaign_ids(engine.evaluate(payment("20.00", mcc="5812", channel="online"),
                                        make_user())) == [None]


# --- per-user limits -------------------------------------------------------------------------

def test_per_user_limit_applies_while_uses_are_below_it():
    engine = make_engine(discount("d", percent=10, limits={"per_user": 3}))
    user = make_user(campaign_uses={"d": 2})
    assert campaign_ids(engine.evaluate(payment(), user)) == [None, "d"]


def test_per_user_limit_refuses_once_uses_reach_it():
    engine = make_engine(discount("d", percent=10, limits={"per_user": 3}))
    user = make_user(campaign_uses={"d": 3})
    assert campaign_ids(engine.evaluate(payment(), user)) == [None]


def test_per_user_limit_counts_only_its_own_campaign():
    engine = make_engine(discount("d", percent=10, limits={"per_user": 1}))
    user = make_user(campaign_uses={"other": 5})
    assert campaign_ids(engine.evaluate(payment(), user)) == [None, "d"]


def test_per_user_daily_limit_refuses_once_the_day_is_used_up():
    engine = make_engine(discount("d", percent=10, limits={"per_user_daily": 2}))
    user = make_user(daily_uses={("d", date(2027, 6, 15)): 2})
    assert campaign_ids(engine.evaluate(payment(), user)) == [None]


def test_per_user_daily_limit_applies_while_the_day_has_room():
    engine = make_engine(discount("d", percent=10, limits={"per_user_daily": 2}))
    user = make_user(daily_uses={("d", date(2027, 6, 15)): 1})
    assert campaign_ids(engine.evaluate(payment(), user)) == [None, "d"]


def test_per_user_daily_limit_ignores_uses_on_other_days():
    engine = make_engine(discount("d", percent=10, limits={"per_user_daily": 1}))
    user = make_user(daily_uses={("d", date(2027, 6, 14)): 1, ("d", date(2027, 6, 16)): 1})
    assert campaign_ids(engine.evaluate(payment(), user)) == [None, "d"]


def test_per_user_limit_skip_lets_the_next_campaign_apply():
    engine = make_engine(discount("high", percent=10, priority=10, exclusive=True,
                                  limits={"per_user": 1}),
                         discount("low", percent=5, priority=1))
    user = make_user(campaign_uses={"high": 1})
    assert rewards(engine.evaluate(payment(), user)) == \
        [(None, POINTS, 100), ("low", DISCOUNT, "5.00")]


def test_user_limits_are_not_asked_of_the_gate():
    gate = RecordingGate()
    engine = make_engine(discount("d", percent=10, limits={"per_user": 1}))
    engine.evaluate(payment(), make_user(campaign_uses={"d": 1}), gate)
    assert gate.calls == []


# --- order ----------------------------------------------------------------------------------

def test_campaigns_apply_in_priority_order_highest_first():
    engine = make_engine(bonus("low", on="first_payment", points=1, priority=1),
                         bonus("high", on="first_payment", points=3, priority=3),
                         bonus("mid", on="first_payment", points=2, priority=2))
    assert campaign_ids(engine.evaluate(payment(), new_user())) == [None, "high", "mid", "low"]


def test_campaigns_of_equal_priority_apply_in_id_order():
    engine = make_engine(bonus("c", on="first_payment", points=1),
                         bonus("a", on="first_payment", points=1),
                         bonus("b", on="first_payment", points=1))
    assert campaign_ids(engine.evaluate(payment(), new_user())) == [None, "a", "b", "c"]


def test_negative_priority_applies_after_the_default():
    engine = make_engine(bonus("neg", on="first_payment", points=1, priority=-5),
                         bonus("zero", on="first_payment", points=1))
    assert campaign_ids(engine.evaluate(payment(), new_user())) == [None, "zero", "neg"]


def test_gate_is_asked_in_priority_order():
    gate = RecordingGate()
    engine = make_engine(discount("b", percent=1, priority=1), discount("a", percent=1, priority=1),
                         discount("c", percent=1, priority=7))
    engine.evaluate(payment(), make_user(), gate)
    assert gate.asked == ["c", "a", "b"]


def test_gate_is_given_the_campaigns_local_day():
    gate = RecordingGate()
    engine = make_engine(discount("d", percent=10))
    engine.evaluate(payment(), make_user(), gate)
    assert [(campaign_id, day) for campaign_id, _, day in gate.calls] == \
        [("d", date(2027, 6, 15))]


# --- exclusive ----------------------------------------------------------------------------

def test_applied_exclusive_blocks_lower_priority_campaigns():
    engine = make_engine(discount("excl", percent=10, priority=10, exclusive=True),
                         discount("lower", percent=5, priority=9),
                         multiplier("x2", 2, priority=0))
    assert rewards(engine.evaluate(payment(), make_user())) == \
        [(None, POINTS, 100), ("excl", DISCOUNT, "10.00")]


def test_applied_exclusive_does_not_block_equal_priority_campaigns():
    engine = make_engine(discount("a-excl", percent=10, priority=10, exclusive=True),
                         discount("b-equal", percent=5, priority=10))
    assert rewards(engine.evaluate(payment(), make_user())) == \
        [(None, POINTS, 100), ("a-excl", DISCOUNT, "10.00"), ("b-equal", DISCOUNT, "5.00")]


def test_equal_priority_campaign_before_the_exclusive_in_id_order_applies():
    engine = make_engine(discount("z-excl", percent=10, priority=10, exclusive=True),
                         discount("a-equal", percent=5, priority=10))
    assert rewards(engine.evaluate(payment(), make_user())) == \
        [(None, POINTS, 100), ("a-equal", DISCOUNT, "5.00"), ("z-excl", DISCOUNT, "10.00")]


def test_applied_exclusive_does_not_remove_higher_priority_rewards():
    engine = make_engine(discount("high", percent=20, priority=20),
                         discount("excl", percent=10, priority=10, exclusive=True),
                         discount("low", percent=5, priority=0))
    assert campaign_ids(engine.evaluate(payment(), make_user())) == [None, "high", "excl"]


def test_applied_exclusive_keeps_base_points():
    engine = make_engine(discount("excl", percent=10, priority=10, exclusive=True))
    assert rewards(engine.evaluate(payment(), make_user())) == \
        [(None, POINTS, 100), ("excl", DISCOUNT, "10.00")]


def test_exclusive_refused_by_the_gate_blocks_nothing():
    gate = RecordingGate(refuse=frozenset({"excl"}))
    engine = make_engine(discount("excl", percent=10, priority=10, exclusive=True),
                         discount("lower", percent=5, priority=1))
    assert rewards(engine.evaluate(payment(), make_user(), gate)) == \
        [(None, POINTS, 100), ("lower", DISCOUNT, "5.00")]


def test_exclusive_whose_conditions_fail_blocks_nothing():
    engine = make_engine(discount("excl", percent=10, priority=10, exclusive=True,
                                  conditions={"min_amount": "500.00"}),
                         discount("lower", percent=5, priority=1))
    assert campaign_ids(engine.evaluate(payment(), make_user())) == [None, "lower"]


def test_exclusive_with_no_reward_for_the_event_blocks_nothing():
    # 1.5 x 1 base point = 1.5, floored to 1: no extra points, so the campaign does not apply.
    engine = make_engine(multiplier("excl", "1.5", priority=10, exclusive=True),
                         discount("lower", percent=10, priority=1))
    assert rewards(engine.evaluate(payment("1.00"), make_user())) == \
        [(None, POINTS, 1), ("lower", DISCOUNT, "0.10")]


def test_exclusive_discount_skipped_when_nothing_is_payable_blocks_nothing():
    engine = make_engine(discount("all", amount_off="100.00", priority=20),
                         discount("excl", percent=10, priority=10, exclusive=True),
                         multiplier("x2", 2, priority=0))
    assert rewards(engine.evaluate(payment(), make_user())) == \
        [(None, POINTS, 100), ("all", DISCOUNT, "100.00"), ("x2", POINTS, 100)]


def test_exclusive_outside_its_dates_blocks_nothing():
    engine = make_engine(discount("excl", percent=10, priority=10, exclusive=True,
                                  ends_at=utc(2027, 1, 2)),
                         discount("lower", percent=5, priority=1))
    assert campaign_ids(engine.evaluate(payment(), make_user())) == [None, "lower"]


def test_lower_priority_exclusive_keeps_higher_rewards_and_blocks_below():
    engine = make_engine(discount("top", percent=10, priority=30),
                         discount("excl", percent=5, priority=20, exclusive=True),
                         discount("bottom", percent=1, priority=10))
    assert campaign_ids(engine.evaluate(payment(), make_user())) == [None, "top", "excl"]


# --- points multipliers -------------------------------------------------------------------

def test_several_multipliers_grant_only_the_highest():
    engine = make_engine(multiplier("x2", 2), multiplier("x3", 3), multiplier("x1-5", "1.5"))
    decision = engine.evaluate(payment(), make_user())
    assert rewards(decision) == [(None, POINTS, 100), ("x3", POINTS, 200)]
    assert decision.points == 300


def test_highest_multiplier_wins_even_at_lower_priority():
    engine = make_engine(multiplier("x2", 2, priority=10), multiplier("x3", 3, priority=0))
    assert rewards(engine.evaluate(payment(), make_user())) == \
        [(None, POINTS, 100), ("x3", POINTS, 200)]


def test_winning_multiplier_is_listed_at_its_own_priority():
    engine = make_engine(multiplier("x2", 2, priority=10),
                         discount("d", percent=10, priority=5),
                         multiplier("x3", 3, priority=0))
    assert rewards(engine.evaluate(payment(), make_user())) == \
        [(None, POINTS, 100), ("d", DISCOUNT, "10.00"), ("x3", POINTS, 200)]


def test_exclusive_blocks_a_lower_priority_multiplier_even_if_it_ranks_higher():
    engine = make_engine(multiplier("x2", 2, priority=10),
                         discount("excl", percent=10, priority=5, exclusive=True),
                         multiplier("x3", 3, priority=0))
    assert rewards(engine.evaluate(payment(), make_user())) == \
        [(None, POINTS, 100), ("x2", POINTS, 100), ("excl", DISCOUNT, "10.00")]


def test_multiplier_refused_by_the_gate_lets_the_next_highest_win():
    gate = RecordingGate(refuse=frozenset({"x3"}))
    engine = make_engine(multiplier("x2", 2), multiplier("x3", 3), multiplier("x1-5", "1.5"))
    assert rewards(engine.evaluate(payment(), make_user(), gate)) == \
        [(None, POINTS, 100), ("x2", POINTS, 100)]
    assert gate.asked == ["x3", "x2"]


def test_multipliers_all_refused_by_the_gate_grant_no_extra_points():
    gate = RecordingGate(refuse=frozenset({"x2", "x3"}))
    engine = make_engine(multiplier("x2", 2), multiplier("x3", 3), discount("d", percent=10))
    assert rewards(engine.evaluate(payment(), make_user(), gate)) == \
        [(None, POINTS, 100), ("d", DISCOUNT, "10.00")]


def test_multiplier_over_its_points_budget_lets_the_next_highest_win():
    gate = BudgetGate(spent={"x3": 950})
    engine = make_engine(multiplier("x3", 3, budget={"points": 1000}), multiplier("x2", 2))
    assert rewards(engine.evaluate(payment(), make_user(), gate)) == \
        [(None, POINTS, 100), ("x2", POINTS, 100)]
    assert gate.spent == {"x3": 950, "x2": 100}


def test_equal_multipliers_grant_the_higher_priority_one():
    engine = make_engine(multiplier("a", 2, priority=1), multiplier("b", 2, priority=5))
    assert campaign_ids(engine.evaluate(payment(), make_user())) == [None, "b"]


def test_equal_multipliers_of_equal_priority_grant_the_first_id():
    engine = make_engine(multiplier("b", 2), multiplier("a", 2))
    assert campaign_ids(engine.evaluate(payment(), make_user())) == [None, "a"]


def test_multiplier_below_an_applied_exclusive_cannot_win():
    engine = make_engine(discount("excl", percent=10, priority=10, exclusive=True),
                         multiplier("x2", 2, priority=10),
                         multiplier("x3", 3, priority=5))
    assert rewards(engine.evaluate(payment(), make_user())) == \
        [(None, POINTS, 100), ("excl", DISCOUNT, "10.00"), ("x2", POINTS, 100)]


def test_multiplier_below_an_applied_exclusive_cannot_win_whatever_the_ids():
    # Same campaigns as above with the ids swapped in order: the exclusive still applied
    # at priority 10, so the priority-5 multiplier must not be granted.
    engine = make_engine(discount("z-excl", percent=10, priority=10, exclusive=True),
                         multiplier("a-x2", 2, priority=10),
                         multiplier("a-x3", 3, priority=5))
    assert rewards(engine.evaluate(payment(), make_user())) == \
        [(None, POINTS, 100), ("a-x2", POINTS, 100), ("z-excl", DISCOUNT, "10.00")]


def test_exclusive_multiplier_that_wins_blocks_lower_priority_campaigns():
    engine = make_engine(multiplier("x3", 3, priority=10, exclusive=True),
                         discount("d", percent=10, priority=5))
    assert rewards(engine.evaluate(payment(), make_user())) == \
        [(None, POINTS, 100), ("x3", POINTS, 200)]


def test_exclusive_multiplier_wins_its_group_and_blocks_everything_lower():
    engine = make_engine(multiplier("x2", 2, priority=10, exclusive=True),
                         discount("d", percent=10, priority=5),
                         multiplier("x3", 3, priority=0))
    assert rewards(engine.evaluate(payment(), make_user())) == \
        [(None, POINTS, 100), ("x2", POINTS, 100)]


def test_exclusive_multiplier_refused_by_the_gate_blocks_nothing():
    gate = RecordingGate(refuse=frozenset({"x2"}))
    engine = make_engine(multiplier("x2", 2, priority=10, exclusive=True),
                         discount("d", percent=10, priority=5),
                         multiplier("x3", 3, priority=0))
    assert rewards(engine.evaluate(payment(), make_user(), gate)) == \
        [(None, POINTS, 100), ("d", DISCOUNT, "10.00"), ("x3", POINTS, 200)]


# --- discounts stacking ------------------------------------------------------------------

def test_discounts_stack_while_the_payment_has_room():
    engine = make_engine(discount("d1", percent=10, priority=2),
                         discount("d2", amount_off="5.00", priority=1))
    assert rewards(engine.evaluate(payment(), make_user())) == \
        [(None, POINTS, 100), ("d1", DISCOUNT, "10.00"), ("d2", DISCOUNT, "5.00")]


def test_three_discounts_never_take_the_payment_below_zero():
    engine = make_engine(discount("d1", amount_off="60.00", priority=3),
                         discount("d2", amount_off="30.00", priority=2),
                         discount("d3", percent=50, priority=1),
                         discount("d4", amount_off="1.00", priority=0))
    decision = engine.evaluate(payment("100.00"), make_user())
    assert rewards(decision) == [(None, POINTS, 100), ("d1", DISCOUNT, "60.00"),
                                 ("d2", DISCOUNT, "30.00"), ("d3", DISCOUNT, "10.00")]


def test_discount_cut_to_the_remainder_is_what_the_gate_reserves():
    gate = RecordingGate()
    engine = make_engine(discount("d1", amount_off="80.00", priority=1),
                         discount("d2", percent=50, priority=0))
    engine.evaluate(payment("100.00"), make_user(), gate)
    reserved = {campaign_id: reward.amount for campaign_id, reward, _ in gate.calls}
    assert reserved == {"d1": Decimal("80.00"), "d2": Decimal("20.00")}


def test_discount_after_the_payment_is_fully_discounted_is_not_asked_of_the_gate():
    gate = RecordingGate()
    engine = make_engine(discount("all", percent=100, priority=1),
                         discount("more", amount_off="1.00", priority=0))
    decision = engine.evaluate(payment("42.00"), make_user(), gate)
    assert rewards(decision) == [(None, POINTS, 42), ("all", DISCOUNT, "42.00")]
    assert gate.asked == ["all"]


def test_discount_refused_by_the_gate_leaves_the_payment_to_the_next():
    gate = RecordingGate(refuse=frozenset({"d1"}))
    engine = make_engine(discount("d1", amount_off="80.00", priority=1),
                         discount("d2", percent=50, priority=0))
    assert rewards(engine.evaluate(payment("100.00"), make_user(), gate)) == \
        [(None, POINTS, 100), ("d2", DISCOUNT, "50.00")]


def test_cashback_is_not_limited_by_what_remains_payable():
    engine = make_engine(discount("all", percent=100, priority=1),
                         bonus("welcome", on="first_payment", cashback="10.00", priority=0))
    assert rewards(engine.evaluate(payment("5.00"), new_user())) == \
        [(None, POINTS, 5), ("all", DISCOUNT, "5.00"), ("welcome", CASHBACK, "10.00")]


def test_base_points_are_earned_on_the_whole_payment_before_discounts():
    engine = make_engine(discount("half", percent=50))
    assert rewards(engine.evaluate(payment("100.00"), make_user())) == \
        [(None, POINTS, 100), ("half", DISCOUNT, "50.00")]


@settings(max_examples=300, deadline=None)
@given(amount_cents=st.integers(min_value=1, max_value=10_000_00),
       discounts=st.lists(st.one_of(
           st.tuples(st.just("percent"), st.integers(min_value=1, max_value=100)),
           st.tuples(st.just("amount_off"), st.integers(min_value=1, max_value=20_000_00))),
           min_size=1, max_size=5))
def test_stacked_discounts_never_exceed_the_payment(amount_cents, discounts):
    campaigns = []
    for index, (kind, value) in enumerate(discounts):
        if kind == "percent":
            campaigns.append(discount(f"d{index}", percent=value, priority=index))
        else:
            campaigns.append(discount(f"d{index}", amount_off=f"{value / 100:.2f}",
                                      priority=index))
    amount = Decimal(amount_cents).scaleb(-2)
    decision = make_engine(*campaigns).evaluate(payment(f"{amount:.2f}"), make_user())
    granted = [g.reward.amount for g in decision.grants if g.reward.kind == DISCOUNT]
    alone = [min(Decimal(value).scaleb(-2), amount) if kind == "amount_off"
             else round_half_up(amount * value / 100, "CNY") for kind, value in discounts]
    assert all(value > 0 for value in granted)
    # Each discount as it would be alone, cut only where the payment runs out.
    assert sum(granted, Decimal(0)) == min(amount, sum(alone, Decimal(0)))


# --- gates and budgets --------------------------------------------------------------------

def test_without_a_gate_shared_limits_have_room():
    engine = make_engine(discount("d", percent=10, budget={"amount": "0.01"},
                                  limits={"max_redemptions": 1}))
    assert campaign_ids(engine.evaluate(payment(), make_user())) == [None, "d"]


def test_reward_over_the_remaining_budget_is_skipped_not_cut_down():
    gate = BudgetGate(spent={"d": 9501})  # 95.01 of 100.00 spent: 4.99 left
    engine = make_engine(discount("d", percent=5, priority=1, budget={"amount": "100.00"}),
                         discount("next", percent=1, priority=0))
    assert rewards(engine.evaluate(payment("100.00"), make_user(), gate)) == \
        [(None, POINTS, 100), ("next", DISCOUNT, "1.00")]
    assert gate.spent == {"d": 9501, "next": 100}


def test_reward_that_exactly_fills_the_budget_is_granted():
    gate = BudgetGate(spent={"d": 9500})
    engine = make_engine(discount("d", percent=5, budget={"amount": "100.00"}))
    assert rewards(engine.evaluate(payment("100.00"), make_user(), gate)) == \
        [(None, POINTS, 100), ("d", DISCOUNT, "5.00")]
    assert gate.spent == {"d": 10000}


def test_campaign_at_max_redemptions_is_skipped():
    gate = BudgetGate(redeemed={"d": 10})
    engine = make_engine(discount("d", percent=5, limits={"max_redemptions": 10}))
    assert campaign_ids(engine.evaluate(payment(), make_user(), gate)) == [None]


def test_every_campaign_refused_by_the_gate_leaves_only_base_points():
    gate = RecordingGate(refuse=frozenset({"d", "x2"}))
    engine = make_engine(discount("d", percent=10), multiplier("x2", 2))
    decision = engine.evaluate(payment("100.00"), make_user(), gate)
    assert rewards(decision) == [(None, POINTS, 100)]
    assert decision.base_points == 100


def test_engine_reused_across_events_keeps_each_decision_its_own():
    engine = make_engine(discount("d", percent=10, conditions={"min_amount": "50.00"}))
    first = engine.evaluate(payment("60.00"), make_user())
    second = engine.evaluate(payment("40.00"), make_user())
    third = engine.evaluate(payment("40.00"), make_user())
    assert rewards(first) == [(None, POINTS, 60), ("d", DISCOUNT, "6.00")]
    assert rewards(second) == rewards(third) == [(None, POINTS, 40)]


def test_compiled_money_budget_is_in_minor_units():
    engine = make_engine(discount("d", percent=5, budget={"amount": "50000.00"}))
    assert engine.campaigns["d"].budget_limit == 5_000_000


def test_compiled_points_budget_is_in_points():
    engine = make_engine(multiplier("x2", 2, budget={"points": 1_000_000}))
    assert engine.campaigns["x2"].budget_limit == 1_000_000


def test_compiled_campaign_without_budget_has_no_limit():
    engine = make_engine(multiplier("x2", 2))
    assert engine.campaigns["x2"].budget_limit is None
    assert engine.campaigns["x2"].max_redemptions is None


# --- plugin failures ----------------------------------------------------------------------

def test_evaluator_that_raises_skips_only_its_campaign(probe, registry):
    probe.fail_evaluate.add("broken")
    errors = ErrorLog()
    engine = make_engine(probe_campaign("broken", registry, priority=5),
                         probe_campaign("fine", registry, params={"points": 7}),
                         discount("d", percent=10), registry=registry, on_error=errors)
    assert rewards(engine.evaluate(payment(), make_user())) == \
        [(None, POINTS, 100), ("d", DISCOUNT, "10.00"), ("fine", POINTS, 7)]


def test_evaluator_that_raises_is_reported_to_the_error_hook(probe, registry):
    probe.fail_evaluate.add("broken")
    errors = ErrorLog()
    engine = make_engine(probe_campaign("broken", registry), registry=registry, on_error=errors)
    engine.evaluate(payment(), make_user())
    assert [(campaign_id, type(exc), str(exc)) for campaign_id, exc in errors.errors] == \
        [("broken", ValueError, "broken is broken")]


def test_exclusive_whose_evaluator_raises_blocks_nothing(probe, registry):
    probe.fail_evaluate.add("broken")
    engine = make_engine(probe_campaign("broken", registry, priority=5, exclusive=True),
                         discount("d", percent=10), registry=registry, on_error=ErrorLog())
    assert campaign_ids(engine.evaluate(payment(), make_user())) == [None, "d"]


def test_evaluator_error_is_logged_by_default(probe, registry, caplog):
    probe.fail_evaluate.add("broken")
    engine = RulesEngine.compile([probe_campaign("broken", registry)], registry,
                                 currency="CNY", points_per_unit=Decimal(1))
    with caplog.at_level(logging.ERROR, logger="promo_engine.core.engine"):
        decision = engine.evaluate(payment(), make_user())
    assert campaign_ids(decision) == [None]
    assert [r.getMessage() for r in caplog.records] == \
        ["campaign broken (type probe) raised ValueError('broken is broken'); skipped"]


def test_type_whose_compile_raises_skips_only_its_campaign(probe, registry):
    probe.fail_compile.add("broken")
    errors = ErrorLog()
    engine = make_engine(probe_campaign("broken", registry), discount("d", percent=10),
                         registry=registry, on_error=errors)
    assert list(engine.campaigns) == ["d"]
    assert [(campaign_id, str(exc)) for campaign_id, exc in errors.errors] == \
        [("broken", "cannot compile broken")]
    assert campaign_ids(engine.evaluate(payment(), make_user())) == [None, "d"]


def test_type_that_is_not_installed_skips_only_its_campaign():
    errors = ErrorLog()
    engine = make_engine(make_campaign("ghost", "no_such_type", {"x": 1}),
                         discount("d", percent=10), on_error=errors)
    assert len(engine) == 1
    assert [(campaign_id, type(exc), str(exc)) for campaign_id, exc in errors.errors] == \
        [("ghost", LookupError, "no campaign type 'no_such_type' is installed")]
    assert campaign_ids(engine.evaluate(payment(), make_user())) == [None, "d"]


def test_type_whose_triggers_raise_skips_only_its_campaign(probe, registry):
    errors = ErrorLog()
    engine = make_engine(probe_campaign("bad-triggers", registry, params={"triggers": 7}),
                         discount("d", percent=10), registry=registry, on_error=errors)
    assert list(engine.campaigns) == ["d"]
    assert [campaign_id for campaign_id, _ in errors.errors] == ["bad-triggers"]


# --- the engine's own pieces ----------------------------------------------------------------

def test_engine_counts_its_compiled_campaigns():
    assert len(make_engine(discount("a", percent=1), multiplier("b", 2))) == 2


def test_engine_built_from_compiled_campaigns_evaluates_them():
    campaign = make_campaign("hand-made", "holiday_discount", {"percent": 20})

    def evaluate(ctx):
        return Reward(kind=DISCOUNT, campaign_id="hand-made", amount=Decimal("1.23"),
                      currency="CNY")
    engine = RulesEngine([CompiledCampaign(campaign, evaluate, frozenset({"payment"}), 2)],
                         currency="CNY", points_per_unit=Decimal(0))
    assert rewards(engine.evaluate(payment(), make_user())) == [("hand-made", DISCOUNT, "1.23")]


def test_evaluator_sees_the_event_user_and_base_points():
    seen = []
    campaign = make_campaign("spy", "holiday_discount", {"percent": 20})

    def evaluate(ctx):
        seen.append(ctx)
        return None
    engine = RulesEngine([CompiledCampaign(campaign, evaluate, frozenset({"payment"}), 2)],
                         currency="CNY", points_per_unit=Decimal(2))
    event, user = payment("12.34"), make_user(points_balance=70)
    engine.evaluate(event, user)
    assert seen == [EvaluationContext(event=event, user=user, base_points=24)]



# --- points paying part of a payment (redeem_points) ------------------------------------------

def engine_with(*campaigns, point_value: str = "0.01", points_per_unit: str = "1",
                registry=None) -> RulesEngine:
    return RulesEngine.compile(campaigns, registry or builtin_registry(), currency="CNY",
                               points_per_unit=Decimal(points_per_unit), minor_digits=2,
                               on_error=raise_on_error, point_value=Decimal(point_value))


def test_point_value_defaults_to_one_cent():
    assert make_engine().point_value == Decimal("0.01")


def test_compile_passes_the_point_value_to_the_engine():
    assert engine_with(point_value="0.05").point_value == Decimal("0.05")


def test_points_discount_is_redeem_points_times_point_value():
    discount_ = engine_with().points_discount(payment("100.00", redeem_points=1050))
    assert (discount_, str(discount_)) == (Decimal("10.50"), "10.50")


def test_points_discount_uses_the_configured_point_value():
    assert engine_with(point_value="0.05").points_discount(payment(redeem_points=30)) == \
        Decimal("1.50")


def test_points_discount_is_zero_without_redeem_points():
    assert engine_with().points_discount(payment("100.00")) == 0


def test_base_points_are_earned_on_the_amount_less_the_points_discount():
    decision = engine_with().evaluate(payment("100.00", redeem_points=1000), make_user())
    assert rewards(decision) == [(None, POINTS, 90)]
    assert decision.base_points == 90


def test_base_points_after_a_points_discount_round_down():
    engine = engine_with(points_per_unit="1.5")
    assert engine.base_points(payment("100.00", redeem_points=1001)) == 134  # 89.99 x 1.5


def test_base_points_of_a_payment_paid_wholly_with_points_are_zero():
    decision = engine_with().evaluate(payment("10.00", redeem_points=1000), make_user())
    assert (decision.grants, decision.base_points) == ((), 0)


def test_base_points_never_go_below_zero():
    assert engine_with().base_points(payment("10.00", redeem_points=5000)) == 0


def test_a_multiplier_works_on_the_base_points_left_after_the_points_discount():
    decision = engine_with(multiplier("x2", 2)).evaluate(
        payment("100.00", redeem_points=2000), make_user())
    assert rewards(decision) == [(None, POINTS, 80), ("x2", POINTS, 80)]


def test_plain_decisions_follow_the_base_points_not_the_amount():
    engine = engine_with()
    with_points = engine.evaluate(payment("100.00", redeem_points=1000), make_user())
    without = engine.evaluate(payment("100.00"), make_user())
    same_base = engine.evaluate(payment("90.00"), make_user())
    assert (with_points.base_points, without.base_points) == (90, 100)
    assert rewards(without) == [(None, POINTS, 100)]
    assert same_base is with_points


def test_points_discount_leaves_less_for_campaign_discounts():
    engine = engine_with(discount("d", amount_off="95.00"))
    assert rewards(engine.evaluate(payment("100.00", redeem_points=1000), make_user())) == \
        [(None, POINTS, 90), ("d", DISCOUNT, "90.00")]


def test_percent_discount_is_of_the_amount_and_capped_by_what_is_left():
    engine = engine_with(discount("d", percent=10))
    decision = engine.evaluate(payment("100.00"), make_user(), discounted=Decimal("95.00"))
    assert rewards(decision) == [(None, POINTS, 100), ("d", DISCOUNT, "5.00")]


def test_discounted_leaves_less_for_campaign_discounts():
    engine = engine_with(discount("d", amount_off="50.00"))
    decision = engine.evaluate(payment("100.00"), make_user(), discounted=Decimal("60.00"))
    assert rewards(decision) == [(None, POINTS, 100), ("d", DISCOUNT, "40.00")]


def test_discounted_and_points_discount_add_up():
    gate = RecordingGate()
    engine = engine_with(discount("d", amount_off="50.00"))
    decision = engine.evaluate(payment("100.00", redeem_points=3000), make_user(), gate,
                               discounted=Decimal("60.00"))
    assert rewards(decision) == [(None, POINTS, 70), ("d", DISCOUNT, "10.00")]
    assert [str(reward.amount) for _, reward, _ in gate.calls] == ["10.00"]


def test_nothing_left_after_vouchers_and_points_is_not_asked_of_the_gate():
    gate = RecordingGate()
    engine = engine_with(discount("d", amount_off="5.00"),
                         bonus("welcome", on="first_payment", cashback="3.00", priority=-1))
    decision = engine.evaluate(payment("100.00", redeem_points=4000), new_user(), gate,
                               discounted=Decimal("60.00"))
    assert rewards(decision) == [(None, POINTS, 60), ("welcome", CASHBACK, "3.00")]
    assert gate.asked == ["welcome"]


def test_discounted_does_not_change_base_points():
    engine = engine_with(discount("d", percent=10))
    decision = engine.evaluate(payment("100.00"), make_user(), discounted=Decimal("30.00"))
    assert decision.base_points == 100


# --- exchanges: campaigns a redemption names -------------------------------------------------

class ExchangeProbe(ProbeType):
    """An exchange type the tests control: `cost` points (10 by default) for its reward."""
    name = "probe_exchange"

    def triggers(self, params):
        return frozenset(params.get("triggers", ("redemption",)))

    def cost_points(self, params):
        return params.get("cost", 10)

    def compile(self, campaign):
        evaluate = super().compile(campaign)
        if campaign.params.get("nothing"):
            return lambda ctx: None
        return evaluate


@pytest.fixture
def exchanges():
    return ExchangeProbe()


@pytest.fixture
def exchange_registry(probe, exchanges):
    builtin = builtin_registry()
    return Registry(campaign_types={**builtin.campaign_types, "probe": probe,
                                    "probe_exchange": exchanges},
                    event_types=builtin.event_types)


def exchange_campaign(id, registry, **overrides):
    return make_campaign(id, "probe_exchange", overrides.pop("params", {}), registry=registry,
                         **overrides)


def redemption(campaign_id="offer", at=DEFAULT_AT, **fields):
    return Event(type="redemption", user_id="u_1", occurred_at=at, event_id="evt_r",
                 campaign_id=campaign_id, **fields)


def test_compiled_campaign_is_no_exchange_by_default():
    campaign = make_campaign("d", "holiday_discount", {"percent": 1})
    compiled = CompiledCampaign(campaign, lambda ctx: None, frozenset({"payment"}), 2)
    assert (compiled.cost_points, compiled.is_exchange) == (None, False)


def test_exchange_is_compiled_with_its_cost_points(exchange_registry):
    engine = make_engine(exchange_campaign("offer", exchange_registry, params={"cost": 250}),
                         registry=exchange_registry)
    assert (engine.exchange_campaign("offer").cost_points, len(engine)) == (250, 1)


def test_exchange_campaign_is_none_for_a_campaign_that_is_no_exchange():
    engine = make_engine(discount("d", percent=10))
    assert (engine.exchange_campaign("d"), engine.exchange_campaign("nope")) == (None, None)


def test_redemption_naming_an_exchange_has_it_as_its_only_candidate(exchange_registry):
    offer = exchange_campaign("offer", exchange_registry)
    engine = make_engine(offer, exchange_campaign("other", exchange_registry),
                         probe_campaign("on-redemption", exchange_registry,
                                        params={"triggers": ["redemption"]}),
                         registry=exchange_registry)
    assert [c.id for c in engine.candidates(redemption("offer"))] == ["offer"]


def test_redemption_of_an_exchange_outside_its_dates_gets_nothing(exchanges, exchange_registry):
    engine = make_engine(exchange_campaign("offer", exchange_registry, starts_at=DEFAULT_AT,
                                           ends_at=DEFAULT_AT + timedelta(days=1)),
                         registry=exchange_registry)
    user = make_user()
    for at in (DEFAULT_AT - timedelta(microseconds=1), DEFAULT_AT + timedelta(days=1)):
        assert engine.evaluate(redemption("offer", at=at), user).grants == ()
    assert exchanges.calls == []
    assert campaign_ids(engine.evaluate(redemption("offer"), user)) == ["offer"]


def test_redemption_naming_no_campaign_never_sees_exchanges(exchange_registry):
    engine = make_engine(exchange_campaign("offer", exchange_registry),
                         probe_campaign("on-redemption", exchange_registry,
                                        params={"triggers": ["redemption"]}),
                         registry=exchange_registry)
    assert [c.id for c in engine.candidates(redemption(None, points=5))] == ["on-redemption"]


def test_redemption_naming_a_campaign_that_is_no_exchange_has_no_candidates(exchange_registry):
    engine = make_engine(probe_campaign("on-redemption", exchange_registry,
                                        params={"triggers": ["redemption"]}),
                         registry=exchange_registry)
    assert engine.candidates(redemption("on-redemption")) == ()


def test_redemption_naming_an_unknown_campaign_has_no_candidates(exchange_registry):
    engine = make_engine(exchange_campaign("offer", exchange_registry),
                         registry=exchange_registry)
    assert engine.candidates(redemption("closed-offer")) == ()


def test_exchange_is_never_a_candidate_of_a_payment_even_if_it_triggers_on_one(
        exchanges, exchange_registry):
    engine = make_engine(exchange_campaign("offer", exchange_registry,
                                           params={"triggers": ["payment", "redemption"]}),
                         registry=exchange_registry)
    assert rewards(engine.evaluate(payment(), make_user())) == [(None, POINTS, 100)]
    assert exchanges.calls == []


def test_event_naming_an_exchange_whose_triggers_miss_its_type_has_no_candidates(
        exchange_registry):
    engine = make_engine(exchange_campaign("offer", exchange_registry),
                         registry=exchange_registry)
    assert engine.candidates(payment(campaign_id="offer")) == ()


def test_exchange_scoped_to_merchants_is_still_the_candidate_of_its_redemption(
        exchange_registry):
    engine = make_engine(exchange_campaign("offer", exchange_registry, merchants=["m_9"]),
                         registry=exchange_registry)
    assert [c.id for c in engine.candidates(redemption("offer"))] == ["offer"]


def test_redemption_of_an_exchange_is_granted_its_reward(exchange_registry):
    engine = make_engine(exchange_campaign("offer", exchange_registry, params={"points": 7}),
                         registry=exchange_registry)
    decision = engine.evaluate(redemption("offer"), make_user())
    assert (rewards(decision), decision.base_points) == ([("offer", POINTS, 7)], 0)


def test_exchange_outside_its_window_grants_nothing(exchange_registry):
    engine = make_engine(exchange_campaign("offer", exchange_registry,
                                           windows=[window(["sat", "sun"])]),
                         registry=exchange_registry)
    assert engine.evaluate(redemption("offer"), make_user()).grants == ()


def test_type_whose_cost_points_is_not_a_positive_int_skips_only_its_campaign(
        exchange_registry):
    log = ErrorLog()
    engine = make_engine(exchange_campaign("zero", exchange_registry, params={"cost": 0}),
                         exchange_campaign("text", exchange_registry, params={"cost": "5"}),
                         exchange_campaign("fine", exchange_registry),
                         registry=exchange_registry, on_error=log)
    assert list(engine.campaigns) == ["fine"]
    assert [(campaign_id, str(exc)) for campaign_id, exc in log.errors] == [
        ("zero", "cost_points returned 0, not an int >= 1"),
        ("text", "cost_points returned '5', not an int >= 1")]


# --- why an exchange does not apply (offer_unavailable) --------------------------------------

def reason(engine, event, user=None):
    return engine.unavailable_reason(event, user or make_user())


def test_unavailable_reason_is_none_when_the_exchange_applies(exchange_registry):
    engine = make_engine(exchange_campaign("offer", exchange_registry),
                         registry=exchange_registry)
    assert reason(engine, redemption("offer")) is None


def test_unavailable_reason_is_none_for_an_event_naming_no_campaign():
    assert reason(make_engine(), redemption(None, points=5)) is None


def test_unavailable_reason_for_a_campaign_that_is_not_open(exchange_registry):
    engine = make_engine(exchange_campaign("offer", exchange_registry),
                         registry=exchange_registry)
    assert reason(engine, redemption("spring-mall")) == "campaign spring-mall is not open"


def test_unavailable_reason_for_an_open_campaign_that_is_no_exchange():
    engine = make_engine(discount("spring-dining", percent=10))
    assert reason(engine, redemption("spring-dining")) == \
        "campaign spring-dining is not a points exchange"


def test_unavailable_reason_for_an_event_type_the_exchange_does_not_take(exchange_registry):
    engine = make_engine(exchange_campaign("offer", exchange_registry),
                         registry=exchange_registry)
    assert reason(engine, payment(campaign_id="offer")) == \
        "campaign offer does not apply to a payment event"


@pytest.mark.parametrize("at", [utc(2026, 12, 31, 15, 59, 59), utc(2027, 12, 31, 16, 0)])
def test_unavailable_reason_outside_the_campaigns_dates(exchange_registry, at):
    engine = make_engine(exchange_campaign("offer", exchange_registry),
                         registry=exchange_registry)
    assert reason(engine, redemption("offer", at=at)) == "outside the campaign's dates"


def test_unavailable_reason_outside_the_campaigns_hours(exchange_registry):
    # DEFAULT_AT is Tuesday 12:00 in Shanghai.
    engine = make_engine(exchange_campaign("offer", exchange_registry,
                                           windows=[window(None, "14:00", "18:00")]),
                         registry=exchange_registry)
    assert reason(engine, redemption("offer")) == "outside the campaign's hours"


def test_unavailable_reason_inside_the_campaigns_hours_is_none(exchange_registry):
    engine = make_engine(exchange_campaign("offer", exchange_registry,
                                           windows=[window(["tue"], "11:00", "13:00")]),
                         registry=exchange_registry)
    assert reason(engine, redemption("offer")) is None


@pytest.mark.parametrize("conditions", [{"min_amount": "1.00"}, {"channels": ["qr"]},
                                        {"attributes": {"segment": ["student"]}}])
def test_unavailable_reason_when_the_conditions_are_not_met(exchange_registry, conditions):
    engine = make_engine(exchange_campaign("offer", exchange_registry, conditions=conditions),
                         registry=exchange_registry)
    assert reason(engine, redemption("offer", attributes={"segment": "retired"})) == \
        "the campaign's conditions are not met"


def test_unavailable_reason_is_none_when_the_conditions_are_met(exchange_registry):
    engine = make_engine(exchange_campaign("offer", exchange_registry,
                                           conditions={"channels": ["app"]}),
                         registry=exchange_registry)
    assert reason(engine, redemption("offer", channel="app")) is None


def test_unavailable_reason_when_the_per_user_limit_is_reached(exchange_registry):
    engine = make_engine(exchange_campaign("offer", exchange_registry,
                                           limits={"per_user": 2}),
                         registry=exchange_registry)
    assert reason(engine, redemption("offer"), make_user(campaign_uses={"offer": 2})) == \
        "the user's limit for this campaign is reached"
    assert reason(engine, redemption("offer"), make_user(campaign_uses={"offer": 1})) is None


def test_unavailable_reason_counts_the_daily_limit_on_the_campaigns_local_day(
        exchange_registry):
    # 2027-06-15 20:00 UTC is already 2027-06-16 04:00 in Shanghai.
    engine = make_engine(exchange_campaign("offer", exchange_registry,
                                           limits={"per_user_daily": 1}),
                         registry=exchange_registry)
    event = redemption("offer", at=utc(2027, 6, 15, 20, 0))
    assert reason(engine, event, make_user(daily_uses={("offer", date(2027, 6, 16)): 1})) == \
        "the user's limit for this campaign is reached"
    assert reason(engine, event, make_user(daily_uses={("offer", date(2027, 6, 15)): 1})) \
        is None


def test_unavailable_reason_leaves_budget_and_stock_to_the_gate(exchange_registry):
    engine = make_engine(exchange_campaign("offer", exchange_registry,
                                           limits={"max_redemptions": 1}),
                         registry=exchange_registry)
    gate = BudgetGate(redeemed={"offer": 1})
    assert engine.evaluate(redemption("offer"), make_user(), gate).grants == ()
    assert reason(engine, redemption("offer")) is None


def test_unavailable_reason_when_the_type_gives_no_reward(exchange_registry):
    engine = make_engine(exchange_campaign("offer", exchange_registry,
                                           params={"nothing": True}),
                         registry=exchange_registry)
    assert reason(engine, redemption("offer")) == "the campaign gives no reward for this event"


def test_unavailable_reason_when_the_evaluator_raises(exchanges, exchange_registry):
    exchanges.fail_evaluate.add("offer")
    engine = make_engine(exchange_campaign("offer", exchange_registry),
                         registry=exchange_registry)
    assert reason(engine, redemption("offer")) == "the campaign gives no reward for this event"


def test_unavailable_reason_checks_dates_before_hours_conditions_and_limits(exchange_registry):
    engine = make_engine(exchange_campaign("offer", exchange_registry,
                                           windows=[window(["sat"])],
                                           conditions={"channels": ["qr"]},
                                           limits={"per_user": 1}),
                         registry=exchange_registry)
    user = make_user(campaign_uses={"offer": 1})
    assert [reason(engine, redemption("offer", at=at), user)
            for at in (utc(2028, 1, 1), DEFAULT_AT, utc(2027, 6, 19, 4, 0))] == [
        "outside the campaign's dates", "outside the campaign's hours",
        "the campaign's conditions are not met"]


def test_equal_dates_sets_and_windows_of_campaigns_are_one_object_in_the_engine():
    """The hot loop reads them for every candidate: shared, a few objects stay in the CPU
    caches. The campaigns themselves keep their own values."""
    first = discount("first", percent=10, conditions={"channels": ["qr"]},
                     windows=[window(None, "11:00", "14:00")])
    # the same instant written in another zone: equal, not the same object
    second = discount("second", percent=5,
                      starts_at=first.starts_at.astimezone(ZoneInfo("Asia/Shanghai")),
                      conditions={"channels": ["qr"]}, windows=[window(None, "11:00", "14:00")])
    assert second.starts_at is not first.starts_at
    engine = make_engine(first, second)
    a, b = engine.campaigns["first"], engine.campaigns["second"]
    for field in ("starts_at", "ends_at", "channels", "window_spans"):
        assert getattr(a, field) == getattr(b, field)
        assert getattr(a, field) is getattr(b, field), field
    assert (a.campaign.starts_at, b.campaign.starts_at) == (first.starts_at, second.starts_at)
    assert b.campaign.starts_at is second.starts_at
