"""points_multiplier: a payment earns `multiplier` x its base points in total."""
from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal

from marshmallow import RAISE, Schema, ValidationError

from promo_engine.core.campaign_type import CampaignType, Stacking
from promo_engine.core.event import PAYMENT
from promo_engine.core.hookspecs import hookimpl
from promo_engine.core.params import ExactDecimal
from promo_engine.core.rewards import points_reward

STACKING_GROUP = "points_multiplier"


def _above_one(value: Decimal) -> None:
    if value <= 1:
        raise ValidationError("must be greater than 1")
    if value > 100:
        raise ValidationError("must be at most 100")


class PointsMultiplierParams(Schema):
    class Meta:
        unknown = RAISE

    multiplier = ExactDecimal(places=2, required=True, validate=_above_one)


class PointsMultiplier(CampaignType):
    name = "points_multiplier"
    params_schema = PointsMultiplierParams

    def triggers(self, params):
        return frozenset({PAYMENT})

    def reward_unit(self, params):
        return "points"

    def compile(self, campaign):
        multiplier = campaign.params["multiplier"]
        campaign_id = campaign.id

        def evaluate(ctx):
            base = ctx.base_points
            extra = int((base * multiplier).to_integral_value(ROUND_FLOOR)) - base
            if extra <= 0:
                return None
            # One group: when several multipliers apply only the highest is granted.
            return points_reward(extra, campaign_id, stacking_group=STACKING_GROUP,
                                 rank=multiplier)
        return evaluate

    def stacking(self, params):
        # Declared, so a multiplier that a higher one beats is never evaluated.
        return Stacking(STACKING_GROUP, params["multiplier"])

    def summary(self, params, currency):
        return f"{params['multiplier'].normalize():f}x points"

    def localized_summary(self, params, currency, language):
        if language != "zh":
            return self.summary(params, currency)
        return f"{params['multiplier'].normalize():f} 倍积分"


@hookimpl
def promo_campaign_types():
    return [PointsMultiplier()]
