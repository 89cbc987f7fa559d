"""`RulesEngine.evaluate` decides lazily (`core/lazy.py`); `evaluate_traced` evaluates every
campaign (explanations need each one's reward). The two must give the same decision and ask
the gate the same questions in the same order, on any campaigns: exclusive ones, stacking
discounts, points multipliers (declared, and a third-party one that declares nothing), a
second stacking group, budgets and max_redemptions, per-user limits, dates, the risk policy's caps
and holds, a denylisted user. And the lazy path really skips: evaluators counted.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_FLOOR, Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import INCLUDE, Schema

from promo_engine.core.campaign_type import CampaignType, Stacking, UserState
from promo_engine.core.engine import RulesEngine
from promo_engine.core.registry import Registry
from promo_engine.core.rewards import CASHBACK, Reward, money_reward, points_reward
from promo_engine.core.risk import RiskCounters, RiskPolicy
from promo_engine.plugins.points_multiplier import STACKING_GROUP, PointsMultiplier

from factories import (DEFAULT_AT, BudgetGate, builtin_registry, make_campaign, payment,
                       raise_on_error, window)

DAY = date(2027, 6, 15)  # DEFAULT_AT's day in Shanghai, where the campaigns run

CALLS: list[str] = []  # the campaign ids whose evaluator ran, in order


class AnyParams(Schema):
    class Meta:
        unknown = INCLUDE


class Counted(CampaignType):
    """Wraps a built-in type so that every evaluator call is counted."""

    def __init__(self, inner: CampaignType, declare: bool = True):
        self.inner, self.declare = inner, declare
        self.name, self.params_schema = inner.name, inner.params_schema

    def triggers(self, params):
        return self.inner.triggers(params)

    def reward_unit(self, params):
        return self.inner.reward_unit(params)

    def stacking(self, params):
        return self.inner.stacking(params) if self.declare else None

    def compile(self, campaign):
        evaluate = self.inner.compile(campaign)

        def counted(ctx):
            CALLS.append(campaign.id)
            return evaluate(ctx)
        return counted


class LegacyMultiplier(CampaignType):
    """A third-party multiplier written before `stacking` existed: same group, undeclared."""
    name = "legacy_multiplier"
    params_schema = AnyParams

    def triggers(self, params):
        return frozenset({"payment"})

    def reward_unit(self, params):
        return "points"

    def compile(self, campaign):
        multiplier = Decimal(campaign.params["multiplier"])

        def evaluate(ctx):
            CALLS.append(campaign.id)
            extra = int((ctx.base_points * multiplier).to_integral_value(ROUND_FLOOR)) \
                - ctx.base_points
            return points_reward(extra, campaign.id, stacking_group=STACKING_GROUP,
                                 rank=multiplier) if extra > 0 else None
        return evaluate


class TierBonus(CampaignType):
    """A second, declared stacking group ("tier"); no reward below its `min` amount."""
    name = "tier_bonus"
    params_schema = AnyParams

    def triggers(self, params):
        return frozenset({"payment"})

    def reward_unit(self, params):
        return "points"

    def stacking(self, params):
        return Stacking("tier", Decimal(params["rank"]))

    def compile(self, campaign):
        rank, least = Decimal(campaign.params["rank"]), Decimal(campaign.params["min"])

        def evaluate(ctx):
            CALLS.append(campaign.id)
            if ctx.event.amount < least:
                return None
            return points_reward(int(rank * 10), campaign.id, stacking_group="tier", rank=rank)
        return evaluate


class Cashback(CampaignType):
    """Money cashback (capped by the risk policy, held above its value)."""
    name = "cashback"
    params_schema = AnyParams

    def triggers(self, params):
        return frozenset({"payment"})

    def reward_unit(self, params):
        return "money"

    def compile(self, campaign):
        rate = Decimal(campaign.params["percent"]) / 100

        def evaluate(ctx):
            CALLS.append(campaign.id)
            value = (ctx.event.amount * rate).quantize(Decimal("0.01"))
            return money_reward(CASHBACK, value, "CNY", campaign.id) if value else None
        return evaluate


def registry(declare: bool = True) -> Registry:
    builtin = builtin_registry()
    types = {name: Counted(t, declare) for name, t in builtin.campaign_types.items()}
    for extra in (LegacyMultiplier(), TierBonus(), Cashback()):
        types[extra.name] = extra
    return Registry(campaign_types=types, event_types=builtin.event_types)


@dataclass
class LoggingGate:
    """The in-memory budgets, every question and its answer noted."""
    inner: BudgetGate = field(default_factory=BudgetGate)
    asked: list = field(default_factory=list)

    def reserve(self, campaign, reward: Reward, local_day: date) -> bool:
        answer = self.inner.reserve(campaign, reward, local_day)
        self.asked.append((campaign.id, reward, local_day, answer))
        return answer


# --- random campaign sets -------------------------------------------------------------------

KINDS = ("percent", "amount_off", "multiplier", "legacy", "tier", "cashback")


@st.composite
def campaign_specs(draw, index: int):
    kind = draw(st.sampled_from(KINDS))
    params, type_, money = {}, None, True
    if kind == "percent":
        type_, params = "holiday_discount", {"percent": draw(st.sampled_from(("5", "10", "50")))}
        if draw(st.booleans()):
            params["max_discount"] = draw(st.sampled_from(("3.00", "20.00")))
    elif kind == "amount_off":
        type_, params = "holiday_discount", {"amount_off": draw(st.sampled_from(("5.00", "80.00")))}
    elif kind == "multiplier":
        type_, money = "points_multiplier", False
        params = {"multiplier": draw(st.sampled_from(("1.5", "2", "3")))}
    elif kind == "legacy":
        type_, money = "legacy_multiplier", False
        params = {"multiplier": Decimal(draw(st.sampled_from(("1.5", "2", "4"))))}
    elif kind == "tier":
        type_, money = "tier_bonus", False
        params = {"rank": draw(st.sampled_from(("1", "2", "3"))),
                  "min": draw(st.sampled_from(("0", "50")))}
    else:
        type_, params = "cashback", {"percent": draw(st.sampled_from(("2", "10")))}
    overrides = dict(priority=draw(st.sampled_from((0, 10, 10, 20))),
                     exclusive=draw(st.booleans()) and draw(st.booleans()),
                     merchants=draw(st.sampled_from((None, None, ("m_1",), ("m_2",)))))
    conditions = {}
    if draw(st.booleans()):
        conditions["min_amount"] = draw(st.sampled_from(("20.00", "100.00")))
    if draw(st.integers(0, 3)) == 0:
        conditions["channels"] = draw(st.sampled_from((["qr"], ["nfc", "online"])))
    if conditions:
        overrides["conditions"] = conditions
    if draw(st.integers(0, 3)) == 0:  # lunch only, or not on Tuesdays
        overrides["windows"] = [draw(st.sampled_from((
            window(None, "11:00", "14:00"), window(["mon", "wed", "thu", "fri", "sat", "sun"]))))]
    if draw(st.integers(0, 5)) == 0:
        overrides["holdout"] = 50
    dates = draw(st.integers(0, 4))  # events come 0, 3 and 9 hours after DEFAULT_AT
    if dates == 0:
        overrides["starts_at"] = DEFAULT_AT + timedelta(hours=3)
    elif dates == 1:
        overrides["ends_at"] = DEFAULT_AT + timedelta(hours=3)
    budget = draw(st.sampled_from((None, None, "small", "large")))
    if budget is not None:
        size = {"small": ("6.00", 30), "large": ("100.00", 400)}[budget]
        overrides["budget"] = {"amount": size[0]} if money else {"points": size[1]}
    limit = draw(st.sampled_from((None, None, None, "max_redemptions", "per_user",
                                  "per_user_daily", "per_device")))
    if limit is not None:
        overrides["limits"] = {limit: draw(st.integers(1, 2))}
    return f"c{index:02d}", type_, params, overrides


@st.composite
def scenarios(draw):
    count = draw(st.integers(1, 9))
    specs = [draw(campaign_specs(i)) for i in range(count)]
    events = draw(st.lists(st.tuples(st.sampled_from(("0.50", "12.00", "60.00", "150.00", "900.00")),
                                     st.sampled_from(("m_1", "m_2", "m_3")),
                                     st.sampled_from((0, 3, 9)),  # hours after Tuesday noon
                                     st.sampled_from(("qr", "nfc", "online")),
                                     st.sampled_from((None, "d_1"))),
                           min_size=1, max_size=6))
    policy = draw(st.sampled_from((None, "caps", "hold")))
    uses = draw(st.dictionaries(st.sampled_from([s[0] for s in specs]), st.integers(0, 2),
                                max_size=3))  # per campaign: uses, today's, the device's
    denied = draw(st.integers(0, 9)) == 0
    return specs, events, policy, uses, denied


POLICIES = {
    None: None,
    "caps": RiskPolicy(user_daily_reward_amount=Decimal("40.00"),
                       user_monthly_cashback=Decimal("9.00")),
    "hold": RiskPolicy(hold_cashback_above=Decimal("5.00")),
}


def build(specs, policy, declare: bool = True) -> RulesEngine:
    reg = registry(declare)
    campaigns = [make_campaign(id, type_, params, registry=reg, **dict(overrides))
                 for id, type_, params, overrides in specs]
    return RulesEngine.compile(campaigns, reg, currency="CNY", points_per_unit=Decimal(1),
                               on_error=raise_on_error, risk_policy=POLICIES[policy])


def run(engine: RulesEngine, events, uses, denied, traced: bool):
    """Decisions for the events in order, with one gate for all of them (budgets carry
    over), and the gate's questions."""
    gate = LoggingGate()
    user = UserState(user_id="u_1", activations=1, payments=1, campaign_uses=uses,
                     daily_uses={(id, DAY): n for id, n in uses.items()},
                     device_uses=dict(uses), denied=denied,
                     risk=RiskCounters(user_day_minor=1500))
    decisions = []
    for n, (amount, merchant, hours, channel, device) in enumerate(events):
        event = payment(amount, merchant, DEFAULT_AT + timedelta(hours=hours),
                        event_id=f"e{n}", channel=channel, device_id=device)
        if traced:
            decisions.append(engine.evaluate_traced(event, user, gate)[0])
        else:
            decisions.append(engine.evaluate(event, user, gate))
    return decisions, gate.asked


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_lazy_decisions_equal_the_full_evaluation(scenario):
    specs, events, policy, uses, denied = scenario
    engine = build(specs, policy)
    lazy = run(engine, events, uses, denied, traced=False)
    full = run(engine, events, uses, denied, traced=True)
    assert lazy == full
    # Declaring the stacking group changes nothing but which evaluators run.
    assert run(build(specs, policy, declare=False), events, uses, denied, traced=False) == lazy


