"""One campaign document (as marketing writes it in YAML) in, a validated `Campaign` out.

The document is a plain mapping: this module knows nothing of files or line numbers
(`campaigns/files.py` maps the errors back to lines). Errors come out marshmallow-style,
a nested dict from field path to messages, so every problem is reported at once.

Times: `starts_at`/`ends_at` are local times in the campaign's timezone unless written
with an explicit offset. On a DST change an ambiguous local time means its first
occurrence (fold=0) and a nonexistent one (inside the gap) is moved forward by the gap,
e.g. 02:30 on a spring-forward night in New York is 03:30 EDT.
"""
from __future__ import annotations

import hashlib
import json
import re
from datetime import date, datetime, time, timezone
from decimal import Decimal
from typing import Any, Mapping
from zoneinfo import ZoneInfo

from marshmallow import (RAISE, Schema, ValidationError, fields, post_load, pre_load, validate,
                         validates, validates_schema)

from promo_engine.core import params as params_module
from promo_engine.core.campaign import WEEKDAYS, Budget, Campaign, Conditions, Limits, Window
from promo_engine.core.params import Money, StrictInteger

ID_PATTERN = re.compile(r"[a-z0-9-]{1,64}")
MERCHANT_ID_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
TIME_PATTERN = re.compile(r"([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?")
MCC_PATTERN = re.compile(r"[0-9]{4}")

NULL_MESSAGE = "must not be empty: give a value or remove the key"
MAX_COUNT = 1_000_000_000
MAX_POINTS = 10**15
MAX_PRIORITY = 1_000_000_000
RANGE_MESSAGE = "must be a whole number from {min} to {max}"


class CampaignInvalid(ValueError):
    """A campaign document that does not validate; `messages` maps field paths to messages."""

    def __init__(self, messages: Mapping):
        self.messages = messages
        super().__init__("; ".join(f"{format_path(path)}: {message}" if path else message
                                   for path, message in flatten_messages(messages)))


def flatten_messages(messages, prefix: tuple = ()) -> list[tuple[tuple, str]]:
    """Marshmallow's nested messages as (field path, message) pairs; `_schema` names no field."""
    if isinstance(messages, Mapping):
        pairs = []
        for key, value in messages.items():
            pairs.extend(flatten_messages(value, prefix if key == "_schema" else prefix + (key,)))
        return pairs
    if isinstance(messages, (list, tuple)):
        pairs = []
        for item in messages:
            pairs.extend(flatten_messages(item, prefix))
        return pairs
    return [(prefix, str(messages))]


def format_path(field_path: tuple) -> str:
    """("windows", 0, "to") -> "windows[0].to"."""
    text = ""
    for key in field_path:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else str(key))
    return text


# --- fields ---------------------------------------------------------------------------------

class Text(fields.String):
    """A string, given back as a plain `str` (YAML loaders hand out str subclasses)."""

    def _deserialize(self, value, attr, data, **kwargs):
        return str(super()._deserialize(value, attr, data, **kwargs))


class Pattern(Text):
    def __init__(self, pattern: re.Pattern, error: str, **kwargs):
        super().__init__(**kwargs)
        self.pattern = pattern
        self.error = error

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if not self.pattern.fullmatch(text):
            raise ValidationError(self.error)
        return text


class StrictBoolean(fields.Field):
    """true or false only: not "yes", 1 or "true"."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise ValidationError("must be true or false")
        return value


class TimeZoneName(Text):
    def _deserialize(self, value, attr, data, **kwargs):
        name = super()._deserialize(value, attr, data, **kwargs)
        try:
            ZoneInfo(name)
        except Exception:  # ZoneInfo raises several kinds for odd keys (ValueError, OSError)
            raise ValidationError(f"{name!r} is not an IANA time zone (e.g. Asia/Shanghai)") \
                from None
        return name


class LocalDateTime(fields.Field):
    """A date and time, local to the campaign unless it carries an offset; a date is midnight.

    Returns a plain datetime (naive = local); the schema turns it into UTC once the
    campaign's timezone is known.
    """

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.strip())
            except ValueError:
                raise ValidationError("must be a date and time such as 2027-02-05T10:00:00") \
                    from None
        elif isinstance(value, datetime):
            # Drop loader-specific subclasses (ruamel's TimeStamp) for a plain datetime.
            value = datetime(value.year, value.month, value.day, value.hour, value.minute,
                             value.second, value.microsecond, tzinfo=value.tzinfo)
        elif isinstance(value, date):
            value = datetime(value.year, value.month, value.day)
        else:
            raise ValidationError("must be a date and time such as 2027-02-05T10:00:00")
        return value


class TimeOfDay(fields.Field):
    """"HH:MM" (or a `datetime.time`); `to` fields read "00:00" and "24:00" as end of day (None)."""

    def __init__(self, *, end_of_day: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.end_of_day = end_of_day

    def _deserialize(self, value, attr, data, **kwargs):
        message = 'must be a time of day "HH:MM", e.g. "11:00"'
        if isinstance(value, time):
            if value.tzinfo is not None or value.microsecond:
                raise ValidationError(message)
            result = value
        elif isinstance(value, str):
            match = TIME_PATTERN.fullmatch(value.strip())
            if not match:
                raise ValidationError(message)
            hour, minute, second = (int(g) if g else 0 for g in match.groups())
            if self.end_of_day and (hour, minute, second) == (24, 0, 0):
                return None
            if hour > 23 or minute > 59 or second > 59:
                raise ValidationError(message)
            result = time(hour, minute, second)
        else:
            raise ValidationError(message)
        if self.end_of_day and result == time(0):
            return None
        return result


class Weekday(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str) and value.strip().lower() in WEEKDAYS:
            return WEEKDAYS.index(value.strip().lower())
        raise ValidationError(f"must be one of {', '.join(WEEKDAYS)}")


class MccCode(fields.Field):
    """A 4-digit merchant category code; a YAML number 1000-9999 is taken as its text."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, int) and not isinstance(value, bool) and 1000 <= value <= 9999:
            return str(int(value))
        if isinstance(value, str) and MCC_PATTERN.fullmatch(value):
            return str(value)
        raise ValidationError('write the code as a quoted 4-digit string, e.g. "5812"')


