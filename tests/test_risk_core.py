"""The pure core of the abuse controls: per-device limits, the denylist flag and the risk
policy (caps across campaigns, the monthly cashback cap, holds), decided by the rules
engine from the counters the ledger gives it. The ledger's side, exact under concurrency,
is in test_device_limits.py, test_risk_caps.py and test_abuse_concurrency.py.
"""
from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from promo_engine.core.engine import RulesEngine
from promo_engine.core.risk import (NO_COUNTS, RiskCounters, RiskPolicy, risk_day, risk_month,
                                    usage_of)
from promo_engine.core.rewards import CASHBACK, DISCOUNT, money_reward, points_reward

from factories import (BudgetGate, RecordingGate, bonus, builtin_registry, campaign_ids,
                       discount, make_user, multiplier, new_user, payment, raise_on_error,
                       rewards, utc)

DAY = date(2027, 6, 15)  # DEFAULT_AT's day in Shanghai, where the test campaigns run


def engine_with(*campaigns, policy: RiskPolicy | None = None) -> RulesEngine:
    return RulesEngine.compile(campaigns, builtin_registry(), currency="CNY",
                               points_per_unit=Decimal(1), minor_digits=2,
                               on_error=raise_on_error, risk_policy=policy)


# --- per-device limits ------------------------------------------------------------------

def test_per_device_counts_the_device_not_the_user():
    engine = engine_with(discount("d", percent=10, limits={"per_device": 2}))
    on_device = payment(device_id="phone-1")
    assert campaign_ids(engine.evaluate(on_device, make_user(device_uses={"d": 1}))) == [None, "d"]
    # Another user on a device that used it twice: refused, base points still.
    assert rewards(engine.evaluate(on_device, make_user("u_2", device_uses={"d": 2}))) == \
        [(None, "points", 100)]


def test_an_event_without_a_device_is_not_limited_by_device_limits():
    engine = engine_with(discount("d", percent=10, limits={"per_device": 1,
                                                            "per_device_daily": 1}))
    user = make_user(device_uses={"d": 5}, device_daily_uses={("d", DAY): 5})
    assert campaign_ids(engine.evaluate(payment(), user)) == [None, "d"]


def test_per_device_daily_counts_the_campaigns_local_day():
    engine = engine_with(discount("d", percent=10, limits={"per_device_daily": 1}))
    event = payment(device_id="phone-1")
    used_yesterday = make_user(device_daily_uses={("d", date(2027, 6, 14)): 1})
    used_today = make_user(device_daily_uses={("d", DAY): 1})
    assert campaign_ids(engine.evaluate(event, used_yesterday)) == [None, "d"]
    assert campaign_ids(engine.evaluate(event, used_today)) == [None]


def test_a_device_limited_exclusive_campaign_lets_lower_ones_apply():
    engine = engine_with(discount("top", percent=20, priority=10, exclusive=True,
                                  limits={"per_device": 1}),
                         discount("low", percent=5))
    user = make_user(device_uses={"top": 1})
    assert rewards(engine.evaluate(payment(device_id="d-1"), user)) == \
        [(None, "points", 100), ("low", "discount", "5.00")]


# --- the denylist -----------------------------------------------------------------------

def test_a_denied_user_earns_base_points_only():
    engine = engine_with(discount("d", percent=10), multiplier("x3", 3))
    assert rewards(engine.evaluate(payment(), make_user(denied=True))) == [(None, "points", 100)]
    assert engine.risk_refusal(payment(), make_user(denied=True)) == \
        "the user or the device is on the denylist"


def test_a_denied_user_never_asks_the_gate():
    gate = RecordingGate()
    engine = engine_with(discount("d", percent=10, budget={"amount": "100.00"}))
    engine.evaluate(payment(), make_user(denied=True), gate)
    assert gate.calls == []


# --- the risk policy: caps on events ------------------------------------------------------