# --- what the lazy path skips ---------------------------------------------------------------

def test_a_multiplier_a_higher_one_beats_is_never_evaluated():
    reg = registry()
    engine = RulesEngine.compile(
        [make_campaign(f"x{m}", "points_multiplier", {"multiplier": m}, registry=reg,
                       priority=p) for m, p in (("2", 30), ("5", 0), ("3", 10))],
        reg, currency="CNY", points_per_unit=Decimal(1), on_error=raise_on_error)
    CALLS.clear()
    decision = engine.evaluate(payment("100.00"), UserState(user_id="u_1"))
    assert [(g.reward.campaign_id, g.reward.points) for g in decision.grants] == \
        [(None, 100), ("x5", 400)]
    assert CALLS == ["x5"]
    CALLS.clear()
    assert engine.evaluate_traced(payment("100.00"), UserState(user_id="u_1"))[0] == decision
    assert CALLS == ["x2", "x3", "x5"]  # the full path, for explanations, evaluates all


def test_when_the_best_multiplier_has_no_budget_the_next_is_evaluated():
    reg = registry()
    engine = RulesEngine.compile(
        [make_campaign("x5", "points_multiplier", {"multiplier": "5"}, registry=reg,
                       budget={"points": 10}),
         make_campaign("x3", "points_multiplier", {"multiplier": "3"}, registry=reg),
         make_campaign("x2", "points_multiplier", {"multiplier": "2"}, registry=reg)],
        reg, currency="CNY", points_per_unit=Decimal(1), on_error=raise_on_error)
    CALLS.clear()
    gate = LoggingGate()
    decision = engine.evaluate(payment("100.00"), UserState(user_id="u_1"), gate)
    assert [(g.reward.campaign_id, g.reward.points) for g in decision.grants] == \
        [(None, 100), ("x3", 200)]
    assert CALLS == ["x5", "x3"]
    assert [(id, answer) for id, _, _, answer in gate.asked] == [("x5", False), ("x3", True)]


