"""tiered_cashback: a payment earns the cashback of the highest tier its amount reaches.

A promo-engine plugin, found through the `promo_engine.plugins` entry point.
"""
from __future__ import annotations

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from promo_engine import hookimpl
from promo_engine.campaign_type import CampaignType
from promo_engine.event import PAYMENT
from promo_engine.money import format_amount
from promo_engine.params import Money
from promo_engine.rewards import CASHBACK, money_reward


class TierSchema(Schema):
    class Meta:
        unknown = RAISE

    min_amount = Money(required=True)
    cashback = Money(required=True)


class TieredCashbackParams(Schema):
    class Meta:
        unknown = RAISE

    tiers = fields.List(fields.Nested(TierSchema), required=True,
                        validate=validate.Length(min=1, max=20))

    # A schema validator runs only once every tier has loaded (skip_on_field_errors).
    @validates_schema
    def tiers_climb(self, data, **kwargs):
        tiers = data["tiers"]
        for lower, higher in zip(tiers, tiers[1:]):
            if higher["min_amount"] <= lower["min_amount"]:
                raise ValidationError("list the tiers by min_amount, lowest first", "tiers")
            if higher["cashback"] < lower["cashback"]:
                raise ValidationError("a higher tier cannot pay less cashback than a lower one",
                                      "tiers")
        for tier in tiers:
            if tier["cashback"] > tier["min_amount"]:
                raise ValidationError("a tier's cashback cannot be more than its min_amount",
                                      "tiers")


class TieredCashback(CampaignType):
    name = "tiered_cashback"
    params_schema = TieredCashbackParams

    def triggers(self, params):
        return frozenset({PAYMENT})

    def reward_unit(self, params):
        return "money"

    def compile(self, campaign):
        # Built once per campaign: the rewards are immutable, so every event shares them.
        # Highest tier first, so the first one the payment reaches is the one it earns.
        tiers = tuple(
            (tier["min_amount"],
             money_reward(CASHBACK, tier["cashback"], campaign.currency, campaign.id))
            for tier in reversed(campaign.params["tiers"]))

        def evaluate(ctx):
            amount = ctx.event.amount
            for min_amount, reward in tiers:
                if amount >= min_amount:
                    return reward
            return None
        return evaluate

    def summary(self, params, currency):
        return ", ".join(
            f"{format_amount(tier['cashback'], currency)} {currency} back from "
            f"{format_amount(tier['min_amount'], currency)}"
            for tier in params["tiers"])


@hookimpl
def promo_campaign_types():
    return [TieredCashback()]