@pytest.mark.parametrize("counters, device, rewarded", [
    (RiskCounters(user_day_events=2), None, False),
    (RiskCounters(user_day_events=1), None, True),
    (RiskCounters(device_day_events=3), "phone", False),
    (RiskCounters(device_day_events=3), None, True),  # no device: not a device's event
    (RiskCounters(device_day_users=2), "phone", False),
    (RiskCounters(device_day_users=2, device_knows_user=True), "phone", True),
    (RiskCounters(device_day_users=1), "phone", True),
])
def test_event_caps(counters, device, rewarded):
    policy = RiskPolicy(user_daily_rewarded_events=2, device_daily_rewarded_events=3,
                        device_daily_users=2)
    engine = engine_with(discount("d", percent=10), policy=policy)
    decision = engine.evaluate(payment(device_id=device), make_user(risk=counters))
    assert campaign_ids(decision) == ([None, "d"] if rewarded else [None])


def test_refusal_reasons_name_the_rule():
    policy = RiskPolicy(user_daily_rewarded_events=2, device_daily_users=1)
    engine = engine_with(discount("d", percent=10), policy=policy)
    assert engine.risk_refusal(payment(), make_user(risk=RiskCounters(user_day_events=2))) == \
        "the user's rewarded events today reached the risk policy's 2"
    assert engine.risk_refusal(payment(device_id="p"),
                               make_user(risk=RiskCounters(device_day_users=1))) == \
        "the device's rewarded users today reached the risk policy's 1"
    assert engine.risk_refusal(payment(), make_user()) is None


def test_no_counters_yet_is_nothing_counted():
    policy = RiskPolicy(user_daily_rewarded_events=1)
    engine = engine_with(discount("d", percent=10), policy=policy)
    assert campaign_ids(engine.evaluate(payment(), new_user())) == [None, "d"]


# --- the risk policy: money caps ----------------------------------------------------------

def test_user_daily_amount_skips_a_reward_that_does_not_fit_and_never_cuts_it():
    policy = RiskPolicy(user_daily_reward_amount=Decimal("30.00"))
    engine = engine_with(discount("big", percent=20, priority=2),  # 20.00 of 100.00
                         discount("small", percent=5, priority=1),  # 5.00
                         policy=policy)
    user = make_user(risk=RiskCounters(user_day_minor=1_000))  # 10.00 used today: 20.00 left
    assert rewards(engine.evaluate(payment(), user)) == \
        [(None, "points", 100), ("big", "discount", "20.00")]
    user = make_user(risk=RiskCounters(user_day_minor=1_001))  # 19.99 left: big skipped
    assert rewards(engine.evaluate(payment(), user)) == \
        [(None, "points", 100), ("small", "discount", "5.00")]


def test_points_are_not_money_for_the_money_caps():
    policy = RiskPolicy(user_daily_reward_amount=Decimal("0.01"))
    engine = engine_with(multiplier("x2", 2), policy=policy)
    user = make_user(risk=RiskCounters(user_day_minor=1))
    assert rewards(engine.evaluate(payment(), user)) == \
        [(None, "points", 100), ("x2", "points", 100)]


def test_device_amount_applies_only_to_an_event_with_a_device():
    policy = RiskPolicy(device_daily_reward_amount=Decimal("10.00"))
    engine = engine_with(discount("d", percent=20), policy=policy)
    user = make_user(risk=RiskCounters(device_day_minor=0))
    assert campaign_ids(engine.evaluate(payment(device_id="p"), user)) == [None]
    assert campaign_ids(engine.evaluate(payment(), user)) == [None, "d"]


def test_monthly_cashback_cap_counts_cashback_only():
    policy = RiskPolicy(user_monthly_cashback=Decimal("100.00"))
    engine = engine_with(bonus("cb", on="first_payment", cashback="30.00"),
                         discount("d", percent=50), policy=policy)
    first = new_user(risk=RiskCounters(user_month_cashback_minor=7_000))  # 30.00 left
    assert rewards(engine.evaluate(payment(), first)) == \
        [(None, "points", 100), ("cb", "cashback", "30.00"), ("d", "discount", "50.00")]
    over = new_user(risk=RiskCounters(user_month_cashback_minor=7_001))
    assert rewards(engine.evaluate(payment(), over)) == \
        [(None, "points", 100), ("d", "discount", "50.00")]


