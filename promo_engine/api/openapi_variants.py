"""The bodies of /v1/openapi.json that take one shape per kind: event requests (a oneOf
keyed on `type`) and rewards (a oneOf keyed on `kind`), each with a discriminator, so a
typed client has a type per event (a payment without `amount` does not compile) and per
reward.
"""
from __future__ import annotations

import re

from promo_engine.api.response_schemas import REWARD_KINDS

REF = "#/components/schemas/"
# The variants' names: PaymentEvent, PaymentQuote, ...
SUFFIXES = {"EventRequest": "Event", "QuoteRequest": "Quote"}
TYPE_DESCRIPTIONS = {
    "activation": "a user activated the wallet (or a card in it)",
    "payment": "a payment at a merchant",
    "refund": "a refund of a payment, in whole or in part",
    "redemption": "points spent: a plain burn (points) or an exchange (campaign_id)",
    "cancel": "a redemption undone whole",
}
# A redemption is a burn (points) or an exchange (campaign_id): RedemptionBurnEvent, ...
CHOICE_NAMES = {"points": "Burn", "campaign_id": "Exchange"}
CHOICE_DESCRIPTIONS = {
    "points": "a redemption that burns points (e.g. for the wallet's own mall)",
    "campaign_id": "a redemption that exchanges points for a points_exchange campaign's "
                   "reward",
}


def variant_name(kind: str, suffix: str) -> str:
    """A schema name for an event type: "payment" -> PaymentEvent; a plugin's type
    "gift_card.load" -> GiftCardLoadEvent."""
    return "".join(part[:1].upper() + part[1:]
                   for part in re.split(r"[^A-Za-z0-9]+", kind) if part) + suffix


def split_events(schemas: dict, name: str, request_schema) -> None:
    """Replace the schema `name` (all fields of every event type, as apispec wrote them)
    with a oneOf of one schema per event type, discriminated by `type`. A type that takes
    exactly one of some fields (a redemption: points or campaign_id) is itself a oneOf of
    one schema per choice."""
    whole = schemas[name]
    mapping = {}
    for kind in request_schema.described_types():
        shape = dict(request_schema.shape_of(kind))
        choices = shape.pop("choices", [])
        properties = {field: dict(whole["properties"][field]) for field in shape.pop("properties")}
        properties["type"] = {"type": "string", "enum": [kind],
                              "description": TYPE_DESCRIPTIONS.get(kind, "an event type a "
                                                                         "plugin registered")}
        variant = {"type": "object", "description": TYPE_DESCRIPTIONS.get(kind, kind),
                   "properties": properties, "required": shape.pop("required"),
                   "additionalProperties": False, **shape}
        variant_ref = variant_name(kind, SUFFIXES[name])
        if choices:
            schemas[variant_ref] = {"description": variant["description"], "oneOf": []}
            for choice in choices:
                one = {**variant, "description": CHOICE_DESCRIPTIONS.get(choice, choice),
                       "properties": {field: value for field, value in properties.items()
                                      if field == choice or field not in choices},
                       "required": [*variant["required"], choice]}
                one_ref = variant_name(kind, CHOICE_NAMES.get(choice, choice) + SUFFIXES[name])
                schemas[one_ref] = one
                schemas[variant_ref]["oneOf"].append({"$ref": REF + one_ref})
        else:
            schemas[variant_ref] = variant
        mapping[kind] = REF + variant_ref
    schemas[name] = {
        "description": "An event: one schema per event type, chosen by `type`.",
        "oneOf": [{"$ref": ref} for ref in mapping.values()],
        "discriminator": {"propertyName": "type", "mapping": mapping},
    }


def split_rewards(schemas: dict) -> None:
    """`Reward` as a oneOf of PointsReward, DiscountReward, CashbackReward and
    VoucherReward (apispec wrote each from response_schemas.py), discriminated by
    `kind`."""
    mapping = {kind: REF + variant for kind, variant in REWARD_KINDS.items()}
    schemas["Reward"] = {
        "description": "One reward of an event, a reversal of one (`reverses`), or points "
                       "spent; its fields depend on `kind`.",
        "oneOf": [{"$ref": ref} for ref in mapping.values()],
        "discriminator": {"propertyName": "kind", "mapping": mapping},
    }
