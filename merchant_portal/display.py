"""Stored values as people read them: days of the week and hours of a campaign window.

A window's `to` of "00:00" or "24:00" is the end of the day (`TimeOfDay` in
`promo_engine/campaigns/field_types.py`), shown as 24:00; a window from 00:00 to the end of
the day is "all day".
"""
from __future__ import annotations

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from merchant_portal import i18n

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_NAMES = {"mon": _l("Mon"), "tue": _l("Tue"), "wed": _l("Wed"), "thu": _l("Thu"),
             "fri": _l("Fri"), "sat": _l("Sat"), "sun": _l("Sun")}
END_OF_DAY = ("00:00", "24:00", "00:00:00", "24:00:00")


def day_list(days) -> str:
    """["sat", "sun"] -> "Sat, Sun" (周六、周日), in the week's order; none -> every day."""
    codes = [str(day).strip().lower() for day in days or ()]
    if not codes or set(codes) >= set(DAYS):
        return _("every day")
    ordered = sorted(set(codes), key=lambda d: DAYS.index(d) if d in DAYS else len(DAYS))
    separator = "、" if i18n.language() == "zh" else ", "
    return separator.join(str(DAY_NAMES.get(day, day)) for day in ordered)


def end_time(value) -> str:
    """A window's `to` as the form and pages show it: the end of the day is 24:00."""
    text = str(value or "").strip()
    return "24:00" if not text or text in END_OF_DAY else _hhmm(text)


def _hhmm(text: str) -> str:
    return text[:5] if len(text) == 8 and text.endswith(":00") else text


def hours_text(window) -> str:
    """"11:00–14:00", or "all day" for a window from 00:00 to the end of the day."""
    start = _hhmm(str(window.get("from") or "00:00").strip())
    end = end_time(window.get("to"))
    if start in ("00:00", "0:00") and end == "24:00":
        return _("all day")
    return f"{start}–{end}"


def window_text(window) -> str:
    """"Sat, Sun · 11:00–14:00" (周六、周日 · 11:00–14:00); "Every day · all day"."""
    return _("%(days)s · %(hours)s", days=day_list(window.get("days")),
             hours=hours_text(window))
