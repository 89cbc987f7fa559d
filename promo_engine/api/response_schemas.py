"""What the wallet API answers, as marshmallow schemas: documentation for /v1/openapi.json.

The bodies themselves are built elsewhere (ledger/responses.py for events and quotes, the
read endpoints in api/wallet_reads.py and api/campaigns.py); these schemas describe them,
and the tests hold real responses to the description. Each schema refuses properties it
does not list (marshmallow's default, which apispec states as additionalProperties: false),
so a field added to a body without being described here fails those tests.
Money patterns and the currency are per program: openapi.py fills them in.
"""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from promo_engine.core.explain import REASONS as EXPLAIN_REASONS

REASONS = ["spent", "returned", "expired"]
VOUCHER_STATUSES = ["active", "used", "voided", "expired"]


def starts_at_field() -> fields.String:
    """A campaign's start as the API shows it (offers and campaigns alike)."""
    return fields.String(required=True, metadata={
        "format": "date-time", "description": "inclusive; RFC 3339 with the campaign's local "
                                              "offset", "example": "2027-02-05T00:00:00+08:00"})


def ends_at_field() -> fields.String:
    return fields.String(required=True, metadata={
        "format": "date-time", "description": "exclusive; RFC 3339 with the campaign's local "
                                              "offset"})

class VoucherSchema(Schema):
    code = fields.String(allow_none=True, required=True)
    amount = fields.String(required=True, metadata={"example": "10.00"})
    currency = fields.String(required=True)
    min_amount = fields.String(allow_none=True, metadata={
        "description": "the least payment amount it can be used on; null: any"})
    expires_at = fields.String(required=True, metadata={"format": "date-time"})


class _RewardBase(Schema):
    """What every kind of reward has."""
    reward_id = fields.String(metadata={"description": "absent in quotes",
                                        "example": "rw_3f9c2a1b7d"})
    campaign_id = fields.String(allow_none=True, required=True,
                                metadata={"description": "null for base points and for points "
                                                         "spent or paid with"})
    reverses = fields.String(metadata={"description": "refunds and cancels: the reward_id "
                                                      "reversed"})


def _kind(kind: str) -> fields.String:
    return fields.String(required=True, validate=validate.OneOf([kind]))


class PointsRewardSchema(_RewardBase):
    kind = _kind("points")
    points = fields.Integer(required=True, metadata={
        "description": "negative in a reversal and for points spent"})
    reason = fields.String(validate=validate.OneOf(REASONS), metadata={
        "description": "a movement of points that is not a campaign's reward: spent "
                       "(a redemption or points paying), returned (a spend given back)"})


class DiscountRewardSchema(_RewardBase):
    kind = _kind("discount")
    amount = fields.String(required=True, metadata={
        "description": "exactly the currency's minor digits; negative in a reversal",
        "example": "15.00"})
    currency = fields.String(required=True)
    voucher_code = fields.String(metadata={"description": "a discount paid by a voucher: its "
                                                          "code"})


class CashbackRewardSchema(_RewardBase):
    kind = _kind("cashback")
    amount = fields.String(required=True, metadata={
        "description": "exactly the currency's minor digits; negative in a reversal",
        "example": "10.00"})
    currency = fields.String(required=True)
    held = fields.Boolean(validate=validate.Equal(True), metadata={
        "description": "an extension of the reward shape: present (always true) only on a "
                       "campaign cashback the program's risk policy holds for review (above "
                       "its hold.cashback_above). The reward is granted and counted, but the "
                       "wallet should not pay it out until the reward.released webhook; "
                       "reward.voided reverses it instead"})


class VoucherRewardSchema(_RewardBase):
    kind = _kind("voucher")
    voucher = fields.Nested(VoucherSchema, required=True)


# kind -> the name of its schema in /v1/openapi.json (openapi_variants.py makes `Reward`
# a oneOf of them)
REWARD_KINDS = {"points": "PointsReward", "discount": "DiscountReward",
                "cashback": "CashbackReward", "voucher": "VoucherReward"}
REWARD_SCHEMAS = {"PointsReward": PointsRewardSchema, "DiscountReward": DiscountRewardSchema,
                  "CashbackReward": CashbackRewardSchema, "VoucherReward": VoucherRewardSchema}


