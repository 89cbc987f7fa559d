"""Builders for the pure core's values, with defaults that make a campaign apply.

Everything here is plain Python: no Flask, no database. A campaign built with
`make_campaign()` and a payment built with `payment()` match each other unless a test
changes one of them, so each test states only what it is about.

Params go through the campaign type's own `params_schema`, the way the YAML loader does,
so a test of the engine never hands a plugin params its schema would have refused.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, Iterable, Mapping
from zoneinfo import ZoneInfo

from marshmallow import RAISE, Schema, ValidationError

from promo_engine.core.campaign import WEEKDAYS, Budget, Campaign, Conditions, Limits, Window
from promo_engine.core.campaign_type import CampaignType, UserState
from promo_engine.core.engine import CompiledCampaign, Decision, RulesEngine
from promo_engine.core.event import ACTIVATION, PAYMENT, REFUND, Event
from promo_engine.core.params import CURRENCY as PARAMS_CURRENCY
from promo_engine.core.registry import Registry, build_registry, get_plugin_manager
from promo_engine.core.rewards import Reward

UTC = timezone.utc
SHANGHAI = "Asia/Shanghai"
CNY = "CNY"

# The default campaign runs for the whole of local 2027 in Shanghai.
DEFAULT_STARTS_AT = datetime(2026, 12, 31, 16, 0, tzinfo=UTC)  # 2027-01-01 00:00 +08:00
DEFAULT_ENDS_AT = datetime(2027, 12, 31, 16, 0, tzinfo=UTC)  # 2028-01-01 00:00 +08:00
# Tuesday 2027-06-15, 12:00 in Shanghai.
DEFAULT_AT = datetime(2027, 6, 15, 4, 0, tzinfo=UTC)

DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "first_activation_bonus": {"points": 100},
    "holiday_discount": {"percent": 10},
    "points_multiplier": {"multiplier": 2},
}

_REGISTRY: Registry | None = None


def builtin_registry() -> Registry:
    """The built-in types only: third-party entry points stay out of the tests."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = build_registry(get_plugin_manager(load_entry_points=False))
    return _REGISTRY


# --- time -------------------------------------------------------------------------------

def utc(*args: int) -> datetime:
    """utc(2027, 3, 1, 16, 0) -> an aware UTC datetime."""
    return datetime(*args, tzinfo=UTC)


def local(zone: str, *args: int, fold: int = 0) -> datetime:
    """The UTC instant of a local wall-clock time; fold=1 picks the second of a repeated hour."""
    return datetime(*args, tzinfo=ZoneInfo(zone), fold=fold).astimezone(UTC)


def _time(value: str | time | None) -> time | None:
    if value is None or isinstance(value, time):
        return value
    return time.fromisoformat(value)


def window(days: Iterable[str] | None = None, start: str | time = "00:00",
           end: str | time | None = None) -> Window:
    """window(["sat", "sun"], "11:00", "14:00"); days None = every day, end None = end of day."""
    names = WEEKDAYS if days is None else tuple(days)
    return Window(days=frozenset(WEEKDAYS.index(name) for name in names),
                  start=_time(start), end=_time(end))


# --- params and campaigns ----------------------------------------------------------------

def load_params(type_name: str, params: Mapping[str, Any], *, currency: str = CNY,
                registry: Registry | None = None) -> dict[str, Any]:
    """Validate params with the type's own schema, money checked against `currency`."""
    campaign_type = (registry or builtin_registry()).campaign_type(type_name)
    token = PARAMS_CURRENCY.set(currency)
    try:
        return campaign_type.params_schema().load(params)
    finally:
        PARAMS_CURRENCY.reset(token)


def params_errors(type_name: str, params: Mapping[str, Any], *,
                  currency: str = CNY) -> dict[str, Any]:
    """The messages the type's params schema gives for `params` ({} when they are valid)."""
    try:
        load_params(type_name, params, currency=currency)
    except ValidationError as exc:
        return exc.messages
    return {}


