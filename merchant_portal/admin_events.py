"""The bank's events page (/portal/admin/events): the recorded events of a user, a device or
merchants, optionally of one type, within an amount range and a period, newest first, 50 a
page, each with the campaign rewards it earned. Every row of the Risk page links here with
the filter behind it. Bank admins only.

Filters (query string; a bad one is left out and said so above the list):
- `user_id`, `device_id`, `event_id` (the wallet's): exact ids; `merchant_id`: repeated or
  comma-separated.
- `type`: an event type (payment, refund, ...).
- `min_amount`, `max_amount`: the event's amount, both included, in the program currency.
- `from` (included), `to` (excluded): a day (YYYY-MM-DD: its midnight) or a time
  (YYYY-MM-DDTHH:MM[:SS]), both in the program timezone, or an instant with its offset.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

from flask import render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import and_, case, func, select, true

from merchant_portal import bp
from merchant_portal.auth import login_required
from merchant_portal.models import ADMIN
from promo_engine.core import money
from promo_engine.core.event import BUILTIN_EVENT_TYPES
from promo_engine.ledger.extensions import db
from promo_engine.ledger.models import EventRecord, RewardRecord
from promo_engine.ledger.risk_models import RewardHold
from promo_engine.service import promo_service

PAGE_SIZE = 50
ID = re.compile(r"[^\x00-\x1f]{1,128}")
TYPE = re.compile(r"[a-z][a-z0-9_]{0,31}")


@dataclass
class Filters:
    user_id: str | None = None
    device_id: str | None = None
    event_id: str | None = None
    merchants: list[str] = field(default_factory=list)
    type: str | None = None
    min_minor: int | None = None
    max_minor: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    values: dict = field(default_factory=dict)  # the accepted filters as given, for links
    problems: list[str] = field(default_factory=list)

    @property
    def any(self) -> bool:
        return bool(self.values)


def _moment(text: str, zone: ZoneInfo) -> datetime:
    if len(text) == 10:
        return datetime.combine(date.fromisoformat(text), time(0), tzinfo=zone)
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value.replace(tzinfo=zone) if value.tzinfo is None else value


def read_filters(args, zone: ZoneInfo, currency: str) -> Filters:
    found = Filters()
    for key, label in (("user_id", _("User")), ("device_id", _("Device")),
                       ("event_id", _("Event id"))):
        value = (args.get(key) or "").strip()
        if not value:
            continue
        if ID.fullmatch(value):
            setattr(found, key, value)
            found.values[key] = value
        else:
            found.problems.append(_("%(field)s is not an id; it was left out.", field=label))
    merchants = [part.strip() for value in args.getlist("merchant_id")
                 for part in value.split(",") if part.strip()]
    if merchants:
        found.merchants = sorted({m for m in merchants if ID.fullmatch(m)})
        found.values["merchant_id"] = found.merchants
    kind = (args.get("type") or "").strip()
    if kind:
        if TYPE.fullmatch(kind):
            found.type = found.values["type"] = kind
        else:
            found.problems.append(_("That event type does not exist; it was left out."))
    for key, attribute, label in (("min_amount", "min_minor", _("Minimum amount")),
                                  ("max_amount", "max_minor", _("Maximum amount"))):
        value = (args.get(key) or "").strip()
        if not value:
            continue
        try:
            amount = money.parse_amount(value, currency, allow_zero=True)
        except ValueError:
            found.problems.append(_("%(field)s must be an amount such as 12.50; it was left "
                                    "out.", field=label))
            continue
        setattr(found, attribute, money.to_minor(amount, currency))
        found.values[key] = str(amount)
    for key, attribute, label in (("from", "since", _("From")), ("to", "until", _("Before"))):
        value = (args.get(key) or "").strip()
        if not value:
            continue
        try:
            moment = _moment(value, zone).astimezone(timezone.utc)
        except (ValueError, OverflowError):  # not a time; a time before year 1 in UTC
            found.problems.append(_("%(field)s must be a date (YYYY-MM-DD) or a time "
                                    "(YYYY-MM-DDTHH:MM); it was left out.", field=label))
            continue
        setattr(found, attribute, moment)
        found.values[key] = value
    return found


def _query(filters: Filters):
    conditions = []
    if filters.user_id:
        conditions.append(EventRecord.user_id == filters.user_id)
    if filters.device_id:
        conditions.append(EventRecord.device_id == filters.device_id)
    if filters.event_id:
        conditions.append(EventRecord.event_id == filters.event_id)
    if filters.merchants:
        conditions.append(EventRecord.merchant_id.in_(filters.merchants))
    if filters.type:
        conditions.append(EventRecord.type == filters.type)
    if filters.min_minor is not None:
        conditions.append(EventRecord.amount_minor >= filters.min_minor)
    if filters.max_minor is not None:
        conditions.append(EventRecord.amount_minor <= filters.max_minor)
    if filters.since is not None:
        conditions.append(EventRecord.occurred_at >= filters.since)
    if filters.until is not None:
        conditions.append(EventRecord.occurred_at < filters.until)
    return and_(true(), *conditions)


@dataclass(frozen=True)
class EventRow:
    event: EventRecord
    money: Decimal | None    # campaign money rewards (gross), None when none
    points: int
    held: bool


def _rewards(event_pks: list[int], currency: str) -> dict[int, tuple[Decimal | None, int, bool]]:
    if not event_pks:
        return {}
    held = case((RewardHold.status == "held", 1), else_=0)
    rows = db.session.execute(
        select(RewardRecord.event_pk,
               func.sum(case((RewardRecord.kind == "points", None),
                             else_=RewardRecord.amount_minor)),
               func.coalesce(func.sum(RewardRecord.points), 0), func.coalesce(func.max(held), 0))
        .outerjoin(RewardHold, RewardHold.reward_pk == RewardRecord.id)
        .where(RewardRecord.event_pk.in_(event_pks), RewardRecord.campaign_id.is_not(None),
               RewardRecord.reason.is_(None), RewardRecord.reverses_id.is_(None))
        .group_by(RewardRecord.event_pk)).all()
    return {pk: (None if minor is None else money.from_minor(int(minor), currency),
                 int(points), bool(is_held)) for pk, minor, points, is_held in rows}


def page_link(filters: Filters, page: int) -> str:
    return url_for("portal.admin_events", **filters.values, page=page)


def filter_link(filters: Filters, **changes) -> str:
    """The same period, one id instead of the current ones (a user's, a device's...)."""
    kept = {k: v for k, v in filters.values.items() if k in ("from", "to")}
    return url_for("portal.admin_events", **kept, **changes)


@bp.get("/admin/events")
@login_required(ADMIN)
def admin_events(user):
    settings = promo_service().settings
    zone = ZoneInfo(settings.timezone)
    filters = read_filters(request.args, zone, settings.currency)
    try:
        page = max(1, int(request.args.get("page", "1")))
    except ValueError:
        page = 1
    where = _query(filters)
    total = db.session.scalar(select(func.count(EventRecord.id)).where(where))
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(page, pages)
    events = db.session.scalars(
        select(EventRecord).where(where)
        .order_by(EventRecord.occurred_at.desc(), EventRecord.id.desc())
        .offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE)).all()
    rewards = _rewards([e.id for e in events], settings.currency)
    rows = [EventRow(e, *rewards.get(e.id, (None, 0, False))) for e in events]
    return render_template(
        "admin/events.html", rows=rows, filters=filters, total=total, page=page, pages=pages,
        first=(page - 1) * PAGE_SIZE + 1, last=(page - 1) * PAGE_SIZE + len(rows),
        types=sorted(BUILTIN_EVENT_TYPES | ({filters.type} if filters.type else set())),
        currency=settings.currency, zone=settings.timezone, page_link=page_link,
        filter_link=filter_link, event_type_label=event_type_label,
        minor=lambda value: money.from_minor(value, settings.currency))


def event_type_label(kind: str) -> str:
    return {"payment": _("payment"), "refund": _("refund"), "activation": _("activation"),
            "redemption": _("redemption"), "cancel": _("cancel")}.get(kind, kind)
