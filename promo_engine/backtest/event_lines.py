"""One line of an events file into an `Event`, accepted and refused exactly as POST /v1/events
accepts and refuses its body.

The API's own steps decide: `parse_json` (strict JSON: no duplicate keys, NaN, lone
surrogates or NUL) and the request schema (`EventRequestSchema`). They cost about 30 us a
line, half a minute for a million, so the lines that look like what a wallet sends every day
(an activation, payment or refund of plain fields) take a fast path first, written from the
same patterns and rules; anything it is not sure of (another event type, a backslash escape,
an unknown field, any value it would refuse) goes to the API's steps, which then accept it
or say why not. The fast path never refuses: it only hands over. tests/test_simulate_lines.py
checks that both give the same event for every line either accepts.
"""
from __future__ import annotations

import json
import re
from dataclasses import fields as dataclass_fields
from json.scanner import make_scanner
from datetime import datetime, timezone
from decimal import Decimal

from marshmallow import ValidationError

from promo_engine.api.errors import ApiError
from promo_engine.api.request_fields import (ATTRIBUTE_NAME, CHANNEL_PATTERN,
                                             DEVICE_ID_PATTERN, ID_PATTERN, MAX_ATTRIBUTE_TEXT,
                                             MAX_ATTRIBUTES, MAX_FUTURE, MCC_PATTERN,
                                             OCCURRED_AT_PATTERN)
from promo_engine.api.requests import parse_json
from promo_engine.api.schemas import EventRequestSchema, amount_pattern, flatten_messages
from promo_engine.config import MAX_BODY_BYTES
from promo_engine.core import money
from promo_engine.core.event import ACTIVATION, PAYMENT, REFUND, Event

# The fields the fast path knows; a body with any other goes to the API's schema.
FAST_FIELDS = frozenset({"event_id", "type", "user_id", "occurred_at", "merchant_id", "amount",
                         "currency", "mcc", "channel", "original_event_id", "attributes",
                         "device_id"})
FAST_TYPES = (ACTIVATION, PAYMENT, REFUND)
_FRACTION = re.compile(r"\.(\d+)")