def test_nothing_below_an_exclusive_grant_is_evaluated():
    reg = registry()
    engine = RulesEngine.compile(
        [make_campaign(f"d{p}", "holiday_discount", {"percent": "10"}, registry=reg,
                       priority=p, exclusive=True) for p in (30, 20, 10)],
        reg, currency="CNY", points_per_unit=Decimal(0), on_error=raise_on_error)
    CALLS.clear()
    decision = engine.evaluate(payment("100.00"), UserState(user_id="u_1"))
    assert [(g.reward.campaign_id, g.reward.amount) for g in decision.grants] == \
        [("d30", Decimal("10.00"))]
    assert CALLS == ["d30"]


class Liar(TierBonus):
    """Declares rank 3 and returns rank 1: a plugin bug."""
    name = "liar"

    def stacking(self, params):
        return Stacking("tier", Decimal(3))


def test_a_reward_outside_its_declared_group_or_rank_is_reported_and_skipped():
    reg = registry()
    reg = Registry(campaign_types={**reg.campaign_types, "liar": Liar()},
                   event_types=reg.event_types)
    errors = []
    engine = RulesEngine.compile(
        [make_campaign("liar", "liar", {"rank": "1", "min": "0"}, registry=reg),
         make_campaign("t2", "tier_bonus", {"rank": "2", "min": "0"}, registry=reg)],
        reg, currency="CNY", points_per_unit=Decimal(1),
        on_error=lambda campaign, exc: errors.append((campaign.id, str(exc))))
    for decide in (engine.evaluate, lambda e, u: engine.evaluate_traced(e, u)[0]):
        errors.clear()
        decision = decide(payment("100.00"), UserState(user_id="u_1"))
        assert [g.reward.campaign_id for g in decision.grants] == [None, "t2"]
        assert errors == [("liar", "reward of stacking group 'tier' rank 1, not the declared "
                                   "'tier' rank 3")]


