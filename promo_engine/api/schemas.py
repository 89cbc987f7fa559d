"""Marshmallow schemas of the wallet API: requests validated here, responses described here.

The same schemas generate /v1/openapi.json, so the description cannot drift from the code.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from marshmallow import (RAISE, Schema, ValidationError, fields, post_load, validate,
                         validates_schema)

from promo_engine.core import money
from promo_engine.core.event import ACTIVATION, PAYMENT, REFUND, Event

# The patterns below are both what the server enforces and what /v1/openapi.json states
# (apispec reads them from the fields), so the description cannot drift from the code.
ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
ID_MESSAGE = "must be 1-64 characters of A-Z a-z 0-9 _ . : -"
MCC_PATTERN = r"^[0-9]{4}$"
CHANNEL_PATTERN = r"^[A-Za-z0-9_.:-]{1,32}$"
MAX_FUTURE = timedelta(seconds=300)
FUTURE_MESSAGE = "is more than 300 seconds in the future"
# Nothing a wallet records happened before 1970, and the bound keeps every later step (time
# zones, day boundaries, expiry dates) clear of datetime's year 1. It is on the date as
# written, so that the description's pattern can state it ("19[7-9][0-9]" below).
EARLIEST_YEAR = 1970
# RFC 3339 date-time with an offset (hours 00-23, minutes 00-59). Second 60 is refused: the
# ledger's clock, like POSIX time, has no leap seconds, and "format": "date-time" alone
# would not settle it (validators differ: some refuse every second 60, some allow 23:59:60
# UTC). Days past the end of their month pass the pattern; "format": "date-time" in the
# description and the parsing in `Timestamp` refuse them.
OCCURRED_AT_PATTERN = (r"^(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
                       r"[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?"
                       r"([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$")
TIMESTAMP_MESSAGE = ("must be an RFC 3339 timestamp with offset, "
                     "e.g. 2026-11-22T10:30:00+08:00")
_OCCURRED_AT = re.compile(OCCURRED_AT_PATTERN)  # compiled once: every event is checked
# The same parts, loosely, to say which rule a refused timestamp breaks.
_TIMESTAMP_PARTS = re.compile(r"([0-9]{4})-[0-9]{2}-[0-9]{2}([Tt ])[0-9]{2}:[0-9]{2}:([0-9]{2})"
                              r"(?:\.[0-9]+)?(?:[Zz]|[+-]([0-9]{2}):([0-9]{2}))")
AMOUNT_SHAPE_MESSAGE = 'must be digits with an optional point followed by digits, e.g. "12.50"'
MAX_ATTRIBUTES = 32
MAX_ATTRIBUTE_TEXT = 256
# requests.py refuses U+0000 in every string of a body; attribute values are the only free
# text, so they are where the description has to say it.
ATTRIBUTE_TEXT_PATTERN = r"^[^\u0000]*$"
ATTRIBUTE_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
# apispec drops propertyNames from field metadata; openapi.py adds it to "attributes"
ATTRIBUTE_NAMES = {"pattern": "^" + ATTRIBUTE_NAME.pattern + "$"}


class FullMatch(validate.Regexp):
    """`validate.Regexp` on the whole value.

    marshmallow's Regexp uses `re.match`, where `$` also matches before a final newline, so
    "u_1\n" would pass `^...$`. The pattern (written for the OpenAPI description, where `$`
    is the end of the text) must match all of the value here.
    """

    def __call__(self, value):
        if not isinstance(value, str) or self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


def identifier(**kwargs) -> fields.String:
    return fields.String(validate=FullMatch(ID_PATTERN, error=ID_MESSAGE), **kwargs)


class Timestamp(fields.Field):
    """RFC 3339 with an explicit offset (OCCURRED_AT_PATTERN); returned as an aware UTC datetime."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise ValidationError(TIMESTAMP_MESSAGE)
        if not _OCCURRED_AT.fullmatch(value):
            raise ValidationError(_timestamp_mistake(value))
        text = value.upper()  # "t" and "z" are its only letters
        fraction = re.search(r"\.(\d+)", text)
        if fraction and len(fraction.group(1)) > 6:  # Python keeps microseconds
            text = text.replace(fraction.group(0), "." + fraction.group(1)[:6])
        try:
            return datetime.fromisoformat(text).astimezone(timezone.utc)
        except ValueError:  # a day past the end of its month
            raise ValidationError("is not a valid date and time") from None
        except OverflowError:  # past year 9999 in UTC: 9999-12-31 with a negative offset
            raise ValidationError(FUTURE_MESSAGE) from None

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else value.astimezone(timezone.utc).isoformat()


