"""The campaign schema's validation messages as a shop owner reads them, in English or
Simplified Chinese.

The schema is shared with YAML campaigns and the CLI, where its messages stay as they are
(they name keys such as `budget.points`); the portal never shows that wording. Each message
is matched as a pattern (messages carry values: limits, names) and replaced by the portal's
own text, which the catalogue translates. A message with no entry here is shown as a
general "check this value" rather than in developer English, and logged so that it gets an
entry (`tests/test_portal_form_messages.py` drives every failure the offer form can give).
"""
from __future__ import annotations

import logging
import re
from decimal import Decimal, InvalidOperation

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from merchant_portal import i18n

log = logging.getLogger(__name__)

_NUMBER = r"(?P<{}>[0-9][0-9.,]*)"
LOW, HIGH, PLACES = _NUMBER.format("low"), _NUMBER.format("high"), r"(?P<places>\d+)"

# (the schema's message as a pattern, the portal's text); named groups fill the text.
MESSAGES: tuple[tuple[str, object], ...] = (
    (r"Missing data for required field\.", _l("Please fill in this field")),
    (r"must not be empty: give a value or remove the key", _l("Please fill in this field")),
    (r"Not a valid integer\.|must be a whole number", _l("Enter a whole number")),
    (rf"must be a whole number from {LOW} to {HIGH}",
     _l("Enter a whole number from %(low)s to %(high)s")),
    (rf"must be between {LOW} and {HIGH}", _l("Enter a number from %(low)s to %(high)s")),
    (rf"must be greater than {LOW}", _l("Enter a number greater than %(low)s")),
    (rf"must be at most {HIGH}", _l("Enter a number no greater than %(high)s")),
    (rf"at most {PLACES} decimal places(?: for \w+)?",
     _l("Use at most %(places)s digits after the decimal point")),
    (r'must be a (?:decimal )?string such as "[\d.]+"(?:, not a number)?'
     r'|write money as a quoted string, e\.g\. "[\d.]+"|must be a finite decimal',
     _l("Enter an amount such as 12.50")),
    (r"must be a number|must be a finite number|Not a valid (?:number|decimal)\.",
     _l("Enter a number, such as 2 or 1.5")),
    (r"is out of range", _l("Enter a date between the years 1 and 9999")),
    (r"must be after starts_at", _l("The end must be later than the start")),
    (r"must be a date and time such as \S+", _l("Enter a date and a time")),
    (r'must be a time of day "HH:MM", e\.g\. "11:00"',
     _l("Enter a time such as 11:00 (24:00 for the end of the day)")),
    (r"must be after from; windows cannot cross midnight.*",
     _l("The end time must be later than the start time; hours cannot run past midnight "
        "(end at 24:00)")),
    (r"must be one of mon, tue, wed, thu, fri, sat, sun", _l("Choose days of the week")),
    (r"must list at least one day; remove days for every day",
     _l("Choose at least one day, or none for every day")),
    (r"give exactly one of percent or amount_off",
     _l("Enter either a percentage off or an amount off, not both")),
    (r"max_discount goes with percent",
     _l("A maximum discount only goes with a percentage off")),
    (r"give exactly one of amount(?: \(money\))? or points",
     _l("Enter a budget in money or in points, not both")),
    (r"this campaign grants points: use budget\.points",
     _l("This offer gives points: set its budget in points")),
    (r"this campaign grants money: use budget\.amount",
     _l("This offer gives money off: set its budget as an amount of money")),
    (r"must be 1 to 200 characters", _l("Enter a name of 1 to 200 characters")),
    (r"'.+' is not an IANA time zone.*", _l("Choose a time zone from the list")),
    (r"unknown campaign type .*", _l("Choose an offer type from the list")),
    (r"Unknown field\.", _l("This offer type does not use this value")),
)
_COMPILED = tuple((re.compile(pattern), text) for pattern, text in MESSAGES)
UNKNOWN = _l("Please check this value")


def portal_text(message: str):
    """The portal's text for a schema message (lazy), with its values; None when unknown."""
    for pattern, text in _COMPILED:
        match = pattern.fullmatch(message)
        if match:
            return text, match.groupdict()
    return None


def in_portal_language(message: str) -> str:
    """The schema's message as the portal shows it, in the request's language."""
    found = portal_text(message)
    if found is None:
        log.warning("no portal wording for the schema message %r", message)
        return _("Please check this value")
    text, values = found
    if not values:
        return str(text)
    return str(text) % {key: _number(value) for key, value in values.items()}


def _number(text: str) -> str:
    """A number of the message for the language ("100000000" -> "100,000,000")."""
    try:
        return i18n.format_number(Decimal(text))
    except InvalidOperation:
        return text