class LineInvalid(Exception):
    """The line is not an event the API would accept; the message says why, in the API's
    words (`FILE:LINE: ` is put in front by the reader)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def generated_event_id(number: int) -> str:
    """The event_id of a line that has none: stable, so a refund can name the payment of
    a line without one ("line-12"), and a valid id for the API."""
    return f"line-{number}"


class _Duplicate(ValueError):
    pass


def _unique_pairs(pairs: list) -> dict:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _Duplicate()
    return result


class LineReader:
    """Validates bodies for one program (its event types, currency and point value).

    `now`: the API refuses an event more than 300 s ahead of its clock. A back-test has no
    clock (its history may well be a synthetic one to come), so by default nothing is too
    late; given, it is fixed for the whole file."""

    def __init__(self, *, event_types, currency: str, point_value: Decimal,
                 now: datetime | None = None):
        self.event_types = frozenset(event_types)
        self.fast_types = tuple(kind for kind in FAST_TYPES if kind in self.event_types)
        self.currency = currency
        self.quantum = money.quantum(currency)
        if now is None:
            now = datetime.max.replace(tzinfo=timezone.utc) - MAX_FUTURE
        self.latest = now + MAX_FUTURE
        self.schema = EventRequestSchema(event_types=event_types, currency=currency,
                                         point_value=point_value, now=lambda: now)
        # The C scanner alone: a whole line must be one JSON value, else the API judges.
        self._scan = make_scanner(json.JSONDecoder(parse_float=Decimal,
                                                   parse_constant=_refuse,
                                                   object_pairs_hook=_unique_pairs))
        self._id = re.compile(ID_PATTERN).fullmatch
        self._mcc = re.compile(MCC_PATTERN).fullmatch
        self._channel = re.compile(CHANNEL_PATTERN).fullmatch
        self._device = re.compile(DEVICE_ID_PATTERN).fullmatch
        self._occurred_at = re.compile(OCCURRED_AT_PATTERN).fullmatch
        self._amount = re.compile(amount_pattern(currency)).fullmatch
        self._attribute_name = ATTRIBUTE_NAME.fullmatch

    # -- JSON Lines --------------------------------------------------------------------

    def json_line(self, raw: bytes, number: int) -> tuple[Event, dict]:
        """The event of one JSON line (without its line break) and the body as the API
        would receive it (event_id filled in); LineInvalid if the API would refuse it."""
        if len(raw) > MAX_BODY_BYTES:
            raise LineInvalid(f"the event is larger than {MAX_BODY_BYTES // 1024} KiB, the "
                              "API's limit for a body")
        body = None
        if b"\\" not in raw:  # escapes (\u0000, lone surrogates) need the API's checks
            try:
                text = raw.decode("utf-8")
                body, end = self._scan(text, 0)
                if end != len(text):
                    body = None
            except (ValueError, RecursionError, StopIteration):
                body = None
        if type(body) is dict:
            if "event_id" not in body:
                body["event_id"] = generated_event_id(number)
            event = self.fast_event(body)
            if event is not None:
                return event, body
        return self._api_json(raw, number)

    def _api_json(self, raw: bytes, number: int) -> tuple[Event, dict]:
        try:
            body = parse_json(raw)
        except ApiError as exc:
            raise LineInvalid(_api_message(exc)) from None
        if not isinstance(body, dict):
            raise LineInvalid("the body must be a JSON object")
        if "event_id" not in body:
            body["event_id"] = generated_event_id(number)
        return self.api_event(body), body

    # -- a body (JSON or a CSV row) --------------------------------------------------------

    def body_event(self, body: dict, number: int) -> Event:
        """The event of a body made from a CSV row (no JSON to parse)."""
        if "event_id" not in body:
            body["event_id"] = generated_event_id(number)
        event = self.fast_event(body)
        return event if event is not None else self.api_event(body)

    def api_event(self, body: dict) -> Event:
        """The API's schema: the event, or LineInvalid naming each bad field."""
        try:
            return self.schema.load(body)
        except ValidationError as exc:
            raise LineInvalid(validation_message(flatten_messages(exc.messages))) from None

    def fast_event(self, body: dict) -> Event | None:
        """The event of an everyday body, exactly as the schema would make it, or None when
        the schema must judge (never a refusal)."""
        # Only known fields, and no null (the schema refuses null for every field).
        if not FAST_FIELDS.issuperset(body) or None in body.values():
            return None
        get = body.get
        kind = get("type")
        if kind not in self.fast_types:
            return None
        event_id, user_id, valid_id = get("event_id"), get("user_id"), self._id
        if type(event_id) is not str or type(user_id) is not str or \
                not valid_id(event_id) or not valid_id(user_id):
            return None
        occurred_at = self._timestamp(get("occurred_at"))
        if occurred_at is None:
            return None
        merchant_id = get("merchant_id")
        if merchant_id is None:
            if kind != ACTIVATION:
                return None
        elif type(merchant_id) is not str or not valid_id(merchant_id):
            return None
        amount, currency = get("amount"), get("currency")
        if amount is None:
            if currency is not None or kind != ACTIVATION:
                return None
        elif type(amount) is not str or currency != self.currency or not self._amount(amount):
            return None
        else:
            # The pattern admits only amounts parse_amount accepts (> 0, at most the
            # minor digits, at most the maximum); this is its result.
            amount = Decimal(amount).quantize(self.quantum)
        original = get("original_event_id")
        if kind == REFUND:
            if type(original) is not str or not valid_id(original):
                return None
        elif original is not None:
            return None
        mcc, channel, device_id = get("mcc"), get("channel"), get("device_id")
        if (mcc is not None and (type(mcc) is not str or not self._mcc(mcc))) or \
                (channel is not None and (type(channel) is not str or
                                          not self._channel(channel))) or \
                (device_id is not None and (type(device_id) is not str or
                                            not self._device(device_id))):
            return None
        attributes = get("attributes")
        if attributes is not None:
            attributes = self._attributes(attributes)
            if attributes is None:
                return None
        return _new_event(kind, user_id, occurred_at, event_id, merchant_id, amount, currency,
                          mcc, channel, original, attributes or {}, device_id)

    def _timestamp(self, value) -> datetime | None:
        """`Timestamp._deserialize`'s result for a value it accepts, else None."""
        if type(value) is not str or not self._occurred_at(value):
            return None
        text = value.upper()
        fraction = _FRACTION.search(text)
        if fraction and len(fraction.group(1)) > 6:
            text = text.replace(fraction.group(0), "." + fraction.group(1)[:6])
        try:
            at = datetime.fromisoformat(text).astimezone(timezone.utc)
        except (ValueError, OverflowError):
            return None
        return at if at <= self.latest else None

    def _attributes(self, value) -> dict | None:
        """`Attributes._deserialize`'s result for a value it accepts, else None."""
        if type(value) is not dict or len(value) > MAX_ATTRIBUTES:
            return None
        result = {}
        for key, item in value.items():
            if not self._attribute_name(key):
                return None
            kind = type(item)
            if kind is str:
                if len(item) > MAX_ATTRIBUTE_TEXT:
                    return None
                result[key] = item
            elif kind is bool:
                result[key] = item
            elif kind is int or kind is Decimal:
                number = Decimal(item)
                if not number.is_finite():
                    return None
                result[key] = number
            else:
                return None
        return result


