"""One campaign document (as marketing writes it in YAML) in, a validated `Campaign` out.

The document is a plain mapping: this module knows nothing of files or line numbers
(`campaigns/files.py` maps the errors back to lines). Errors come out marshmallow-style,
a nested dict from field path to messages, so every problem is reported at once, in a
`CampaignInvalid` (schema_errors.py). How each value is read is in field_types.py; how a
document is stored and fingerprinted, in spec.py.

Times: `starts_at`/`ends_at` are local times in the campaign's timezone unless written
with an explicit offset. On a DST change an ambiguous local time means its first
occurrence (fold=0) and a nonexistent one (inside the gap) is moved forward by the gap,
e.g. 02:30 on a spring-forward night in New York is 03:30 EDT.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Mapping
from zoneinfo import ZoneInfo

from marshmallow import (RAISE, Schema, ValidationError, fields, post_load, pre_load, validate,
                         validates, validates_schema)

from promo_engine.campaigns.field_types import (Attributes, CampaignParams, LocalDateTime,
                                                MccCode, NonEmptyList, Pattern, StrictBoolean,
                                                Text, TimeOfDay, TimeZoneName, UniqueList,
                                                Weekday)
from promo_engine.campaigns.schema_errors import CampaignInvalid
from promo_engine.core import params as params_module
from promo_engine.core.campaign import (Budget, Campaign, Conditions, Limits, UserConditions,
                                        Window)
from promo_engine.core.params import Money, StrictInteger

ID_PATTERN = re.compile(r"[a-z0-9-]{1,64}")
MERCHANT_ID_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,64}")

NULL_MESSAGE = "must not be empty: give a value or remove the key"
MAX_COUNT = 1_000_000_000
MAX_POINTS = 10**15
MAX_PRIORITY = 1_000_000_000
MAX_INACTIVE_DAYS = 36_500  # a hundred years: anything longer is a slip
MAX_HOLDOUT = 50  # percent: a control group larger than the treated group measures little
RANGE_MESSAGE = "must be a whole number from {min} to {max}"


class StrictSchema(Schema):
    """Unknown keys are errors (a misspelt key must not silently drop a setting) and an
    empty value says to give one or remove the key."""

    class Meta:
        unknown = RAISE

    error_messages = {"type": "must be a mapping of key: value lines"}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for field in self.fields.values():
            field.error_messages = {**field.error_messages, "null": NULL_MESSAGE}


class WindowSchema(StrictSchema):
    error_messages = {"type": 'must be a mapping such as {from: "11:00", to: "14:00"}'}

    days = UniqueList(Weekday(), empty_message="must list at least one day; "
                                                "remove days for every day")
    start = TimeOfDay(data_key="from", required=True)
    end = TimeOfDay(data_key="to", required=True, end_of_day=True)

    @validates_schema
    def to_after_from(self, data, **kwargs):
        if data["end"] is not None and data["end"] <= data["start"]:
            raise ValidationError('must be after from; windows cannot cross midnight, split '
                                  'them (e.g. from "22:00" to "00:00" and from "00:00" to '
                                  '"02:00")', field_name="to")

    @post_load
    def make_window(self, data, **kwargs):
        days = frozenset(data.get("days", range(7)))
        return Window(days=days, start=data["start"], end=data["end"])


def _whole_number(maximum: int):
    return StrictInteger(validate=validate.Range(min=0, max=maximum, error=RANGE_MESSAGE))


class UserConditionsSchema(StrictSchema):
    """`conditions.user`: the user's history before the event (`core/targeting.py`)."""
    error_messages = {"type": "must be a mapping such as {min_payments: 1, inactive_days: 30}"}

    min_payments = _whole_number(MAX_COUNT)
    max_payments = _whole_number(MAX_COUNT)
    inactive_days = _whole_number(MAX_INACTIVE_DAYS)

    @validates_schema
    def max_not_below_min(self, data, **kwargs):
        if data.get("max_payments", MAX_COUNT) < data.get("min_payments", 0):
            raise ValidationError("must be at least min_payments: no user could match",
                                  field_name="max_payments")

    @post_load
    def make_user_conditions(self, data, **kwargs):
        return UserConditions(**data) if data else None  # {}: no condition on history


class ConditionsSchema(StrictSchema):
    min_amount = Money()
    mcc = NonEmptyList(MccCode(), empty_message="must list at least one code; remove mcc "
                                                 "for every merchant category")
    channels = NonEmptyList(Text(validate=validate.Length(min=1, max=64)),
                            empty_message="must list at least one channel; remove channels "
                                          "for every channel")
    attributes = Attributes()
    user = fields.Nested(UserConditionsSchema)

    @post_load
    def make_conditions(self, data, **kwargs):
        return Conditions(
            min_amount=data.get("min_amount"),
            mcc=frozenset(data["mcc"]) if "mcc" in data else None,
            channels=frozenset(data["channels"]) if "channels" in data else None,
            attributes=data.get("attributes", {}),
            user=data.get("user"),
        )


class BudgetSchema(StrictSchema):
    amount = Money()
    points = StrictInteger(validate=validate.Range(min=1, max=MAX_POINTS, error=RANGE_MESSAGE))

    @validates_schema
    def exactly_one(self, data, **kwargs):
        if "amount" in data and "points" in data:
            raise ValidationError("give exactly one of amount or points", field_name="points")
        if "amount" not in data and "points" not in data:
            raise ValidationError("give exactly one of amount (money) or points")

    @post_load
    def make_budget(self, data, **kwargs):
        return Budget(amount=data.get("amount"), points=data.get("points"))


def _count(**kwargs):
    return StrictInteger(validate=validate.Range(min=1, max=MAX_COUNT, error=RANGE_MESSAGE),
                         **kwargs)