def _attribute_text(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def make_conditions(min_amount: str | None = None, mcc: Iterable[str] | None = None,
                    channels: Iterable[str] | None = None,
                    attributes: Mapping[str, Iterable[Any]] | None = None) -> Conditions:
    return Conditions(
        min_amount=None if min_amount is None else Decimal(min_amount),
        mcc=None if mcc is None else frozenset(mcc),
        channels=None if channels is None else frozenset(channels),
        attributes={name: frozenset(_attribute_text(v) for v in values)
                    for name, values in (attributes or {}).items()},
    )


def make_budget(amount: str | None = None, points: int | None = None) -> Budget:
    return Budget(amount=None if amount is None else Decimal(amount), points=points)


def make_campaign(id: str = "campaign-1", type: str = "holiday_discount",
                  params: Mapping[str, Any] | None = None, *,
                  registry: Registry | None = None, **overrides: Any) -> Campaign:
    """A campaign open for all of local 2027 in Shanghai, every merchant, no limits.

    Convenience forms: `merchants=[...]`, `windows=[window(...)]`,
    `conditions={"min_amount": "50.00", ...}`, `limits={"per_user": 1}`,
    `budget={"amount": "100.00"}` or `{"points": 500}`.
    """
    registry = registry or builtin_registry()
    currency = overrides.pop("currency", CNY)
    if params is None:
        params = DEFAULT_PARAMS.get(type, {})
    if registry.campaign_type(type) is not None:
        params = load_params(type, params, currency=currency, registry=registry)
    merchants = overrides.pop("merchants", None)
    conditions = overrides.pop("conditions", Conditions())
    limits = overrides.pop("limits", Limits())
    budget = overrides.pop("budget", None)
    values: dict[str, Any] = dict(
        id=id, type=type, name=id, timezone=SHANGHAI,
        starts_at=DEFAULT_STARTS_AT, ends_at=DEFAULT_ENDS_AT, currency=currency,
        params=params,
        merchants=None if merchants is None else frozenset(merchants),
        windows=tuple(overrides.pop("windows", ())),
        conditions=make_conditions(**conditions) if isinstance(conditions, Mapping) else conditions,
        limits=Limits(**limits) if isinstance(limits, Mapping) else limits,
        budget=make_budget(**budget) if isinstance(budget, Mapping) else budget,
    )
    values.update(overrides)
    return Campaign(**values)


def discount(id: str, *, percent: Any = None, amount_off: str | None = None,
             max_discount: str | None = None, **overrides: Any) -> Campaign:
    """A holiday_discount campaign: discount("d", percent=15), discount("d", amount_off="5.00")."""
    params: dict[str, Any] = {}
    if percent is not None:
        params["percent"] = percent
    if amount_off is not None:
        params["amount_off"] = amount_off
    if max_discount is not None:
        params["max_discount"] = max_discount
    return make_campaign(id, "holiday_discount", params, **overrides)


def multiplier(id: str, value: Any, **overrides: Any) -> Campaign:
    """A points_multiplier campaign: multiplier("x3", 3)."""
    return make_campaign(id, "points_multiplier", {"multiplier": value}, **overrides)


def bonus(id: str, **params_and_overrides: Any) -> Campaign:
    """A first_activation_bonus campaign: bonus("welcome", points=100, on="first_payment")."""
    params = {key: params_and_overrides.pop(key)
              for key in ("on", "points", "cashback", "voucher") if key in params_and_overrides}
    return make_campaign(id, "first_activation_bonus", params, **params_and_overrides)


def raise_on_error(campaign: Campaign, exc: BaseException) -> None:
    """The tests' default error hook: an unexpected plugin failure fails the test."""
    raise AssertionError(f"campaign {campaign.id} failed: {exc!r}") from exc


def make_engine(*campaigns: Campaign, registry: Registry | None = None, currency: str = CNY,
                points_per_unit: str | Decimal = "1", minor_digits: int = 2,
                on_error=raise_on_error) -> RulesEngine:
    return RulesEngine.compile(campaigns, registry or builtin_registry(), currency=currency,
                               points_per_unit=Decimal(points_per_unit),
                               minor_digits=minor_digits, on_error=on_error)


# --- events and users ----------------------------------------------------------------------

def payment(amount: str = "100.00", merchant_id: str | None = "m_1", at: datetime = DEFAULT_AT,
            *, user_id: str = "u_1", currency: str = CNY, event_id: str = "evt_1",
            **fields: Any) -> Event:
    return Event(type=PAYMENT, user_id=user_id, occurred_at=at, event_id=event_id,
                 merchant_id=merchant_id, amount=Decimal(amount), currency=currency, **fields)


def activation(at: datetime = DEFAULT_AT, *, user_id: str = "u_1", event_id: str = "evt_act",
               **fields: Any) -> Event:
    return Event(type=ACTIVATION, user_id=user_id, occurred_at=at, event_id=event_id, **fields)


def refund(amount: str = "100.00", original_event_id: str = "evt_1",
           merchant_id: str | None = "m_1", at: datetime = DEFAULT_AT, *,
           user_id: str = "u_1", event_id: str = "evt_refund", **fields: Any) -> Event:
    return Event(type=REFUND, user_id=user_id, occurred_at=at, event_id=event_id,
                 merchant_id=merchant_id, amount=Decimal(amount), currency=CNY,
                 original_event_id=original_event_id, **fields)


def make_user(user_id: str = "u_1", **fields: Any) -> UserState:
    """A user the ledger has seen once (activated, one payment) unless told otherwise."""
    fields.setdefault("activations", 1)
    fields.setdefault("payments", 1)
    return UserState(user_id=user_id, **fields)


def new_user(user_id: str = "u_1", **fields: Any) -> UserState:
    """A user the ledger has never seen: no activation, no payment."""
    return UserState(user_id=user_id, **fields)


# --- reading decisions ----------------------------------------------------------------------

def reward_row(reward: Reward) -> tuple[str | None, str, int | str]:
    """(campaign id, kind, points or amount as text): the amount's text checks its exponent."""
    value = reward.points if reward.points is not None else str(reward.amount)
    return (reward.campaign_id, reward.kind, value)


def rewards(decision: Decision) -> list[tuple[str | None, str, int | str]]:
    return [reward_row(grant.reward) for grant in decision.grants]


def campaign_ids(decision: Decision) -> list[str | None]:
    return [grant.reward.campaign_id for grant in decision.grants]


# --- a campaign type of the tests' own ------------------------------------------------------

class NoParams(Schema):
    """The params schema of a type that takes none: any param is refused."""

    class Meta:
        unknown = RAISE


class PaymentPointsType(CampaignType):
    """A points campaign on payments without params, for tests of what surrounds a type
    (plugins, the API, the consumer): subclasses give it a `name` and a `compile`."""
    params_schema = NoParams

    def triggers(self, params):
        return frozenset({PAYMENT})

    def reward_unit(self, params):
        return "points"


# --- gates --------------------------------------------------------------------------------

@dataclass
class RecordingGate:
    """Says yes except to the campaign ids in `refuse`; records every question."""
    refuse: frozenset[str] = frozenset()
    calls: list[tuple[str, Reward, date]] = field(default_factory=list)

    def reserve(self, campaign: CompiledCampaign, reward: Reward, local_day: date) -> bool:
        self.calls.append((campaign.id, reward, local_day))
        return campaign.id not in self.refuse

    @property
    def asked(self) -> list[str]:
        return [campaign_id for campaign_id, _, _ in self.calls]


@dataclass
class BudgetGate:
    """Budgets and max_redemptions kept in memory, the way the ledger keeps them in SQL."""
    minor_digits: int = 2
    spent: dict[str, int] = field(default_factory=dict)
    redeemed: dict[str, int] = field(default_factory=dict)

    def reserve(self, campaign: CompiledCampaign, reward: Reward, local_day: date) -> bool:
        cost = reward.budget_cost(self.minor_digits)
        spent = self.spent.get(campaign.id, 0)
        redeemed = self.redeemed.get(campaign.id, 0)
        if campaign.budget_limit is not None and spent + cost > campaign.budget_limit:
            return False
        if campaign.max_redemptions is not None and redeemed >= campaign.max_redemptions:
            return False
        self.spent[campaign.id] = spent + cost
        self.redeemed[campaign.id] = redeemed + 1
        return True


def minutes(start: datetime, end: datetime, step: timedelta = timedelta(minutes=1)):
    """Every `step` from start (inclusive) to end (exclusive)."""
    at = start
    while at < end:
        yield at
        at += step