def test_a_malformed_declaration_skips_the_campaign_at_compile():
    class Broken(TierBonus):
        name = "broken"

        def stacking(self, params):
            return ("tier", 2.0)  # a float rank

    reg = registry()
    reg = Registry(campaign_types={**reg.campaign_types, "broken": Broken()},
                   event_types=reg.event_types)
    errors = []
    engine = RulesEngine.compile(
        [make_campaign("b", "broken", {"rank": "1", "min": "0"}, registry=reg)], reg,
        currency="CNY", points_per_unit=Decimal(1),
        on_error=lambda campaign, exc: errors.append(campaign.id))
    assert len(engine) == 0 and errors == ["b"]


def test_the_builtin_multiplier_declares_its_group_and_rank():
    assert PointsMultiplier().stacking({"multiplier": Decimal("2.5")}) == \
        Stacking(STACKING_GROUP, Decimal("2.5"))
    assert CampaignType.stacking(PointsMultiplier(), {}) is None  # the default: undeclared


def test_two_open_groups_ask_the_gate_in_the_full_paths_order():
    # The tier group's first member gives nothing for 12.00, so the full path's first group
    # proposal is the multiplier's: its group is settled first.
    reg = registry()
    engine = RulesEngine.compile(
        [make_campaign("t-high", "tier_bonus", {"rank": "3", "min": "50"}, registry=reg,
                       priority=30),
         make_campaign("x2", "points_multiplier", {"multiplier": "2"}, registry=reg,
                       priority=20),
         make_campaign("t-low", "tier_bonus", {"rank": "1", "min": "0"}, registry=reg,
                       priority=10)],
        reg, currency="CNY", points_per_unit=Decimal(1), on_error=raise_on_error)
    user = UserState(user_id="u_1")
    lazy, full = LoggingGate(), LoggingGate()
    decision = engine.evaluate(payment("12.00"), user, lazy)
    assert decision == engine.evaluate_traced(payment("12.00"), user, full)[0]
    assert [(g.reward.campaign_id, g.reward.points) for g in decision.grants] == \
        [(None, 12), ("x2", 12), ("t-low", 10)]
    assert [id for id, _, _, _ in lazy.asked] == [id for id, _, _, _ in full.asked] == \
        ["x2", "t-low"]
