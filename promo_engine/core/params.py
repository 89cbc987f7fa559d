"""Marshmallow fields and schemas that campaign-type params share: money as exact Decimal,
no floats, and one way of writing a voucher wherever a type gives one.
"""
from __future__ import annotations

import contextvars
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from promo_engine.core import money
from promo_engine.core.rewards import VOUCHER, Reward, money_reward

# The program currency while a campaign is being validated; money params are checked
# against its minor digits. Set by the campaign schema around each load.
CURRENCY: contextvars.ContextVar[str] = contextvars.ContextVar("promo_currency", default="CNY")


class Money(fields.Field):
    """A positive amount written as a string ("30.00") or a whole number (30)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or isinstance(value, float):
            raise ValidationError('write money as a quoted string, e.g. "30.00"')
        if isinstance(value, int):
            value = str(value)
        if isinstance(value, Decimal):
            value = str(value)
        try:
            return money.parse_amount(value, CURRENCY.get())
        except money.MoneyError as exc:
            raise ValidationError(str(exc)) from None

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else money.format_amount(value, CURRENCY.get())


class ExactDecimal(fields.Field):
    """A decimal read from an int, a string, or a YAML float's shortest text (not money)."""

    def __init__(self, *, places: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.places = places

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            raise ValidationError("must be a number")
        text = repr(value) if isinstance(value, float) else str(value)
        try:
            result = Decimal(text)
        except InvalidOperation:
            raise ValidationError("must be a number") from None
        if not result.is_finite():
            raise ValidationError("must be a finite number")
        if self.places is not None and -result.as_tuple().exponent > self.places:
            raise ValidationError(f"at most {self.places} decimal places")
        return result

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else str(value)


class StrictInteger(fields.Integer):
    """An integer that refuses booleans, floats and numeric strings."""

    def __init__(self, **kwargs):
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            raise ValidationError("must be a whole number")
        return super()._deserialize(value, attr, data, **kwargs)


class VoucherParams(Schema):
    """A voucher as every type writes it: `{amount: "10.00", valid_days: 30, min_amount:
    "50.00"}` (`min_amount` optional). Shared so that a voucher means the same everywhere:
    the ledger issues and checks every voucher the same way, whichever type gave it."""

    class Meta:
        unknown = RAISE

    amount = Money(required=True)
    valid_days = StrictInteger(required=True, validate=validate.Range(min=1, max=3650))
    min_amount = Money()


def voucher_reward(params: Mapping[str, Any], currency: str, campaign_id: str | None) -> Reward:
    """The voucher reward of params loaded with `VoucherParams`; immutable, so a type builds
    it once in `compile()` and returns it for every event."""
    return money_reward(VOUCHER, params["amount"], currency, campaign_id,
                        voucher_valid_days=params["valid_days"],
                        voucher_min_amount=params.get("min_amount"))