def _timestamp_mistake(text: str) -> str:
    """Why `text` does not match OCCURRED_AT_PATTERN, in the client's terms."""
    parts = _TIMESTAMP_PARTS.fullmatch(text)
    if parts is None:
        return TIMESTAMP_MESSAGE
    year, separator, second, offset_hours, offset_minutes = parts.groups()
    if int(year) < EARLIEST_YEAR:
        return f"must not be before the year {EARLIEST_YEAR}"
    if separator == " ":
        return 'must separate the date and the time with "T"'
    if second == "60":
        return "must not be a leap second (second 60)"
    if offset_hours is not None and (int(offset_hours) > 23 or int(offset_minutes) > 59):
        return "must have an offset of hours 00-23 and minutes 00-59"
    return "is not a valid date and time"


class AmountText(fields.String):
    """Money as a decimal string; checked against the currency in the schema's validation."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise ValidationError('must be a string such as "12.50", not a number')
        return value


class Attributes(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, dict):
            raise ValidationError("must be an object")
        if len(value) > MAX_ATTRIBUTES:
            raise ValidationError(f"at most {MAX_ATTRIBUTES} keys")
        errors, result = {}, {}
        for key, item in value.items():
            if not ATTRIBUTE_NAME.fullmatch(key):
                errors[key] = ["attribute names are 1-64 characters of A-Z a-z 0-9 _ . : -"]
            elif isinstance(item, bool):
                result[key] = item
            elif isinstance(item, (int, Decimal)):
                number = Decimal(item)
                if not number.is_finite():
                    errors[key] = ["must be a finite number"]
                else:
                    result[key] = number
            elif isinstance(item, str):
                if len(item) > MAX_ATTRIBUTE_TEXT:
                    errors[key] = [f"at most {MAX_ATTRIBUTE_TEXT} characters"]
                else:
                    result[key] = item
            else:
                errors[key] = ["must be a string, number or boolean"]
        if errors:
            raise ValidationError(errors)
        return result


class EventRequestSchema(Schema):
    """The body of POST /v1/events (and of /v1/quote, where event_id is optional)."""

    class Meta:
        unknown = RAISE

    event_id = identifier(required=True, metadata={"description": "idempotency key, unique per client"})
    type = fields.String(required=True, metadata={"description": "activation, payment or refund "
                                                  "(plugins may register more)"})
    user_id = identifier(required=True)
    occurred_at = Timestamp(required=True, metadata={
        "type": "string", "format": "date-time", "pattern": OCCURRED_AT_PATTERN,
        "description": "RFC 3339 with an offset (hours 00-23, minutes 00-59), from the year "
                       f"{EARLIEST_YEAR} on, without leap seconds; at most 300 s ahead of "
                       "the server's clock (a later time gets 422)"})
    merchant_id = identifier(metadata={"description": "required for payment and refund"})
    amount = AmountText(metadata={"description": "required for payment and refund: a decimal "
                                                 f"> 0 and at most {money.MAX_PAYMENT}, with "
                                                 "at most the currency's minor digits, "
                                                 "written as digits with an optional point "
                                                 "followed by digits",
                                  "example": "128.50"})
    currency = fields.String(metadata={"description": "ISO 4217, the program's currency; "
                                                      "required with amount",
                                       "example": "CNY"})
    mcc = fields.String(validate=FullMatch(MCC_PATTERN, error="must be 4 digits"))
    channel = fields.String(validate=FullMatch(CHANNEL_PATTERN,
                                               error="must be 1-32 characters of "
                                                     "A-Z a-z 0-9 _ . : -"))
    original_event_id = identifier(metadata={"description": "refunds only, and required "
                                                             "for them: the payment's event_id"})
    attributes = Attributes(metadata={
        "type": "object", "maxProperties": MAX_ATTRIBUTES,
        "additionalProperties": {"anyOf": [{"type": "string", "maxLength": MAX_ATTRIBUTE_TEXT,
                                            "pattern": ATTRIBUTE_TEXT_PATTERN},
                                           {"type": ["number", "boolean"]}]}})

    quote = False

    def __init__(self, *, event_types, currency: str, now=None, **kwargs):
        super().__init__(**kwargs)
        self.event_types = event_types
        self.program_currency = currency
        self.now = now or (lambda: datetime.now(timezone.utc))
        self._describe_program()

    def _describe_program(self) -> None:
        """This program's event types, currency and money digits, for the description."""
        types = sorted(t for t in self.event_types if not (self.quote and t == REFUND))
        self._describe("type", enum=types)
        self._describe("currency", enum=[self.program_currency])
        amount_text = amount_pattern(self.program_currency)
        self._describe("amount", pattern=amount_text)
        self.amount_text = re.compile(amount_text)

    def _describe(self, name: str, **metadata) -> None:
        field = self.fields[name]
        field.metadata = {**field.metadata, **metadata}  # this instance's own copy

    def json_schema_rules(self) -> dict:
        """The cross-field rules of `check_event` that JSON Schema can state, for the
        OpenAPI description (the field rules are in the fields' patterns)."""
        money_types = [PAYMENT] if self.quote else [PAYMENT, REFUND]
        rules: list[dict] = [
            {"if": {"properties": {"type": {"enum": money_types}}, "required": ["type"]},
             "then": {"required": ["merchant_id", "amount", "currency"]}}]
        if not self.quote:
            rules.append({"if": {"properties": {"type": {"const": REFUND}},
                                 "required": ["type"]},
                          "then": {"required": ["original_event_id"]},
                          "else": {"not": {"required": ["original_event_id"]}}})
        return {"allOf": rules,
                "dependentRequired": {"amount": ["currency"], "currency": ["amount"]}}

    @validates_schema(skip_on_field_errors=False)
    def check_event(self, data, **kwargs):
        errors: dict[str, list[str]] = {}
        kind = data.get("type")
        if kind is not None and kind not in self.event_types:
            errors["type"] = [f"must be one of: {', '.join(sorted(self.event_types))}"]
        if self.quote and kind == REFUND:
            errors["type"] = ["a refund cannot be quoted; quote a payment or an activation"]
        occurred_at = data.get("occurred_at")
        if occurred_at is not None and occurred_at > self.now() + MAX_FUTURE:
            errors["occurred_at"] = [FUTURE_MESSAGE]
        money_event = kind in (PAYMENT, REFUND)
        if money_event and "merchant_id" not in data:
            errors["merchant_id"] = [f"is required for {kind} events"]
        if money_event and "amount" not in data:
            errors["amount"] = [f"is required for {kind} events"]
        if "amount" in data and "currency" not in data:
            errors["currency"] = ["is required with amount"]
        if "currency" in data and "amount" not in data:
            errors.setdefault("amount", ["is required with currency"])
        currency = data.get("currency")
        if currency is not None and currency != self.program_currency:
            if not re.match(r"^[A-Z]{3}$", currency):
                errors["currency"] = ["must be an ISO 4217 code such as CNY"]
            else:
                errors["currency"] = [f"{currency} is not configured; this program runs in "
                                      f"{self.program_currency}"]
        elif "amount" in data:
            problem = self._amount_problem(data["amount"])
            if problem:
                errors["amount"] = [problem]
        if kind == REFUND and "original_event_id" not in data:
            errors["original_event_id"] = ["is required for refund events"]
        if kind is not None and kind != REFUND and "original_event_id" in data:
            errors["original_event_id"] = ["is only for refund events"]
        if errors:
            raise ValidationError(errors)

    def _amount_problem(self, text: str) -> str | None:
        """What is wrong with an amount: the pattern decides, parse_amount says why."""
        try:
            money.parse_amount(text, self.program_currency)
        except money.MoneyError as exc:
            return str(exc)
        return None if self.amount_text.fullmatch(text) else AMOUNT_SHAPE_MESSAGE

    @post_load
    def to_event(self, data, **kwargs) -> Event:
        amount = data.get("amount")
        return Event(
            type=data["type"], user_id=data["user_id"], occurred_at=data["occurred_at"],
            event_id=data.get("event_id"), merchant_id=data.get("merchant_id"),
            amount=money.parse_amount(amount, self.program_currency) if amount else None,
            currency=data.get("currency"), mcc=data.get("mcc"), channel=data.get("channel"),
            original_event_id=data.get("original_event_id"),
            attributes=data.get("attributes") or {})


