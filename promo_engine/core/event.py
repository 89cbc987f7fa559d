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
REDEMPTION = "redemption"  # spends points: a plain burn (`points`) or an exchange (`campaign_id`)
CANCEL = "cancel"  # undoes a redemption whole (`original_event_id`)
BUILTIN_EVENT_TYPES = frozenset({ACTIVATION, PAYMENT, REFUND, REDEMPTION, CANCEL})


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
    # The fields below come after `attributes` so that every existing keyword construction
    # keeps working; all default to "absent", which is what the hot path sees almost always.
    points: int | None = None  # redemption: the points a plain burn spends
    campaign_id: str | None = None  # redemption: the points_exchange campaign it redeems
    reference: str | None = None  # redemption: the caller's own reference, echoed back
    redeem_points: int | None = None  # payment/quote: points that pay part of the amount
    vouchers: tuple[str, ...] = ()  # payment/quote: voucher codes that pay part of the amount
    device_id: str | None = None  # any event: the user's device as the wallet knows it