class RewardSchema(Schema):
    """A reward, of any kind: /v1/openapi.json states it as a oneOf of REWARD_SCHEMAS
    keyed on `kind` (openapi_variants.py replaces what apispec writes for this one)."""
    kind = fields.String(required=True, validate=validate.OneOf(list(REWARD_KINDS)))


class EventResponseSchema(Schema):
    event_id = fields.String(required=True)
    rewards = fields.List(fields.Nested(RewardSchema), required=True)
    points_balance = fields.Integer(required=True, metadata={"description": "available points"})
    reference = fields.String(metadata={"description": "redemptions: the reference sent"})


class ExplainedSchema(Schema):
    campaign_id = fields.String(required=True)
    name = fields.String(required=True)
    applied = fields.Boolean(required=True)
    reason = fields.String(required=True, validate=validate.OneOf(EXPLAIN_REASONS), metadata={
        "description": "stable code: " + ", ".join(EXPLAIN_REASONS)})
    detail = fields.String(required=True, metadata={
        "description": "for people, in English; names the condition, limit or campaign "
                       "(may be reworded between versions)"})


class QuoteResponseSchema(Schema):
    event_id = fields.String(allow_none=True)
    rewards = fields.List(fields.Nested(RewardSchema), required=True)
    points_balance = fields.Integer(required=True,
                                    metadata={"description": "the balance if the event were recorded"})
    reference = fields.String(metadata={"description": "redemptions: the reference sent"})
    dry_run = fields.Boolean(required=True)
    explain = fields.List(fields.Nested(ExplainedSchema), metadata={
        "description": "only with ?explain=true: every candidate campaign in priority "
                       "order, whether it applied and why"})


class PointsEntrySchema(Schema):
    reward_id = fields.String(required=True)
    event_id = fields.String(allow_none=True, required=True,
                             metadata={"description": "null for points that expired"})
    campaign_id = fields.String(allow_none=True, required=True)
    kind = fields.String(required=True)
    points = fields.Integer(required=True)
    reason = fields.String(validate=validate.OneOf(REASONS), metadata={
        "description": "absent for what campaigns and base earning give (and their "
                       "reversals); spent, returned (a spend given back) or expired"})
    created_at = fields.String(required=True, metadata={"format": "date-time"})


class ExpiringPointsSchema(Schema):
    points = fields.Integer(required=True)
    expires_at = fields.String(required=True, metadata={
        "format": "date-time", "description": "RFC 3339 with the program's local offset",
        "example": "2027-03-15T00:00:00+08:00"})