class QuoteRequestSchema(EventRequestSchema):
    """The body of POST /v1/quote: a payment (or activation); event_id is optional."""

    class Meta(EventRequestSchema.Meta):
        exclude = ("original_event_id",)  # only refunds have one, and they cannot be quoted

    quote = True
    event_id = identifier(metadata={"description": "optional; echoed back"})


def amount_pattern(currency: str, *, signed: bool = False, exact: bool = False) -> str:
    """The money text of `currency`.

    Requests: > 0, at most MAX_PAYMENT, at most the minor digits, written as digits with an
    optional point followed by digits (leading zeros allowed). Responses (`exact`): exactly
    the minor digits, negative in reversals (`signed`).
    """
    digits = money.minor_digits(currency)
    if exact:
        whole = "-?[0-9]+" if signed else "[0-9]+"
        return f"^{whole}\\.[0-9]{{{digits}}}$" if digits else f"^{whole}$"
    top = str(money.MAX_PAYMENT)  # a power of ten: "1" and zeros
    below_top = f"[1-9][0-9]{{0,{len(top) - 2}}}"
    if not digits:
        return f"^0*({below_top}|{top})$"
    # below 1: up to `digits` decimals, not all zeros ("0.5", "0.05"; not "0.00")
    fractions = []
    for zeros in range(digits):
        rest = digits - 1 - zeros
        fractions.append("0" * zeros + "[1-9]" + (f"[0-9]{{0,{rest}}}" if rest else ""))
    return (f"^0*({below_top}(\\.[0-9]{{1,{digits}}})?|{top}(\\.0{{1,{digits}}})?"
            f"|0\\.({'|'.join(fractions)}))$")


