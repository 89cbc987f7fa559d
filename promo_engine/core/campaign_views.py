"""How campaigns are shown to people: local times, budget use, and the wallet's view.

Shared by the command line (`campaigns list`, `history`) and the API (`GET /v1/campaigns`)
so both say the same thing the same way. Pure: plain values in, text and dicts out.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time
from decimal import Decimal
from typing import Any, Mapping
from zoneinfo import ZoneInfo

from promo_engine.core.campaign import WEEKDAYS, Campaign
from promo_engine.core.money import format_amount, from_minor, round_half_up, to_minor

NOTHING = "—"  # an em dash: no budget, no reason given
POINTS_SUFFIX = "pts"


# --- times ----------------------------------------------------------------------------------

def local_time(instant: datetime, zone: str) -> datetime:
    return instant.astimezone(ZoneInfo(zone))


def local_text(instant: datetime, zone: str) -> str:
    """'2027-02-05 00:00' (seconds only when there are any), in `zone`."""
    local = local_time(instant, zone)
    return local.strftime("%Y-%m-%d %H:%M:%S" if local.second else "%Y-%m-%d %H:%M")


def window_text(starts_at: datetime, ends_at: datetime, zone: str) -> str:
    """'2027-02-05 00:00 – 2027-02-13 00:00 Asia/Shanghai' (the end exclusive)."""
    return f"{local_text(starts_at, zone)} – {local_text(ends_at, zone)} {zone}"


def rfc3339_local(instant: datetime, zone: str) -> str:
    """'2027-02-05T00:00:00+08:00': the instant, written with the zone's offset then."""
    return local_time(instant, zone).isoformat()


def time_of_day(value: time | None) -> str:
    """'11:00'; the end of the day (None) is '24:00'."""
    if value is None:
        return "24:00"
    return value.strftime("%H:%M:%S" if value.second else "%H:%M")


# --- budget and redemptions -----------------------------------------------------------------

@dataclass(frozen=True)
class BudgetUse:
    """A campaign's budget and what it has spent, in minor units of `currency` or points."""
    unit: str  # "money" or "points"
    total: int
    used: int
    currency: str

    @property
    def left(self) -> int:
        # A budget lowered below what was already spent has nothing left, not less.
        return max(self.total - self.used, 0)

    def amount(self, minor_or_points: int) -> str | int:
        if self.unit == "points":
            return minor_or_points
        return format_amount(from_minor(minor_or_points, self.currency), self.currency)

    def text(self) -> str:
        """'15.00 / 49985.00 CNY' or '1200 / 998800 pts'."""
        suffix = POINTS_SUFFIX if self.unit == "points" else self.currency
        return f"{self.amount(self.used)} / {self.amount(self.left)} {suffix}"

    def as_json(self) -> dict[str, Any]:
        return {"unit": self.unit,
                "currency": None if self.unit == "points" else self.currency,
                "total": self.amount(self.total), "used": self.amount(self.used),
                "left": self.amount(self.left)}


def budget_use(spec: Mapping[str, Any], spent: int, currency: str) -> BudgetUse | None:
    """The budget written in a stored campaign spec, with its usage; None without a budget.

    Read from the spec rather than a loaded `Campaign`, so that a campaign whose plugin is
    no longer installed can still be listed."""
    budget = spec.get("budget") or {}
    if "points" in budget:
        return BudgetUse("points", int(budget["points"]), spent, currency)
    if "amount" in budget:
        total = to_minor(round_half_up(Decimal(str(budget["amount"])), currency), currency)
        return BudgetUse("money", total, spent, currency)
    return None


def budget_text(use: BudgetUse | None) -> str:
    return NOTHING if use is None else use.text()


def max_redemptions(spec: Mapping[str, Any]) -> int | None:
    return (spec.get("limits") or {}).get("max_redemptions")


def redemptions_text(redemptions: int, maximum: int | None) -> str:
    """'3 / 10000', or '3' when there is no maximum."""
    return str(redemptions) if maximum is None else f"{redemptions} / {maximum}"


# --- the wallet's view ----------------------------------------------------------------------

def applies_at(campaign: Campaign, merchant_id: str) -> bool:
    """Whether the campaign can reward a payment at this merchant (bank-wide ones can)."""
    return campaign.merchants is None or merchant_id in campaign.merchants


def wallet_order(campaign: Campaign) -> tuple:
    """Highest priority first, then by id: the order the engine considers them in."""
    return (-campaign.priority, campaign.id)


def wallet_view(campaign: Campaign, summary: str) -> dict[str, Any]:
    """What a wallet may show of an open campaign: where, when, on what terms, and a
    summary of the reward; nothing of its budget, limits or targeting internals."""
    zone, conditions = campaign.timezone, campaign.conditions
    return {
        "id": campaign.id,
        "name": campaign.name,
        "type": campaign.type,
        "summary": summary,
        "merchants": sorted(campaign.merchants) if campaign.merchants is not None else None,
        "timezone": zone,
        "starts_at": rfc3339_local(campaign.starts_at, zone),
        "ends_at": rfc3339_local(campaign.ends_at, zone),
        "windows": [{"days": [WEEKDAYS[day] for day in sorted(window.days)],
                     "from": time_of_day(window.start), "to": time_of_day(window.end)}
                    for window in campaign.windows],
        "conditions": {
            "min_amount": (format_amount(conditions.min_amount, campaign.currency)
                           if conditions.min_amount is not None else None),
            "mcc": sorted(conditions.mcc) if conditions.mcc is not None else None,
            "channels": sorted(conditions.channels) if conditions.channels is not None else None,
        },
    }
