"""A campaign definition as the engine sees it: validated, immutable, times in UTC.

It is built by the campaign schema (`campaigns/schema.py`) from YAML or the portal and
compiled by the engine into an evaluator; nothing here knows where it came from.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time
from decimal import Decimal
from typing import Any, Mapping

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class Window:
    """A recurring local-time window; `end` None means the end of the day."""
    days: frozenset[int]  # 0 = Monday, as datetime.weekday()
    start: time
    end: time | None

    def contains(self, weekday: int, time_of_day: time) -> bool:
        if weekday not in self.days or time_of_day < self.start:
            return False
        return self.end is None or time_of_day < self.end


@dataclass(frozen=True, slots=True)
class UserConditions:
    """`conditions.user`: on the user's history before the event, as the ledger keeps it
    (`UserState`); how each is judged is in `core/targeting.py`. None: not a condition."""
    min_payments: int | None = None
    max_payments: int | None = None
    inactive_days: int | None = None


@dataclass(frozen=True, slots=True)
class Conditions:
    min_amount: Decimal | None = None
    mcc: frozenset[str] | None = None
    channels: frozenset[str] | None = None
    # attribute name -> accepted values, compared as strings ("true"/"false" for booleans)
    attributes: Mapping[str, frozenset[str]] = field(default_factory=dict)
    user: UserConditions | None = None  # None: the user's history does not matter


@dataclass(frozen=True, slots=True)
class Budget:
    """Exactly one of money (`amount`) or `points`."""
    amount: Decimal | None = None
    points: int | None = None

    @property
    def unit(self) -> str:
        return "points" if self.points is not None else "money"


@dataclass(frozen=True, slots=True)
class Limits:
    per_user: int | None = None
    per_user_daily: int | None = None
    max_redemptions: int | None = None
    # Like per_user and per_user_daily, counted per device_id; an event without one is
    # neither counted nor limited by them.
    per_device: int | None = None
    per_device_daily: int | None = None


@dataclass(frozen=True, slots=True)
class Campaign:
    id: str
    type: str
    name: str
    timezone: str
    starts_at: datetime  # aware, UTC
    ends_at: datetime  # aware, UTC, exclusive
    currency: str
    params: Mapping[str, Any]
    merchants: frozenset[str] | None = None  # None: every merchant
    windows: tuple[Window, ...] = ()  # empty: the whole of [starts_at, ends_at)
    conditions: Conditions = Conditions()
    budget: Budget | None = None
    limits: Limits = Limits()
    priority: int = 0
    exclusive: bool = False
    holdout: int = 0  # percent of users (0-50) who never get its reward: `core/targeting.py`
