"""The fields of a request body, each rule both enforced by the server and stated in
/v1/openapi.json (apispec reads the patterns, ranges and lengths from the fields).

One pattern constant per field: the server matches it and the description shows it, so
the two cannot drift apart. Rules across fields are in schemas.py.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from marshmallow import ValidationError, fields, validate

from promo_engine.campaigns.schema import ID_PATTERN as CAMPAIGN_ID

# The patterns below are both what the server enforces and what /v1/openapi.json states
# (apispec reads them from the fields), so the description cannot drift from the code.
ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
ID_MESSAGE = "must be 1-64 characters of A-Z a-z 0-9 _ . : -"
MCC_PATTERN = r"^[0-9]{4}$"
CHANNEL_PATTERN = r"^[A-Za-z0-9_.:-]{1,32}$"
# Any id a campaign file may have (campaigns/schema.py), so every campaign can be named.
CAMPAIGN_ID_PATTERN = "^" + CAMPAIGN_ID.pattern + "$"
CAMPAIGN_ID_MESSAGE = "must be 1-64 characters of a-z 0-9 - (a campaign's id)"
DEVICE_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"
DEVICE_ID_MESSAGE = "must be 1-128 characters of A-Z a-z 0-9 _ . : -"
VOUCHER_CODE_PATTERN = r"^[A-Z0-9]{10,32}$"
VOUCHER_CODE_MESSAGE = "must be 10-32 characters of A-Z 0-9"
MAX_VOUCHERS = 5
MAX_POINTS = 10**12
# A JSON number with a point or an exponent (1.0, 1e2) is an integer to JSON Schema, so
# the description cannot refuse it; the server does, since points are counted, not
# measured. The description says so in words (WHOLE_NUMBER_WORDS).
WHOLE_NUMBER_MESSAGE = "must be a whole number written without a decimal point or exponent"
WHOLE_NUMBER_WORDS = "written without a decimal point or exponent (1.0 gets 422)"
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


class WholeNumber(fields.Integer):
    """A count of points: a JSON integer from 1 to `maximum`, never a boolean or a number
    written with a point or exponent (those are read as Decimal, see requests.py)."""

    def __init__(self, *, maximum: int = MAX_POINTS, **kwargs):
        super().__init__(strict=True, validate=validate.Range(
            min=1, max=maximum, error=f"must be from 1 to {maximum}"), **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, Decimal):
            raise ValidationError(WHOLE_NUMBER_MESSAGE)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError("must be a whole number such as 100, not a string")
        return value


class VoucherCodes(fields.List):
    """1 to MAX_VOUCHERS voucher codes, each at most once (JSON Schema's uniqueItems)."""

    def __init__(self, **kwargs):
        super().__init__(
            fields.String(validate=FullMatch(VOUCHER_CODE_PATTERN, error=VOUCHER_CODE_MESSAGE)),
            validate=validate.Length(min=1, max=MAX_VOUCHERS,
                                     error=f"must list 1 to {MAX_VOUCHERS} voucher codes"),
            **kwargs)
        self.metadata = {**self.metadata, "uniqueItems": True}

    def _deserialize(self, value, attr, data, **kwargs):
        codes = super()._deserialize(value, attr, data, **kwargs)
        repeated = sorted({code for code in codes if codes.count(code) > 1})
        if repeated:
            raise ValidationError(f"each voucher at most once: {', '.join(repeated)} "
                                  "given more than once")
        return tuple(codes)