# ---- responses (documentation for the OpenAPI description; bodies are built in ledger/responses.py)

class VoucherSchema(Schema):
    code = fields.String(allow_none=True, required=True)
    amount = fields.String(required=True, metadata={"example": "10.00"})
    currency = fields.String(required=True)
    expires_at = fields.String(required=True, metadata={"format": "date-time"})


class RewardSchema(Schema):
    reward_id = fields.String(metadata={"description": "absent in quotes"})
    campaign_id = fields.String(allow_none=True, required=True,
                                metadata={"description": "null for base points"})
    kind = fields.String(required=True, validate=validate.OneOf(
        ["points", "discount", "cashback", "voucher"]))
    points = fields.Integer(metadata={"description": "kind points; negative in a reversal"})
    amount = fields.String(metadata={"description": "discount and cashback; exactly the "
                                     "currency's minor digits; negative in a reversal"})
    currency = fields.String()
    voucher = fields.Nested(VoucherSchema)
    reverses = fields.String(metadata={"description": "refunds: the reward_id reversed"})


class EventResponseSchema(Schema):
    event_id = fields.String(required=True)
    rewards = fields.List(fields.Nested(RewardSchema), required=True)
    points_balance = fields.Integer(required=True)


class QuoteResponseSchema(Schema):
    event_id = fields.String(allow_none=True)
    rewards = fields.List(fields.Nested(RewardSchema), required=True)
    points_balance = fields.Integer(required=True,
                                    metadata={"description": "the balance if the event were recorded"})
    dry_run = fields.Boolean(required=True)