# An Event as its dataclass __init__ makes it, for half the cost (a fast-path line spends a
# fifth of its time there): its slots set one by one. Only while Event has exactly these
# fields; else its __init__.
_EVENT_FIELDS = ("type", "user_id", "occurred_at", "event_id", "merchant_id", "amount",
                 "currency", "mcc", "channel", "original_event_id", "attributes", "points",
                 "campaign_id", "reference", "redeem_points", "vouchers", "device_id")

if tuple(f.name for f in dataclass_fields(Event)) == _EVENT_FIELDS:
    (_type, _user_id, _occurred_at, _event_id, _merchant_id, _amount, _currency, _mcc,
     _channel, _original, _attributes, _points, _campaign_id, _reference, _redeem_points,
     _vouchers, _device_id) = (Event.__dict__[name].__set__ for name in _EVENT_FIELDS)
    _blank = object.__new__

    def _new_event(kind, user_id, occurred_at, event_id, merchant_id, amount, currency, mcc,
                   channel, original, attributes, device_id) -> Event:
        event = _blank(Event)
        _type(event, kind)
        _user_id(event, user_id)
        _occurred_at(event, occurred_at)
        _event_id(event, event_id)
        _merchant_id(event, merchant_id)
        _amount(event, amount)
        _currency(event, currency)
        _mcc(event, mcc)
        _channel(event, channel)
        _original(event, original)
        _attributes(event, attributes)
        _points(event, None)
        _campaign_id(event, None)
        _reference(event, None)
        _redeem_points(event, None)
        _vouchers(event, ())
        _device_id(event, device_id)
        return event
else:  # pragma: no cover - Event changed: its own __init__, slower but the same
    def _new_event(kind, user_id, occurred_at, event_id, merchant_id, amount, currency, mcc,
                   channel, original, attributes, device_id) -> Event:
        return Event(type=kind, user_id=user_id, occurred_at=occurred_at, event_id=event_id,
                     merchant_id=merchant_id, amount=amount, currency=currency, mcc=mcc,
                     channel=channel, original_event_id=original, attributes=attributes,
                     device_id=device_id)


def _refuse(name: str):
    raise ValueError(name)


def _api_message(exc: ApiError) -> str:
    """An API refusal as one line: the fields' messages when it names fields."""
    if exc.fields:
        return validation_message(exc.fields)
    # Within one line, "at line 1" says nothing: the reader gives the file's line.
    return exc.message.replace("invalid JSON at line 1 column", "invalid JSON at column")


def validation_message(fields: dict) -> str:
    """{"amount": ["must be greater than 0"]} as 'amount: must be greater than 0'."""
    return "; ".join(f"{name}: {message}" for name in sorted(fields)
                     for message in fields[name])