class NonEmptyList(fields.List):
    """A list that must hold something: an empty one is a slip, not "none"."""

    def __init__(self, inner, *, empty_message: str, **kwargs):
        super().__init__(inner, **kwargs)
        self.empty_message = empty_message

    def _deserialize(self, value, attr, data, **kwargs):
        items = super()._deserialize(value, attr, data, **kwargs)
        if not items:
            raise ValidationError(self.empty_message)
        return items


class UniqueList(NonEmptyList):
    """A non-empty list whose items may appear only once; the error names the repeat."""

    def _deserialize(self, value, attr, data, **kwargs):
        items = super()._deserialize(value, attr, data, **kwargs)
        seen = set()
        errors = {}
        for index, (item, raw) in enumerate(zip(items, value)):
            if item in seen:
                errors[index] = [f"{raw} is listed twice"]
            seen.add(item)
        if errors:
            raise ValidationError(errors)
        return items


class Attributes(fields.Field):
    """name -> list of accepted values, kept as strings ("true"/"false" for booleans)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, Mapping):
            raise ValidationError("must be a mapping of attribute name to accepted values, "
                                  "e.g. {segment: [student]}")
        result: dict[str, frozenset[str]] = {}
        errors: dict = {}
        for name, accepted in value.items():
            if not isinstance(name, str) or not 1 <= len(name) <= 64:
                errors[name] = ["attribute names are strings of 1 to 64 characters"]
                continue
            if not isinstance(accepted, list) or not accepted:
                errors[name] = ["must be a non-empty list of accepted values, e.g. [student]"]
                continue
            texts = set()
            for index, item in enumerate(accepted):
                if isinstance(item, bool):
                    texts.add("true" if item else "false")
                elif isinstance(item, int):
                    texts.add(str(int(item)))
                elif isinstance(item, str):
                    texts.add(str(item))
                elif isinstance(item, float):
                    errors.setdefault(name, {})[index] = [
                        'write a decimal as a quoted string, e.g. "4.5"']
                else:
                    errors.setdefault(name, {})[index] = [
                        "must be a string, a whole number, true or false"]
            result[str(name)] = frozenset(texts)
        if errors:
            raise ValidationError(errors)
        return result


class CampaignParams(fields.Field):
    """The type's own parameters, validated by the schema its plugin registered."""

    def _deserialize(self, value, attr, data, **kwargs):
        campaign_type = self.parent.campaign_type_of(data)
        if campaign_type is None:
            return value  # the `type` error says why; there is no schema to check against
        try:
            return campaign_type.params_schema().load(value)
        except ValidationError as exc:
            # Without the partly valid params, so later checks see none rather than some.
            raise ValidationError(exc.messages) from None
        except Exception as exc:  # a plugin's schema must not crash validation
            raise ValidationError(f"campaign type {campaign_type.name!r} could not read "
                                  f"its params: {exc!r}") from None


# --- schemas --------------------------------------------------------------------------------

class StrictSchema(Schema):
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


class ConditionsSchema(StrictSchema):
    min_amount = Money()
    mcc = NonEmptyList(MccCode(), empty_message="must list at least one code; remove mcc "
                                                 "for every merchant category")
    channels = NonEmptyList(Text(validate=validate.Length(min=1, max=64)),
                            empty_message="must list at least one channel; remove channels "
                                          "for every channel")
    attributes = Attributes()

    @post_load
    def make_conditions(self, data, **kwargs):
        return Conditions(
            min_amount=data.get("min_amount"),
            mcc=frozenset(data["mcc"]) if "mcc" in data else None,
            channels=frozenset(data["channels"]) if "channels" in data else None,
            attributes=data.get("attributes", {}),
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


# --- storing a document ---------------------------------------------------------------------

def canonical_spec(document: Mapping, default_timezone: str) -> dict:
    """A JSON-ready copy of a (valid) document with `timezone` filled in, which
    `load_campaign` turns into the same campaign; raises TypeError for values JSON cannot
    hold (binary, sets, tagged scalars)."""
    spec = _plain(document)
    if not isinstance(spec, dict):
        raise TypeError("a campaign document must be a mapping")
    spec.setdefault("timezone", default_timezone)
    return spec


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return datetime(value.year, value.month, value.day, value.hour, value.minute,
                        value.second, value.microsecond, tzinfo=value.tzinfo).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, time):
        return value.strftime("%H:%M:%S" if value.second else "%H:%M")
    if isinstance(value, Mapping):
        result = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"keys must be strings, not {type(key).__name__}")
            result[str(key)] = _plain(item)
        return result
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    raise TypeError(f"a value of type {type(value).__name__} cannot be stored")


def spec_hash(spec: Mapping) -> str:
    """sha256 of the canonical JSON (sorted keys, no whitespace)."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