class LimitsSchema(StrictSchema):
    per_user = _count()
    per_user_daily = _count()
    max_redemptions = _count()
    per_device = _count()
    per_device_daily = _count()

    @post_load
    def make_limits(self, data, **kwargs):
        return Limits(**data)


class CampaignSchema(StrictSchema):
    """One campaign document; `load` returns a `Campaign` with times in UTC."""

    id = Pattern(ID_PATTERN, "must be 1 to 64 characters of a-z, 0-9 and - "
                             "(e.g. spring-dining)", required=True)
    type = Text(required=True)
    name = Text(validate=validate.Length(min=1, max=200,
                                         error="must be 1 to 200 characters"))
    merchants = UniqueList(
        Pattern(MERCHANT_ID_PATTERN, "must be 1 to 64 characters of A-Z a-z 0-9 _ . : -"),
        empty_message="must list at least one merchant; remove merchants for every merchant")
    timezone = TimeZoneName(required=True)  # filled in from the program's default first
    starts_at = LocalDateTime(required=True)
    ends_at = LocalDateTime(required=True)
    windows = NonEmptyList(fields.Nested(WindowSchema),
                           empty_message="must list at least one window; remove windows "
                                         "for the whole period")
    conditions = fields.Nested(ConditionsSchema)
    budget = fields.Nested(BudgetSchema)
    limits = fields.Nested(LimitsSchema)
    priority = StrictInteger(validate=validate.Range(min=-MAX_PRIORITY, max=MAX_PRIORITY,
                                                     error=RANGE_MESSAGE))
    exclusive = StrictBoolean()
    holdout = _whole_number(MAX_HOLDOUT)
    params = CampaignParams(required=True)  # an omitted params is checked as {}

    def __init__(self, *, registry, currency: str, default_timezone: str, **kwargs):
        super().__init__(**kwargs)
        self.registry = registry
        self.currency = currency
        self.default_timezone = default_timezone

    def campaign_type_of(self, data):
        name = data.get("type") if isinstance(data, Mapping) else None
        return self.registry.campaign_types.get(name) if isinstance(name, str) else None

    @pre_load
    def fill_defaults(self, data, **kwargs):
        if not isinstance(data, Mapping):
            return data
        filled = dict(data)
        filled.setdefault("timezone", self.default_timezone)
        filled.setdefault("params", {})
        return filled

    @validates("type")
    def registered_type(self, value, data_key, **kwargs):
        if value not in self.registry.campaign_types:
            known = ", ".join(sorted(self.registry.campaign_types)) or "none"
            raise ValidationError(f"unknown campaign type {value!r}; installed types: {known}")

    @validates_schema(skip_on_field_errors=False)
    def ends_after_starts(self, data, **kwargs):
        if "timezone" not in data:
            return
        zone = ZoneInfo(data["timezone"])
        instants = {}
        for name in ("starts_at", "ends_at"):
            if name in data:
                try:
                    instants[name] = to_utc(data[name], zone)
                except (OverflowError, ValueError):
                    raise ValidationError("is out of range", field_name=name) from None
        if len(instants) == 2 and instants["ends_at"] <= instants["starts_at"]:
            raise ValidationError("must be after starts_at", field_name="ends_at")

    @validates_schema(skip_on_field_errors=False)
    def budget_matches_reward(self, data, **kwargs):
        campaign_type = self.registry.campaign_types.get(data.get("type"))
        budget = data.get("budget")  # a dict of the valid part when budget has errors
        if campaign_type is None or not isinstance(budget, Budget) or "params" not in data:
            return
        try:
            unit = campaign_type.reward_unit(data["params"])
        except Exception as exc:  # a plugin bug is reported, not raised
            raise ValidationError(f"campaign type {campaign_type.name!r} could not tell its "
                                  f"reward unit: {exc!r}", field_name="params") from None
        if unit != budget.unit:
            given, wanted = (("amount", "points") if unit == "points" else ("points", "amount"))
            raise ValidationError({"budget": {given: [
                f"this campaign grants {unit}: use budget.{wanted}"]}})

    @post_load
    def make_campaign(self, data, **kwargs):
        zone = ZoneInfo(data["timezone"])
        return Campaign(
            id=data["id"],
            type=data["type"],
            name=data.get("name", data["id"]),
            timezone=data["timezone"],
            starts_at=to_utc(data["starts_at"], zone),
            ends_at=to_utc(data["ends_at"], zone),
            currency=self.currency,
            params=data["params"],
            merchants=frozenset(data["merchants"]) if "merchants" in data else None,
            windows=tuple(data.get("windows", ())),
            conditions=data.get("conditions", Conditions()),
            budget=data.get("budget"),
            limits=data.get("limits", Limits()),
            priority=data.get("priority", 0),
            exclusive=data.get("exclusive", False),
            holdout=data.get("holdout", 0),
        )


def to_utc(value: datetime, zone: ZoneInfo) -> datetime:
    """An aware value is that instant; a naive one is local time in `zone` (fold=0: the
    first of an ambiguous pair, and a time in a DST gap moves forward by the gap)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone, fold=0)
    return value.astimezone(timezone.utc)


def load_campaign(document: Mapping, *, registry, currency: str,
                  default_timezone: str) -> Campaign:
    """Validate one campaign document; raise `CampaignInvalid` with every problem found."""
    schema = CampaignSchema(registry=registry, currency=currency,
                            default_timezone=default_timezone)
    token = params_module.CURRENCY.set(currency)
    try:
        return schema.load(document)
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        raise CampaignInvalid(messages) from None
    finally:
        params_module.CURRENCY.reset(token)
