"""Language (English or Simplified Chinese) and locale-aware formatting of money and times.

The language is the one chosen with /portal/lang/<code> or ?lang= (kept in the session),
else the browser's Accept-Language, else English.
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from babel.dates import format_datetime as babel_datetime
from babel.numbers import format_currency, format_decimal
from babel.numbers import format_percent as babel_percent
from flask import request, session
from flask_babel import get_locale

from promo_engine.core import money

LANGUAGES = {"en": "en", "zh": "zh_Hans"}  # code in URLs -> babel locale
HTML_LANG = {"en": "en", "zh": "zh-Hans"}


def language() -> str:
    chosen = request.args.get("lang")
    if chosen in LANGUAGES:
        session["lang"] = chosen
        return chosen
    if session.get("lang") in LANGUAGES:
        return session["lang"]
    # The browser's languages, most wanted first; "zh-CN" or "zh-Hans" means zh, "en-GB" en.
    for value, quality in request.accept_languages:
        primary = value.split("-")[0].split("_")[0].lower()
        if quality > 0 and primary in LANGUAGES:
            return primary
    return "en"


def select_locale() -> str:
    return LANGUAGES[language()]


def html_lang() -> str:
    return HTML_LANG[language()]


def format_money(amount: Decimal | int | str | None, currency: str, *, minor: bool = False) -> str:
    if amount is None or amount == "":
        return "—"
    value = Decimal(str(amount))
    if minor:
        value = value.scaleb(-money.minor_digits(currency))
    return format_currency(value, currency, locale=str(get_locale()))


def format_number(value) -> str:
    if value is None or value == "":
        return "—"
    return format_decimal(Decimal(str(value)), locale=str(get_locale()))


def format_percent(share: Decimal | None) -> str:
    """A share (0.25) as a percentage for the locale, to a tenth of a percent: "25%"."""
    if share is None:
        return "—"
    return babel_percent(share, format="#,##0.#%", locale=str(get_locale()))


def format_local(value: datetime | str | None, zone: str, *, fmt: str = "medium") -> str:
    """An instant (aware datetime) or a stored local time (naive text) in `zone`."""
    if value in (None, ""):
        return "—"
    tz = ZoneInfo(zone)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return babel_datetime(value, format=fmt, tzinfo=tz, locale=str(get_locale()))
