"""The marshmallow field types of a campaign document: strict text, patterns and
booleans, time zones, local date-times and times of day, weekdays, merchant category codes,
non-empty and unique lists, matching attributes, and the type's own params.

Apart from the schema (campaigns/schema.py) so that it reads as the document's layout
while these hold how one value is read. Each raises `ValidationError` with a message that
tells marketing what to write instead, since that message is what they see.
"""
from __future__ import annotations

import re
from datetime import date, datetime, time
from typing import Mapping
from zoneinfo import ZoneInfo

from marshmallow import ValidationError, fields

from promo_engine.core.campaign import WEEKDAYS

TIME_PATTERN = re.compile(r"([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?")
MCC_PATTERN = re.compile(r"[0-9]{4}")


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
    """The type's own parameters, validated by the schema its plugin registered.

    Only the campaign schema knows the registry, so the type is looked up through the
    parent (`CampaignSchema.campaign_type_of`)."""

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
