"""The event the engine evaluates: already validated, times aware and in UTC."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Mapping, Union

AttributeValue = Union[str, bool, Decimal]

ACTIVATION = "activation"
PAYMENT = "payment"
REFUND = "refund"
BUILTIN_EVENT_TYPES = frozenset({ACTIVATION, PAYMENT, REFUND})


@dataclass(frozen=True, slots=True)
class Event:
    type: str
    user_id: str
    occurred_at: datetime
    event_id: str | None = None
    merchant_id: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    mcc: str | None = None
    channel: str | None = None
    original_event_id: str | None = None
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)
