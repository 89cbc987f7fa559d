"""The program's risk policy document (as marketing or risk writes it in YAML, beside the
campaigns) in, a validated `RiskPolicy` out:

    risk_policy:
      per_user_daily:   {rewarded_events: 5, reward_amount: "200.00"}
      per_device_daily: {rewarded_events: 10, reward_amount: "300.00", users: 3}
      per_user_monthly: {cashback: "2000.00"}
      hold: {cashback_above: "100.00"}

Every rule is optional; a key that is not one of these is an error at its line, as in a
campaign, since a misspelt cap that silently caps nothing is worse than no file at all.
Like `schema.py` this knows nothing of files: `files.py` tells a policy document from a
campaign by its one top-level key and maps the errors back to lines.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from marshmallow import ValidationError, fields, post_load, validate

from promo_engine.campaigns.schema import MAX_COUNT, RANGE_MESSAGE, StrictSchema
from promo_engine.campaigns.schema_errors import CampaignInvalid
from promo_engine.campaigns.spec import plain_document, spec_hash
from promo_engine.core import params as params_module
from promo_engine.core.params import Money, StrictInteger
from promo_engine.core.risk import RiskPolicy

KEY = "risk_policy"  # the top-level key that makes a document the policy


def _count():
    return StrictInteger(validate=validate.Range(min=1, max=MAX_COUNT, error=RANGE_MESSAGE))


class PerUserDailySchema(StrictSchema):
    error_messages = {"type": 'must be a mapping such as {rewarded_events: 5, '
                              'reward_amount: "200.00"}'}
    rewarded_events = _count()
    reward_amount = Money()


class PerDeviceDailySchema(StrictSchema):
    error_messages = {"type": 'must be a mapping such as {rewarded_events: 10, '
                              'reward_amount: "300.00", users: 3}'}
    rewarded_events = _count()
    reward_amount = Money()
    users = _count()


class PerUserMonthlySchema(StrictSchema):
    error_messages = {"type": 'must be a mapping such as {cashback: "2000.00"}'}
    cashback = Money()


class HoldSchema(StrictSchema):
    error_messages = {"type": 'must be a mapping such as {cashback_above: "100.00"}'}
    cashback_above = Money()


class RulesSchema(StrictSchema):
    error_messages = {"type": "must be a mapping of rules (per_user_daily, per_device_daily, "
                              "per_user_monthly, hold)"}
    per_user_daily = fields.Nested(PerUserDailySchema)
    per_device_daily = fields.Nested(PerDeviceDailySchema)
    per_user_monthly = fields.Nested(PerUserMonthlySchema)
    hold = fields.Nested(HoldSchema)

    @post_load
    def make_policy(self, data, **kwargs):
        user = data.get("per_user_daily", {})
        device = data.get("per_device_daily", {})
        return RiskPolicy(
            user_daily_rewarded_events=user.get("rewarded_events"),
            user_daily_reward_amount=user.get("reward_amount"),
            device_daily_rewarded_events=device.get("rewarded_events"),
            device_daily_reward_amount=device.get("reward_amount"),
            device_daily_users=device.get("users"),
            user_monthly_cashback=data.get("per_user_monthly", {}).get("cashback"),
            hold_cashback_above=data.get("hold", {}).get("cashback_above"))


class RiskPolicyDocumentSchema(StrictSchema):
    """The whole document: `risk_policy:` and nothing beside it."""
    risk_policy = fields.Nested(RulesSchema, required=True)

    @post_load
    def unwrap(self, data, **kwargs):
        return data["risk_policy"]


def is_policy_document(document) -> bool:
    return isinstance(document, Mapping) and KEY in document


def load_risk_policy(document: Mapping, *, currency: str) -> RiskPolicy:
    """Validate a policy document; raise `CampaignInvalid` with every problem found (field
    paths as in the YAML, e.g. ("risk_policy", "hold", "cashback_above"))."""
    token = params_module.CURRENCY.set(currency)
    try:
        return RiskPolicyDocumentSchema().load(document)
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        raise CampaignInvalid(messages) from None
    finally:
        params_module.CURRENCY.reset(token)


@dataclass(frozen=True)
class LoadedRiskPolicy:
    policy: RiskPolicy
    spec: dict  # the document as stored (JSON-ready), which loads back into `policy`
    path: str
    line: int  # where the document starts

    @property
    def spec_hash(self) -> str:
        return spec_hash(self.spec)


def read_policy(document: Mapping, *, currency: str, path: str, line: int) -> LoadedRiskPolicy:
    """The policy and its stored form; `CampaignInvalid` for an invalid document, TypeError
    or ValueError for one that cannot be stored as it was read."""
    policy = load_risk_policy(document, currency=currency)
    spec = plain_document(document)
    spec_hash(spec)
    if load_risk_policy(spec, currency=currency) != policy:
        raise ValueError("it reads differently once stored")
    return LoadedRiskPolicy(policy=policy, spec=spec, path=path, line=line)
