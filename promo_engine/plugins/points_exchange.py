"""points_exchange: a redemption naming the campaign spends `cost_points` for its reward.

The first exchange type: `cost_points` makes it one (see CampaignType.cost_points), so the
engine offers it to nothing but a `redemption` with its `campaign_id`, and the ledger takes
the points. The reward is a voucher or cashback, the same every time; `max_redemptions` is
the campaign's stock and `budget.amount` its money.
"""
from __future__ import annotations

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from promo_engine.core.campaign_type import CampaignType
from promo_engine.core.event import REDEMPTION
from promo_engine.core.hookspecs import hookimpl
from promo_engine.core.money import format_amount
from promo_engine.core.params import Money, StrictInteger, VoucherParams, voucher_reward
from promo_engine.core.rewards import CASHBACK, money_reward

REWARDS = ("voucher", "cashback")


class PointsExchangeParams(Schema):
    class Meta:
        unknown = RAISE

    cost_points = StrictInteger(required=True, validate=validate.Range(min=1))
    voucher = fields.Nested(VoucherParams)
    cashback = Money()

    @validates_schema
    def exactly_one_reward(self, data, **kwargs):
        given = [name for name in REWARDS if name in data]
        if len(given) != 1:
            raise ValidationError("give exactly one of voucher or cashback",
                                  field_name="voucher" if not given else given[1])


class PointsExchange(CampaignType):
    name = "points_exchange"
    params_schema = PointsExchangeParams

    def triggers(self, params):
        return frozenset({REDEMPTION})

    def reward_unit(self, params):
        return "money"

    def cost_points(self, params):
        return params["cost_points"]

    def compile(self, campaign):
        params = campaign.params
        if "voucher" in params:
            reward = voucher_reward(params["voucher"], campaign.currency, campaign.id)
        else:
            reward = money_reward(CASHBACK, params["cashback"], campaign.currency, campaign.id)

        # The engine calls this only for a redemption naming the campaign, once its window,
        # conditions and the user's limits hold: the price is the ledger's to take.
        def evaluate(ctx):
            return reward
        return evaluate

    def summary(self, params, currency):
        cost = params["cost_points"]
        if "cashback" in params:
            cashback = format_amount(params["cashback"], currency)
            return f"{cashback} {currency} cashback for {cost} points"
        voucher = params["voucher"]
        what = f"a {format_amount(voucher['amount'], currency)} {currency} voucher"
        if "min_amount" in voucher:
            what += f" (min. spend {format_amount(voucher['min_amount'], currency)} {currency})"
        return f"{what} for {cost} points"

    def localized_summary(self, params, currency, language):
        if language != "zh":
            return self.summary(params, currency)
        cost = params["cost_points"]
        if "cashback" in params:
            cashback = format_amount(params["cashback"], currency)
            return f"{cost} 积分兑换 {cashback} {currency} 返现"
        voucher = params["voucher"]
        what = f"{format_amount(voucher['amount'], currency)} {currency} 优惠券"
        if "min_amount" in voucher:
            what += f"（满 {format_amount(voucher['min_amount'], currency)} {currency} 可用）"
        return f"{cost} 积分兑换 {what}"


@hookimpl
def promo_campaign_types():
    return [PointsExchange()]
