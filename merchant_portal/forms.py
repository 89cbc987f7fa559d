"""The portal's forms. The offer form only carries values: what is a valid offer is decided
by `promo_engine.campaigns.schema.load_campaign`, the same schema as YAML campaigns, and its
error paths are mapped back onto the form's fields here."""
from __future__ import annotations

import re
from datetime import datetime
from typing import Mapping

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import PasswordField, SelectField, SelectMultipleField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length
from wtforms.widgets import CheckboxInput, ListWidget

from merchant_portal.display import DAY_NAMES, end_time
from merchant_portal.schema_messages import in_portal_language

try:  # WTForms 3.3 takes SelectChoice objects and deprecates (value, label) tuples
    from wtforms.fields.choices import SelectChoice as _SelectChoice

    def choice(value, label):
        return _SelectChoice(value, label)
except ImportError:  # pragma: no cover - older WTForms
    def choice(value, label):
        return (value, label)

OFFER_TYPES = ("holiday_discount", "points_multiplier")
TYPE_PARAMS = {
    "holiday_discount": ("percent", "max_discount", "amount_off"),
    "points_multiplier": ("multiplier",),
}
TIMEZONES = ("Asia/Shanghai", "Asia/Hong_Kong", "Asia/Macau", "Asia/Taipei", "Asia/Singapore",
             "Asia/Tokyo", "Asia/Seoul", "Europe/London", "Europe/Paris", "America/New_York",
             "America/Los_Angeles", "Australia/Sydney", "UTC")
NUMBER_FIELDS = ("per_user", "per_user_daily", "max_redemptions", "budget_points")
INTEGER = re.compile(r"[0-9]{1,18}")

# Where an error of the campaign schema is shown: its path (dots) -> the form field.
ERROR_FIELDS = {
    "type": "type", "name": "name", "timezone": "timezone",
    "starts_at": "starts_at", "ends_at": "ends_at",
    "windows": "window_days", "windows.0": "window_days", "windows.0.days": "window_days",
    "windows.0.from": "window_from", "windows.0.to": "window_to",
    "conditions": "min_amount", "conditions.min_amount": "min_amount",
    "budget": "budget_amount", "budget.amount": "budget_amount", "budget.points": "budget_points",
    "limits.per_user": "per_user", "limits.per_user_daily": "per_user_daily",
    "limits.max_redemptions": "max_redemptions",
    "params.percent": "percent", "params.max_discount": "max_discount",
    "params.amount_off": "amount_off", "params.multiplier": "multiplier",
}


DAY_LABELS = tuple(DAY_NAMES.items())
# The fields only one offer type uses (the form shows them for that type only).
TYPE_FIELDS = {
    "holiday_discount": ("percent", "max_discount", "amount_off", "budget_amount"),
    "points_multiplier": ("multiplier", "budget_points"),
}
TIME_INPUT = {"inputmode": "numeric", "maxlength": 5, "autocomplete": "off"}


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()

    def pre_validate(self, form):  # the schema judges the days
        pass


class LoginForm(FlaskForm):
    email = StringField(_l("Email"), validators=[DataRequired(), Length(max=254)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=1024)])


class ReasonForm(FlaskForm):
    reason = TextAreaField(_l("Reason"), validators=[Length(max=1000)])


class RejectForm(FlaskForm):
    reason = TextAreaField(_l("Reason"), validators=[DataRequired(), Length(max=1000)])


class OfferForm(FlaskForm):
    type = SelectField(_l("Offer type"), choices=[
        choice("holiday_discount", _l("Holiday discount")),
        choice("points_multiplier", _l("Points multiplier"))], validate_choice=False)
    name = StringField(_l("Name"))
    starts_at = StringField(_l("Starts"), render_kw={"type": "datetime-local"})
    ends_at = StringField(_l("Ends"), render_kw={"type": "datetime-local"})
    timezone = SelectField(_l("Time zone"), validate_choice=False)
    window_days = MultiCheckboxField(_l("Days"), choices=[
        choice(day, label) for day, label in DAY_LABELS])
    # Text, not type="time": a time input cannot hold 24:00, the end of the day.
    window_from = StringField(_l("From"), render_kw={**TIME_INPUT, "placeholder": "00:00"})
    window_to = StringField(_l("To"), render_kw={**TIME_INPUT, "placeholder": "24:00"})
    min_amount = StringField(_l("Minimum payment"), render_kw={"inputmode": "decimal"})
    percent = StringField(_l("Percent off"), render_kw={"inputmode": "decimal"})
    max_discount = StringField(_l("Maximum discount"), render_kw={"inputmode": "decimal"})
    amount_off = StringField(_l("Amount off"), render_kw={"inputmode": "decimal"})
    multiplier = StringField(_l("Points multiplier"), render_kw={"inputmode": "decimal"})
    budget_amount = StringField(_l("Budget (money)"), render_kw={"inputmode": "decimal"})
    budget_points = StringField(_l("Budget (points)"), render_kw={"inputmode": "numeric"})
    per_user = StringField(_l("Per customer, ever"), render_kw={"inputmode": "numeric"})
    per_user_daily = StringField(_l("Per customer, per day"), render_kw={"inputmode": "numeric"})
    max_redemptions = StringField(_l("Redemptions in total"),
                                  render_kw={"inputmode": "numeric"})

    def __init__(self, *args, default_timezone: str = "Asia/Shanghai", **kwargs):
        super().__init__(*args, **kwargs)
        zones = list(TIMEZONES)
        if default_timezone not in zones:
            zones.insert(0, default_timezone)
        self.timezone.choices = [choice(zone, zone) for zone in zones]
        self.day_labels = DAY_LABELS
        if not self.timezone.data:
            self.timezone.data = default_timezone


