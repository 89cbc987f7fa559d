"""The request bodies of the wallet API: POST /v1/events and POST /v1/quote.

Each field's own rule is in request_fields.py; the rules across fields (which event types
take which fields) are here, once as the server checks them (`check_event`) and once as
JSON Schema states them (`shape_of`, one schema per event type), so /v1/openapi.json says
what the server enforces. What the API answers is described in response_schemas.py.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from decimal import Decimal

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validates_schema

from promo_engine.api.request_fields import (  # noqa: F401 (ID_*: re-exported)
    AMOUNT_SHAPE_MESSAGE, ATTRIBUTE_TEXT_PATTERN, CAMPAIGN_ID_MESSAGE, CAMPAIGN_ID_PATTERN,
    CHANNEL_PATTERN, DEVICE_ID_MESSAGE, DEVICE_ID_PATTERN, EARLIEST_YEAR, FUTURE_MESSAGE,
    ID_MESSAGE, ID_PATTERN, MAX_ATTRIBUTE_TEXT, MAX_ATTRIBUTES, MAX_FUTURE, MAX_VOUCHERS,
    MCC_PATTERN, OCCURRED_AT_PATTERN, WHOLE_NUMBER_WORDS, AmountText, Attributes, FullMatch,
    Timestamp, VoucherCodes, WholeNumber, identifier)
from promo_engine.core import money
from promo_engine.core.event import CANCEL, PAYMENT, REDEMPTION, REFUND, Event

MONEY_FIELDS = ("merchant_id", "amount", "currency")
REDEMPTION_CHOICES = ("points", "campaign_id")  # exactly one of them
REDEMPTION_FIELDS = (*REDEMPTION_CHOICES, "reference")
PAYMENT_FIELDS = ("redeem_points", "vouchers")
# Events whose `original_event_id` names the event they act on: a refund its payment, a
# cancel its redemption. They change what was recorded, so they cannot be quoted.
FOLLOW_UPS = (REFUND, CANCEL)
# The start of the message for points worth more than the payment; the rest gives the
# numbers. JSON Schema cannot multiply, so the description says it in words.
POINTS_OVER_AMOUNT = "pays more than the amount"
POINTS_OVER_AMOUNT_WORDS = "worth at most the amount (more gets 422)"
POINTS_OFF_MESSAGE = "paying with points is turned off in this program"


class EventRequestSchema(Schema):
    """The body of POST /v1/events (and of /v1/quote, where event_id is optional)."""

    class Meta:
        unknown = RAISE

    event_id = identifier(required=True, metadata={"description": "idempotency key, unique per client"})
    type = fields.String(required=True, metadata={
        "description": "activation, payment, refund, redemption or cancel (plugins may "
                       "register more)"})
    user_id = identifier(required=True)
    occurred_at = Timestamp(required=True, metadata={
        "type": "string", "format": "date-time", "pattern": OCCURRED_AT_PATTERN,
        "description": "RFC 3339 with an offset (hours 00-23, minutes 00-59), from the year "
                       f"{EARLIEST_YEAR} on, without leap seconds; at most 300 s ahead of "
                       "the server's clock (a later time gets 422)"})
    merchant_id = identifier(metadata={"description": "required for payment and refund; "
                                                      "not for redemption and cancel"})
    amount = AmountText(metadata={"description": "required for payment and refund: a decimal "
                                                 f"> 0 and at most {money.MAX_PAYMENT}, with "
                                                 "at most the currency's minor digits, "
                                                 "written as digits with an optional point "
                                                 "followed by digits; not for redemption "
                                                 "and cancel",
                                  "example": "128.50"})
    currency = fields.String(metadata={"description": "ISO 4217, the program's currency; "
                                                      "required with amount",
                                       "example": "CNY"})
    mcc = fields.String(validate=FullMatch(MCC_PATTERN, error="must be 4 digits"))
    channel = fields.String(validate=FullMatch(CHANNEL_PATTERN,
                                               error="must be 1-32 characters of "
                                                     "A-Z a-z 0-9 _ . : -"))
    original_event_id = identifier(metadata={"description": "refunds and cancels only, and "
                                                            "required for them: the event_id "
                                                            "of the payment refunded or of "
                                                            "the redemption cancelled"})
    attributes = Attributes(metadata={
        "type": "object", "maxProperties": MAX_ATTRIBUTES,
        "additionalProperties": {"anyOf": [{"type": "string", "maxLength": MAX_ATTRIBUTE_TEXT,
                                            "pattern": ATTRIBUTE_TEXT_PATTERN},
                                           {"type": ["number", "boolean"]}]}})
    device_id = fields.String(validate=FullMatch(DEVICE_ID_PATTERN, error=DEVICE_ID_MESSAGE),
                              metadata={"description": "the user's device as the wallet "
                                                       "knows it (per-device limits)"})
    points = WholeNumber(metadata={
        "description": "redemptions only: the points a plain burn spends; exactly one of "
                       f"points and campaign_id; a JSON integer {WHOLE_NUMBER_WORDS}"})
    campaign_id = fields.String(
        validate=FullMatch(CAMPAIGN_ID_PATTERN, error=CAMPAIGN_ID_MESSAGE),
        metadata={"description": "redemptions only: the points_exchange campaign whose "
                                 "reward the points buy; exactly one of points and "
                                 "campaign_id"})
    reference = identifier(metadata={"description": "redemptions only, optional: the "
                                                    "caller's own reference (e.g. the mall "
                                                    "order), echoed in the response"})
    redeem_points = WholeNumber(metadata={"description": "payments only: points that pay part "
                                                         "of the amount"})
    vouchers = VoucherCodes(metadata={"description": "payments only: codes of the user's "
                                                     f"vouchers to use, 1 to {MAX_VOUCHERS}, "
                                                     "each at most once"})

    quote = False

    def __init__(self, *, event_types, currency: str, now=None,
                 point_value: Decimal = Decimal("0.01"),
                 allowed_attributes: tuple[str, ...] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.event_types = event_types
        self.program_currency = currency
        self.point_value = point_value
        # PROMO_ALLOWED_ATTRIBUTES (docs/privacy.md): None accepts any attribute name.
        self.allowed_attributes = (None if allowed_attributes is None
                                   else frozenset(allowed_attributes))
        self.now = now or (lambda: datetime.now(timezone.utc))
        self._describe_program()

    def _describe_program(self) -> None:
        """This program's event types, currency, money digits and point value, for the
        description."""
        self._describe("type", enum=self.described_types())
        self._describe("currency", enum=[self.program_currency])
        amount_text = amount_pattern(self.program_currency)
        self._describe("amount", pattern=amount_text)
        self.amount_text = re.compile(amount_text)
        if self.point_value:
            worth = (f"at {money.format_amount(self.point_value, self.program_currency)} "
                     f"{self.program_currency} each, {POINTS_OVER_AMOUNT_WORDS}")
        else:
            worth = "turned off in this program: refused (422)"
        self._describe("redeem_points", description=(
            f"payments only: points that pay part of the amount, {worth}; a JSON integer "
            f"{WHOLE_NUMBER_WORDS}"))

    def _describe(self, name: str, **metadata) -> None:
        field = self.fields[name]
        field.metadata = {**field.metadata, **metadata}  # this instance's own copy

    def shape_of(self, kind: str) -> dict:
        """The rules of `check_event` for one event type, as JSON Schema states them: the
        fields it takes, those it requires, and what holds across them (`choices`: exactly
        one of these fields). The description gives each type its own schema (a oneOf on
        `type`, see api/openapi_variants.py)."""
        common = [name for name in self.fields
                  if name not in (*MONEY_FIELDS, *REDEMPTION_FIELDS, *PAYMENT_FIELDS,
                                  "original_event_id")]
        required = ["type", "user_id", "occurred_at"] + ([] if self.quote else ["event_id"])
        rules: dict = {}
        names = list(common)
        if kind not in (REDEMPTION, CANCEL):
            names += MONEY_FIELDS
            if kind in (PAYMENT, REFUND):
                required += MONEY_FIELDS
            else:  # optional, but amount and currency go together
                rules["dependentRequired"] = {"amount": ["currency"], "currency": ["amount"]}
        if kind == REDEMPTION:
            names += REDEMPTION_FIELDS
            rules["choices"] = list(REDEMPTION_CHOICES)  # exactly one of them
        if kind == PAYMENT:
            names += PAYMENT_FIELDS
            if not self.point_value:
                rules["not"] = {"required": ["redeem_points"]}
        if kind in FOLLOW_UPS and not self.quote:
            names.append("original_event_id")
            required.append("original_event_id")
        return {"properties": names, "required": required, **rules}

    def described_types(self) -> list[str]:
        """The event types a body may have: those of the program (a quote's without the
        follow-ups, which cannot be quoted)."""
        return sorted(t for t in self.event_types if not (self.quote and t in FOLLOW_UPS))

    @validates_schema(skip_on_field_errors=False, pass_original=True)
    def check_event(self, data, original_data, **kwargs):
        errors: dict[str, list[str]] = {}
        # What the body holds, valid or not: a field refused on its own is missing from
        # `data`, and should not also be reported as missing.
        given = set(original_data) if isinstance(original_data, dict) else set(data)
        kind = data.get("type")
        if kind is not None and kind not in self.event_types:
            errors["type"] = [f"must be one of: {', '.join(sorted(self.event_types))}"]
        if self.quote and kind in FOLLOW_UPS:
            errors["type"] = [f"a {kind} cannot be quoted; quote a payment, a redemption or "
                              "an activation"]
        occurred_at = data.get("occurred_at")
        if occurred_at is not None and occurred_at > self.now() + MAX_FUTURE:
            errors["occurred_at"] = [FUTURE_MESSAGE]
        if kind in (REDEMPTION, CANCEL):
            for name in MONEY_FIELDS:
                if name in given:
                    _add(errors, name, f"is not for {kind} events")
        else:
            self._check_money(kind, data, errors)
        if kind in FOLLOW_UPS and "original_event_id" not in data and not self.quote:
            errors["original_event_id"] = [f"is required for {kind} events"]
        if kind is not None and kind not in FOLLOW_UPS and "original_event_id" in data:
            errors["original_event_id"] = ["is only for refund and cancel events"]
        self._check_kind_fields(kind, given, errors)
        self._check_points_paying(data, given, errors)
        self._check_attribute_names(original_data, errors)
        if errors:
            raise ValidationError(errors)

    def _check_money(self, kind: str | None, data: dict, errors: dict) -> None:
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

    @staticmethod
    def _check_kind_fields(kind: str | None, given: set, errors: dict) -> None:
        """The fields only one event type takes: a redemption's, and a payment's."""
        if kind is None:
            return  # no type, or not a string: that is the error
        if kind == REDEMPTION:
            chosen = [name for name in REDEMPTION_CHOICES if name in given]
            if len(chosen) != 1:
                message = ("give one of points (a burn) and campaign_id (an exchange), "
                           "not both" if chosen else
                           "a redemption needs points (a burn) or campaign_id (an exchange)")
                for name in REDEMPTION_CHOICES:
                    _add(errors, name, message)
        else:
            for name in REDEMPTION_FIELDS:
                if name in given:
                    _add(errors, name, "is only for redemption events")
        if kind != PAYMENT:
            for name in PAYMENT_FIELDS:
                if name in given:
                    _add(errors, name, "is only for payment events")

    def _check_points_paying(self, data: dict, given: set, errors: dict) -> None:
        """redeem_points: off when a point is worth nothing, and never worth more than the
        payment (the discount would pay more than there is to pay)."""
        if "redeem_points" not in given:
            return
        if not self.point_value:
            _add(errors, "redeem_points", POINTS_OFF_MESSAGE)
            return
        points, amount = data.get("redeem_points"), data.get("amount")
        if points is None or amount is None or "amount" in errors or "currency" in errors:
            return
        worth = points * self.point_value
        total = money.parse_amount(amount, self.program_currency)
        if worth > total:
            currency = self.program_currency
            _add(errors, "redeem_points",
                 f"{POINTS_OVER_AMOUNT}: {points} points at "
                 f"{money.format_amount(self.point_value, currency)} are "
                 f"{money.format_amount(worth, currency)} {currency}, the amount is "
                 f"{money.format_amount(total, currency)}")

    def _check_attribute_names(self, original_data, errors: dict) -> None:
        """Data minimisation: an attribute name outside PROMO_ALLOWED_ATTRIBUTES is refused
        (422 naming `attributes.NAME`), so personal data sent by mistake is never recorded.
        Read from the body as sent: a name refused for its value too is still named."""
        if self.allowed_attributes is None or not isinstance(original_data, dict):
            return
        given = original_data.get("attributes")
        if not isinstance(given, dict):
            return
        refused = {name: [not_allowed_message(self.allowed_attributes)]
                   for name in given if name not in self.allowed_attributes}
        if refused:
            errors["attributes"] = refused

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
            attributes=data.get("attributes") or {},
            points=data.get("points"), campaign_id=data.get("campaign_id"),
            reference=data.get("reference"), redeem_points=data.get("redeem_points"),
            vouchers=tuple(data.get("vouchers") or ()), device_id=data.get("device_id"))


class QuoteRequestSchema(EventRequestSchema):
    """The body of POST /v1/quote: a payment, a redemption or an activation, evaluated as
    if recorded now; event_id is optional."""

    class Meta(EventRequestSchema.Meta):
        # only refunds and cancels have one, and they cannot be quoted
        exclude = ("original_event_id",)

    quote = True
    event_id = identifier(metadata={"description": "optional; echoed back"})


def not_allowed_message(allowed) -> str:
    if not allowed:
        return "is not accepted: this program accepts no attributes"
    return f"is not accepted: this program accepts only {', '.join(sorted(allowed))}"


def disallowed_attributes(body, allowed) -> list[str]:
    """The attribute names of a request body that PROMO_ALLOWED_ATTRIBUTES refuses."""
    if allowed is None or not isinstance(body, dict):
        return []
    given = body.get("attributes")
    if not isinstance(given, dict):
        return []
    return [name for name in given if name not in allowed]


def _add(errors: dict[str, list[str]], name: str, message: str) -> None:
    errors.setdefault(name, []).append(message)


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
