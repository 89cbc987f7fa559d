"""A campaign's budget as pages show it: total, used and left, formatted for the language.

`spent` comes from `promo_engine.ledger.usage.current_usage` (Redis's counters first when
there are any), so what a page says is left is what the next event is checked against.
"""
from __future__ import annotations

from decimal import Decimal

from flask_babel import gettext as _

from merchant_portal import i18n
from promo_engine.core import money


def budget_view(spec: dict, spent: int, currency: str) -> dict:
    """Budget, used and left as display strings (total and left None without a budget);
    `spent` in minor units of `currency`, or points for a points budget."""
    budget = spec.get("budget") or {}
    if "amount" in budget:
        total = money.to_minor(Decimal(str(budget["amount"])), currency)
        return {"total": i18n.format_money(total, currency, minor=True),
                "used": i18n.format_money(spent, currency, minor=True),
                "left": i18n.format_money(max(total - spent, 0), currency, minor=True),
                "percent": min(100, round(100 * spent / total)) if total else 0,
                "total_minor": total, "used_minor": spent}
    if "points" in budget:
        total = int(budget["points"])
        return {"total": _("%(number)s points", number=i18n.format_number(total)),
                "used": i18n.format_number(spent),
                "left": _("%(number)s points", number=i18n.format_number(max(total - spent, 0))),
                "percent": min(100, round(100 * spent / total)) if total else 0,
                "total_minor": total, "used_minor": spent}
    return {"total": None, "used": i18n.format_money(spent, currency, minor=True)
            if spent else None, "left": None, "percent": 0}
