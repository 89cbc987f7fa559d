"""holiday_discount: a percentage or fixed amount off a payment."""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from marshmallow import RAISE, Schema, ValidationError, validates_schema

from promo_engine.core.campaign_type import CampaignType
from promo_engine.core.event import PAYMENT
from promo_engine.core.hookspecs import hookimpl
from promo_engine.core.money import format_amount, quantum
from promo_engine.core.params import ExactDecimal, Money
from promo_engine.core.rewards import DISCOUNT, money_reward

HUNDRED = Decimal(100)


def _percent_in_range(value: Decimal) -> None:
    if not Decimal(0) <= value <= HUNDRED:
        raise ValidationError("must be between 0 and 100")


class HolidayDiscountParams(Schema):
    class Meta:
        unknown = RAISE

    percent = ExactDecimal(places=2, validate=_percent_in_range)
    max_discount = Money()
    amount_off = Money()

    @validates_schema
    def percent_or_amount_off(self, data, **kwargs):
        if ("percent" in data) == ("amount_off" in data):
            raise ValidationError("give exactly one of percent or amount_off", field_name="percent")
        if "max_discount" in data and "percent" not in data:
            raise ValidationError("max_discount goes with percent", field_name="max_discount")


class HolidayDiscount(CampaignType):
    name = "holiday_discount"
    params_schema = HolidayDiscountParams

    def triggers(self, params):
        return frozenset({PAYMENT})

    def reward_unit(self, params):
        return "money"

    def compile(self, campaign):
        currency = campaign.currency
        campaign_id = campaign.id
        params = campaign.params
        if "amount_off" in params:
            amount_off = params["amount_off"]
            whole = money_reward(DISCOUNT, amount_off, currency, campaign_id)  # immutable, shared

            def evaluate(ctx):
                amount = ctx.event.amount
                if amount >= amount_off:
                    return whole
                return money_reward(DISCOUNT, amount, currency, campaign_id)  # never more than it
            return evaluate

        rate = params["percent"] / HUNDRED
        cap = params.get("max_discount")
        cent = quantum(currency)

        def evaluate(ctx):
            discount = (ctx.event.amount * rate).quantize(cent, ROUND_HALF_UP)
            if cap is not None and discount > cap:
                discount = cap
            if not discount:
                return None
            return money_reward(DISCOUNT, discount, currency, campaign_id)
        return evaluate

    def summary(self, params, currency):
        if "amount_off" in params:
            return f"{format_amount(params['amount_off'], currency)} {currency} off"
        text = f"{params['percent'].normalize():f}% off"
        if "max_discount" in params:
            text += f", at most {format_amount(params['max_discount'], currency)} {currency}"
        return text

    def localized_summary(self, params, currency, language):
        if language != "zh":
            return self.summary(params, currency)
        if "amount_off" in params:
            return f"立减 {format_amount(params['amount_off'], currency)} {currency}"
        text = f"{params['percent'].normalize():f}% 折扣"
        if "max_discount" in params:
            text += f"，最多减 {format_amount(params['max_discount'], currency)} {currency}"
        return text


@hookimpl
def promo_campaign_types():
    return [HolidayDiscount()]