class PointsResponseSchema(Schema):
    user_id = fields.String(required=True)
    points_balance = fields.Integer(required=True, metadata={"description": "available points"})
    pending_points = fields.Integer(required=True, metadata={
        "description": "earned, not yet available (PROMO_POINTS_PENDING_DAYS)"})
    expiring = fields.List(fields.Nested(ExpiringPointsSchema), required=True, metadata={
        "description": "the available points by the instant they expire, soonest first; "
                       "points that never expire are not listed"})
    entries = fields.List(fields.Nested(PointsEntrySchema), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


class UserVoucherSchema(Schema):
    code = fields.String(required=True)
    amount = fields.String(required=True, metadata={"example": "10.00"})
    currency = fields.String(required=True)
    min_amount = fields.String(allow_none=True, required=True, metadata={
        "description": "the least payment amount it can be used on; null: any"})
    status = fields.String(required=True, validate=validate.OneOf(VOUCHER_STATUSES))
    campaign_id = fields.String(allow_none=True, required=True,
                                metadata={"description": "the campaign that issued it"})
    issued_at = fields.String(required=True, metadata={"format": "date-time"})
    expires_at = fields.String(required=True, metadata={
        "format": "date-time", "description": "exclusive: usable before this instant"})
    used_by_event_id = fields.String(allow_none=True, required=True, metadata={
        "description": "the payment that used it; null unless used"})


class VouchersResponseSchema(Schema):
    user_id = fields.String(required=True)
    vouchers = fields.List(fields.Nested(UserVoucherSchema), required=True,
                           metadata={"description": "newest first"})


class OfferSchema(Schema):
    campaign_id = fields.String(required=True)
    name = fields.String(required=True, metadata={"description": "for people"})
    type = fields.String(required=True, metadata={"description": "the campaign type"})
    summary = fields.String(required=True, metadata={
        "description": "the reward in one line, in the language of Accept-Language (zh or "
                       "en, default en)", "example": "15% off, at most 30.00 CNY"})
    starts_at = starts_at_field()
    ends_at = ends_at_field()
    in_window_now = fields.Boolean(required=True, metadata={
        "description": "whether now is inside its dates and hours"})
    uses_left = fields.Integer(required=True, allow_none=True, validate=validate.Range(min=1),
                               metadata={"description": "what the user's per_user and "
                                                        "per_user_daily limits leave (today, "
                                                        "in the campaign's zone), and with "
                                                        "device_id given the device's "
                                                        "per_device and per_device_daily, the "
                                                        "smallest; null: no such limit"})
    cost_points = fields.Integer(required=True, allow_none=True, validate=validate.Range(min=1),
                                 metadata={"description": "points_exchange campaigns: the "
                                                          "points a redemption spends; null "
                                                          "otherwise"})


class OffersResponseSchema(Schema):
    user_id = fields.String(required=True)
    offers = fields.List(fields.Nested(OfferSchema), required=True, metadata={
        "description": "highest priority first, then by campaign id"})


class CampaignWindowSchema(Schema):
    days = fields.List(fields.String(validate=validate.OneOf(
        ["mon", "tue", "wed", "thu", "fri", "sat", "sun"])), required=True,
        metadata={"description": "the weekdays of the window, Monday first"})
    from_ = fields.String(data_key="from", required=True, validate=validate.Regexp(
        r"^\d{2}:\d{2}(:\d{2})?$"), metadata={"description": "local time of day, inclusive",
                                               "example": "11:00"})
    to = fields.String(required=True, validate=validate.Regexp(r"^\d{2}:\d{2}(:\d{2})?$"),
                       metadata={"description": "local time of day, exclusive; \"24:00\" is "
                                                "the end of the day", "example": "14:00"})


class CampaignConditionsSchema(Schema):
    min_amount = fields.String(required=True, allow_none=True,
                               metadata={"description": "the least payment that qualifies, "
                                                        "with exactly the currency's minor "
                                                        "digits; null: any amount",
                                         "example": "50.00"})
    mcc = fields.List(fields.String(), required=True, allow_none=True,
                      metadata={"description": "merchant category codes that qualify; "
                                               "null: any"})
    channels = fields.List(fields.String(), required=True, allow_none=True,
                           metadata={"description": "payment channels that qualify; null: any"})


class CampaignViewSchema(Schema):
    id = fields.String(required=True)
    name = fields.String(required=True, metadata={"description": "for people"})
    type = fields.String(required=True, metadata={"description": "the campaign type"})
    summary = fields.String(required=True, metadata={
        "description": "the reward in one line, from the campaign type",
        "example": "15% off, at most 30.00 CNY"})
    merchants = fields.List(fields.String(), required=True, allow_none=True,
                            metadata={"description": "where it applies; null: every merchant"})
    timezone = fields.String(required=True, metadata={"description": "IANA time zone of the "
                                                                     "times below"})
    starts_at = starts_at_field()
    ends_at = ends_at_field()
    windows = fields.List(fields.Nested(CampaignWindowSchema), required=True, metadata={
        "description": "recurring local times inside starts_at..ends_at when it applies; "
                       "empty: all the time"})
    conditions = fields.Nested(CampaignConditionsSchema, required=True)


class CampaignsResponseSchema(Schema):
    campaigns = fields.List(fields.Nested(CampaignViewSchema), required=True, metadata={
        "description": "open campaigns, highest priority first, then by id"})


class ErrorDetailSchema(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)
    fields_ = fields.Dict(data_key="fields", keys=fields.String(),
                          values=fields.List(fields.String()))


class ErrorSchema(Schema):
    error = fields.Nested(ErrorDetailSchema, required=True)