def test_the_policy_asks_the_ledgers_gate_only_for_what_fits():
    gate = BudgetGate()
    policy = RiskPolicy(user_daily_reward_amount=Decimal("10.00"))
    engine = engine_with(discount("big", percent=20, priority=2, budget={"amount": "500.00"}),
                         discount("small", percent=5, priority=1, budget={"amount": "500.00"}),
                         policy=policy)
    decision = engine.evaluate(payment(), make_user(), gate)
    assert campaign_ids(decision) == [None, "small"]
    assert gate.spent == {"small": 500}  # big never took budget it could not keep


# --- holds ----------------------------------------------------------------------------------

def test_cashback_above_the_hold_value_is_granted_held():
    policy = RiskPolicy(hold_cashback_above=Decimal("100.00"))
    engine = engine_with(bonus("cb", on="first_payment", cashback="100.01"), policy=policy)
    decision = engine.evaluate(payment(), new_user())
    assert [(g.reward.campaign_id, g.held) for g in decision.grants] == \
        [(None, False), ("cb", True)]


def test_cashback_at_the_hold_value_and_other_kinds_are_not_held():
    policy = RiskPolicy(hold_cashback_above=Decimal("100.00"))
    engine = engine_with(bonus("cb", on="first_payment", cashback="100.00"),
                         discount("d", amount_off="500.00"), policy=policy)
    decision = engine.evaluate(payment("1000.00"), new_user())
    assert [(g.reward.campaign_id, g.held) for g in decision.grants] == \
        [(None, False), ("cb", False), ("d", False)]


def test_without_a_policy_nothing_is_held():
    engine = engine_with(bonus("cb", on="first_payment", cashback="5000.00"))
    assert [g.held for g in engine.evaluate(payment(), new_user()).grants] == [False, False]


# --- what the ledger counts -----------------------------------------------------------------

def test_usage_of_counts_campaign_money_and_cashback():
    engine = engine_with(bonus("cb", on="first_payment", cashback="12.34"),
                         discount("d", percent=10), multiplier("x2", 2))
    decision = engine.evaluate(payment(), new_user())
    assert usage_of(decision.grants, 2) == (1_234 + 1_000, 1_234)


def test_usage_of_an_event_with_base_points_only_is_none():
    engine = engine_with(discount("d", percent=10, merchants=["elsewhere"]))
    assert usage_of(engine.evaluate(payment(), make_user()).grants, 2) is None


def test_days_and_months_are_the_programs():
    from zoneinfo import ZoneInfo
    late = utc(2027, 3, 31, 16, 30)  # 00:30 on 1 April in Shanghai
    assert risk_day(late, ZoneInfo("Asia/Shanghai")) == date(2027, 4, 1)
    assert risk_day(late, ZoneInfo("UTC")) == date(2027, 3, 31)
    assert risk_month(date(2027, 4, 17)) == date(2027, 4, 1)


def test_an_empty_policy_is_no_policy():
    assert RiskPolicy().is_empty
    assert engine_with(discount("d", percent=10), policy=RiskPolicy()).risk is None
    assert NO_COUNTS == RiskCounters()


def test_money_reward_kinds_for_the_gate():
    from promo_engine.core.risk import RiskGate
    gate = RiskGate(None, 2, user_left=100, device_left=None, cashback_left=50)
    assert gate.reserve(None, money_reward(CASHBACK, Decimal("0.50"), "CNY", "c"), DAY)
    assert not gate.reserve(None, money_reward(CASHBACK, Decimal("0.01"), "CNY", "c"), DAY)
    assert gate.reserve(None, money_reward(DISCOUNT, Decimal("0.50"), "CNY", "c"), DAY)
    assert not gate.reserve(None, money_reward(DISCOUNT, Decimal("0.01"), "CNY", "c"), DAY)
    assert gate.reserve(None, points_reward(10_000, "c"), DAY)
    assert (gate.user_left, gate.cashback_left) == (0, 0)