def _text(value) -> str:
    return (value or "").strip() if isinstance(value, str) else ("" if value is None else str(value))


def _count(text: str):
    """A whole number as int; anything else as written, for the schema to refuse."""
    return int(text) if INTEGER.fullmatch(text) else text


def document_from_form(form: OfferForm, *, campaign_id: str, merchant_id: str) -> dict:
    """The campaign document the form describes; always for this merchant only."""
    data = {name: _text(getattr(form, name).data) for name in (
        "type", "name", "starts_at", "ends_at", "timezone", "window_from", "window_to",
        "min_amount", "percent", "max_discount", "amount_off", "multiplier", "budget_amount",
        "budget_points", "per_user", "per_user_daily", "max_redemptions")}
    doc: dict = {"id": campaign_id, "type": data["type"], "merchants": [merchant_id]}
    if data["name"]:
        doc["name"] = data["name"]
    for key in ("timezone", "starts_at", "ends_at"):
        if data[key]:
            doc[key] = data[key]
    days = [day for day in (form.window_days.data or []) if isinstance(day, str)]
    if days or data["window_from"] or data["window_to"]:
        window: dict = {}
        if days:
            window["days"] = days
        window["from"] = data["window_from"] or "00:00"
        window["to"] = data["window_to"] or "24:00"
        doc["windows"] = [window]
    if data["min_amount"]:
        doc["conditions"] = {"min_amount": data["min_amount"]}
    budget = {}
    if data["budget_amount"]:
        budget["amount"] = data["budget_amount"]
    if data["budget_points"]:
        budget["points"] = _count(data["budget_points"])
    if budget:
        doc["budget"] = budget
    limits = {key: _count(data[key]) for key in ("per_user", "per_user_daily", "max_redemptions")
              if data[key]}
    if limits:
        doc["limits"] = limits
    doc["params"] = {key: data[key] for key in TYPE_PARAMS.get(data["type"], ()) if data[key]}
    return doc


def _local_input(value) -> str:
    """A stored local datetime as a datetime-local input value (minutes when whole)."""
    text = str(value or "")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return text
    return parsed.strftime("%Y-%m-%dT%H:%M" if not parsed.second else "%Y-%m-%dT%H:%M:%S")


def form_data_from_document(spec: Mapping) -> dict:
    """The form's values for a stored document (to edit or duplicate it)."""
    window = (spec.get("windows") or [{}])[0]
    params = spec.get("params") or {}
    budget = spec.get("budget") or {}
    limits = spec.get("limits") or {}
    data = {
        "type": spec.get("type", ""), "name": spec.get("name", ""),
        "timezone": spec.get("timezone", ""),
        "starts_at": _local_input(spec.get("starts_at")),
        "ends_at": _local_input(spec.get("ends_at")),
        "window_days": list(window.get("days") or []),
        "window_from": window.get("from", "") if window else "",
        "window_to": end_time(window.get("to")) if window else "",
        "min_amount": (spec.get("conditions") or {}).get("min_amount", ""),
        "budget_amount": budget.get("amount", ""),
        "budget_points": budget.get("points", ""),
    }
    for key in ("percent", "max_discount", "amount_off", "multiplier"):
        data[key] = params.get(key, "")
    for key in ("per_user", "per_user_daily", "max_redemptions"):
        data[key] = limits.get(key, "")
    return {key: ("" if value is None else value) for key, value in data.items()}


def errors_by_field(pairs) -> tuple[dict[str, list[str]], list[str]]:
    """(field path, message) pairs of the schema -> messages per form field, and the rest."""
    fields: dict[str, list[str]] = {}
    general: list[str] = []
    for path, message in pairs:
        keys = [str(key) for key in path]
        target = None
        for length in range(len(keys), 0, -1):
            target = ERROR_FIELDS.get(".".join(keys[:length]))
            if target:
                break
        if target is None and keys[:1] == ["params"]:
            target = "multiplier" if "multiplier" in message else "percent"
        shown = in_portal_language(message)
        if target is None:
            general.append(shown)
        else:
            fields.setdefault(target, []).append(shown)
    return fields, general



def error_summary(form: OfferForm, errors: Mapping[str, list[str]]) -> list[tuple[str, str, str]]:
    """(field name, its label, message) for every error, in the form's order: the summary
    at the top of the form links each to its field."""
    return [(name, str(field.label.text), message) for name, field in form._fields.items()
            for message in errors.get(name, [])]
