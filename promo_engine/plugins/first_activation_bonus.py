"""first_activation_bonus: a one-time reward for a user's first activation (or payment)."""
from __future__ import annotations

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from promo_engine.core.campaign_type import CampaignType
from promo_engine.core.event import ACTIVATION, PAYMENT
from promo_engine.core.hookspecs import hookimpl
from promo_engine.core.money import format_amount
from promo_engine.core.params import Money, StrictInteger, VoucherParams, voucher_reward
from promo_engine.core.rewards import CASHBACK, money_reward, points_reward

ON_ACTIVATION = "activation"
ON_FIRST_PAYMENT = "first_payment"


class FirstActivationBonusParams(Schema):
    class Meta:
        unknown = RAISE

    on = fields.String(load_default=ON_ACTIVATION,
                       validate=validate.OneOf([ON_ACTIVATION, ON_FIRST_PAYMENT]))
    points = StrictInteger(validate=validate.Range(min=1))
    cashback = Money()
    voucher = fields.Nested(VoucherParams)

    @validates_schema
    def exactly_one_reward(self, data, **kwargs):
        given = [name for name in ("points", "cashback", "voucher") if name in data]
        if len(given) != 1:
            raise ValidationError("give exactly one of points, cashback or voucher",
                                  field_name="points" if not given else given[1])


class FirstActivationBonus(CampaignType):
    name = "first_activation_bonus"
    params_schema = FirstActivationBonusParams

    def triggers(self, params):
        return frozenset({PAYMENT if params["on"] == ON_FIRST_PAYMENT else ACTIVATION})

    def reward_unit(self, params):
        return "points" if "points" in params else "money"

    def compile(self, campaign):
        params = campaign.params
        on_payment = params["on"] == ON_FIRST_PAYMENT
        if "points" in params:
            reward = points_reward(params["points"], campaign.id)
        elif "cashback" in params:
            reward = money_reward(CASHBACK, params["cashback"], campaign.currency, campaign.id)
        else:
            reward = voucher_reward(params["voucher"], campaign.currency, campaign.id)

        # The reward is the same every time; only "is this the user's first?" varies.
        if on_payment:
            def evaluate(ctx):
                return reward if ctx.user.payments == 0 else None
        else:
            def evaluate(ctx):
                return reward if ctx.user.activations == 0 else None
        return evaluate

    def summary(self, params, currency):
        when = "first payment" if params["on"] == ON_FIRST_PAYMENT else "wallet activation"
        if "points" in params:
            what = f"{params['points']} points"
        elif "cashback" in params:
            what = f"{format_amount(params['cashback'], currency)} {currency} cashback"
        else:
            voucher = params["voucher"]
            what = (f"a {format_amount(voucher['amount'], currency)} {currency} voucher "
                    f"valid {voucher['valid_days']} days")
            if "min_amount" in voucher:
                what += f" (min. spend {format_amount(voucher['min_amount'], currency)} {currency})"
        return f"{what} on your {when}"

    def localized_summary(self, params, currency, language):
        if language != "zh":
            return self.summary(params, currency)
        when = "首次支付" if params["on"] == ON_FIRST_PAYMENT else "开通钱包"
        if "points" in params:
            what = f"{params['points']} 积分"
        elif "cashback" in params:
            what = f"{format_amount(params['cashback'], currency)} {currency} 返现"
        else:
            voucher = params["voucher"]
            what = f"{format_amount(voucher['amount'], currency)} {currency} 优惠券"
            if "min_amount" in voucher:
                what += f"（满 {format_amount(voucher['min_amount'], currency)} {currency} 可用）"
            what += f"，{voucher['valid_days']} 天内有效"
        return f"{when}送 {what}"


@hookimpl
def promo_campaign_types():
    return [FirstActivationBonus()]