class PointsEntrySchema(Schema):
    reward_id = fields.String(required=True)
    event_id = fields.String(required=True)
    campaign_id = fields.String(allow_none=True, required=True)
    kind = fields.String(required=True)
    points = fields.Integer(required=True)
    created_at = fields.String(required=True, metadata={"format": "date-time"})


class PointsResponseSchema(Schema):
    user_id = fields.String(required=True)
    points_balance = fields.Integer(required=True)
    entries = fields.List(fields.Nested(PointsEntrySchema), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


class CampaignWindowSchema(Schema):
    days = fields.List(fields.String(validate=validate.OneOf(
        ["mon", "tue", "wed", "thu", "fri", "sat", "sun"])), required=True,
        metadata={"description": "the weekdays of the window, Monday first"})
    from_ = fields.String(data_key="from", required=True, validate=validate.Regexp(
        r"^\d{2}:\d{2}(:\d{2})?$"), metadata={"description": "local time of day, inclusive",
                                               "example": "11:00"})
    to = fields.String(required=True, validate=validate.Regexp(r"^\d{2}:\d{2}(:\d{2})?$"),
                       metadata={"description": "local time of day, exclusive; \"24:00\" is "
                                                "the end of the day", "example": "14:00"})


class CampaignConditionsSchema(Schema):
    min_amount = fields.String(required=True, allow_none=True,
                               metadata={"description": "the least payment that qualifies, "
                                                        "with exactly the currency's minor "
                                                        "digits; null: any amount",
                                         "example": "50.00"})
    mcc = fields.List(fields.String(), required=True, allow_none=True,
                      metadata={"description": "merchant category codes that qualify; "
                                               "null: any"})
    channels = fields.List(fields.String(), required=True, allow_none=True,
                           metadata={"description": "payment channels that qualify; null: any"})


class CampaignViewSchema(Schema):
    id = fields.String(required=True)
    name = fields.String(required=True, metadata={"description": "for people"})
    type = fields.String(required=True, metadata={"description": "the campaign type"})
    summary = fields.String(required=True, metadata={
        "description": "the reward in one line, from the campaign type",
        "example": "15% off, at most 30.00 CNY"})
    merchants = fields.List(fields.String(), required=True, allow_none=True,
                            metadata={"description": "where it applies; null: every merchant"})
    timezone = fields.String(required=True, metadata={"description": "IANA time zone of the "
                                                                     "times below"})
    starts_at = fields.String(required=True, metadata={
        "format": "date-time", "description": "inclusive; RFC 3339 with the campaign's local "
                                              "offset", "example": "2027-02-05T00:00:00+08:00"})
    ends_at = fields.String(required=True, metadata={
        "format": "date-time", "description": "exclusive; RFC 3339 with the campaign's local "
                                              "offset"})
    windows = fields.List(fields.Nested(CampaignWindowSchema), required=True, metadata={
        "description": "recurring local times inside starts_at..ends_at when it applies; "
                       "empty: all the time"})
    conditions = fields.Nested(CampaignConditionsSchema, required=True)


class CampaignsResponseSchema(Schema):
    campaigns = fields.List(fields.Nested(CampaignViewSchema), required=True, metadata={
        "description": "open campaigns, highest priority first, then by id"})


class ErrorDetailSchema(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)
    fields_ = fields.Dict(data_key="fields", keys=fields.String(),
                          values=fields.List(fields.String()))


class ErrorSchema(Schema):
    error = fields.Nested(ErrorDetailSchema, required=True)


def flatten_messages(messages, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested messages as {"attributes.segment": [...]} for the error body."""
    flat: dict[str, list[str]] = {}
    if isinstance(messages, list):
        flat[prefix or "_schema"] = [str(m) for m in messages]
        return flat
    for key, value in messages.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            flat.update(flatten_messages(value, name))
        else:
            flat.setdefault(name, []).extend(str(m) for m in value)
    return flat
