"""GET /v1/openapi.json: the OpenAPI 3.1 description, generated from the API's schemas."""
from __future__ import annotations

from decimal import Decimal

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import current_app, jsonify

from promo_engine import __version__
from promo_engine.api import bp
from promo_engine.api.request_fields import (ATTRIBUTE_NAMES, CHANNEL_PATTERN,
                                             DEVICE_ID_PATTERN, ID_PATTERN, MCC_PATTERN)
from promo_engine.api.offers import OFFER_PARAMETERS
from promo_engine.api.response_schemas import (CampaignsResponseSchema, ErrorSchema,
                                               EventResponseSchema, OffersResponseSchema,
                                               PointsResponseSchema, QuoteResponseSchema,
                                               VouchersResponseSchema)
from promo_engine.api.schemas import EventRequestSchema, QuoteRequestSchema, amount_pattern
# Importing the read endpoints also registers their routes on `bp`.
from promo_engine.api.wallet_reads import (CURSOR_PATTERN, DEFAULT_PAGE, MAX_PAGE,
                                           VOUCHER_FILTERS)

SIGNED = [{"PromoKey": [], "PromoTimestamp": [], "PromoSignature": []}]
SCHEME_DESCRIPTIONS = {"PromoSignature": {"description": (
    "`v1=` followed by the lowercase hex HMAC-SHA256 of `{timestamp}.{METHOD}.{path with query "
    "string}.{raw body}`, keyed with the client's secret. Several values may be sent "
    "comma-separated, one match sufficing: at most 8 (a secret rotation needs 2 or 3); a "
    "header with more is refused with 401.")}}

ERRORS = {
    400: "malformed JSON (not UTF-8, duplicate keys, NaN, ...)",
    401: "missing or invalid signature, or a timestamp more than 300 s off",
    404: "no such resource (e.g. a user_id holding a /)",
    409: "event_id already used with a different body",
    413: "body over 64 KiB (checked before the signature)",
    415: "not Content-Type: application/json in UTF-8",
    422: "validation_error (events also: unknown_payment, refund_exceeds_payment, "
         "insufficient_points, offer_unavailable, voucher_unavailable, voucher_used, "
         "already_cancelled, unknown_redemption)",
    429: "this client sends too many requests; retry after Retry-After seconds",
    503: "database or Redis unavailable; retry after Retry-After seconds",
}
# Every signed operation: the signature check (401), which reads the body first (413), and
# what any signed request can meet (per-client rate limit, a backing service down).
SIGNED_ERRORS = (401, 413, 429, 503)
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying",
                               "required": True,
                               "schema": {"type": "integer", "minimum": 0}}}


def _errors(*statuses: int) -> dict:
    responses = {}
    for status in sorted(set(statuses)):
        response = {"description": ERRORS[status],
                    "content": {"application/json": {"schema": "Error"}}}
        if status in (429, 503):
            response["headers"] = RETRY_AFTER
        responses[str(status)] = response
    return responses


def _complete(doc: dict, currency: str, allowed_attributes=None) -> None:
    """What apispec cannot say from the fields: money in responses has exactly the
    currency's minor digits (negative in reversals); attribute names are identifiers."""
    schemas = doc["components"]["schemas"]
    schemas["Reward"]["properties"]["amount"]["pattern"] = amount_pattern(
        currency, signed=True, exact=True)
    schemas["Reward"]["properties"]["currency"]["enum"] = [currency]
    for voucher in ("Voucher", "UserVoucher"):
        properties = schemas[voucher]["properties"]
        for name in ("amount", "min_amount"):  # a pattern holds for strings, not null
            properties[name]["pattern"] = amount_pattern(currency, exact=True)
        properties["currency"]["enum"] = [currency]
    for request in ("EventRequest", "QuoteRequest"):
        names = dict(ATTRIBUTE_NAMES)
        if allowed_attributes is not None:  # PROMO_ALLOWED_ATTRIBUTES
            names["enum"] = sorted(allowed_attributes)
        schemas[request]["properties"]["attributes"]["propertyNames"] = names


def build_spec(event_types, currency: str, point_value: Decimal = Decimal("0.01"),
               allowed_attributes=None) -> dict:
    spec = APISpec(title="promo-engine wallet API", version=__version__, openapi_version="3.1.0",
                   plugins=[MarshmallowPlugin()],
                   info={"description": "Signed JSON API for the wallet backend. Every /v1/ "
                                        "request except this description carries X-Promo-Key, "
                                        "X-Promo-Timestamp and X-Promo-Signature."})
    for name, header in (("PromoKey", "X-Promo-Key"), ("PromoTimestamp", "X-Promo-Timestamp"),
                         ("PromoSignature", "X-Promo-Signature")):
        spec.components.security_scheme(name, {"type": "apiKey", "in": "header", "name": header,
                                               **SCHEME_DESCRIPTIONS.get(name, {})})
    request_schema = EventRequestSchema(event_types=event_types, currency=currency,
                                        point_value=point_value)
    quote_schema = QuoteRequestSchema(event_types=event_types, currency=currency,
                                      point_value=point_value)
    spec.components.schema("EventRequest", request_schema.json_schema_rules(),
                           schema=request_schema)
    spec.components.schema("QuoteRequest", quote_schema.json_schema_rules(),
                           schema=quote_schema)
    spec.components.schema("EventResponse", schema=EventResponseSchema)
    spec.components.schema("QuoteResponse", schema=QuoteResponseSchema)
    spec.components.schema("PointsResponse", schema=PointsResponseSchema)
    spec.components.schema("VouchersResponse", schema=VouchersResponseSchema)
    spec.components.schema("CampaignsResponse", schema=CampaignsResponseSchema)
    spec.components.schema("OffersResponse", schema=OffersResponseSchema)
    spec.components.schema("Error", schema=ErrorSchema)
    json_of = lambda ref: {"application/json": {"schema": ref}}  # noqa: E731

    spec.path(path="/v1/events", operations={"post": {
        "summary": "Record one event and apply the campaigns (idempotent per event_id)",
        "security": SIGNED,
        "requestBody": {"required": True, "content": json_of("EventRequest")},
        "responses": {
            "201": {"description": "recorded", "content": json_of("EventResponse")},
            "200": {"description": "replay of an event already recorded with the same body",
                    "headers": {"Idempotent-Replayed": {"schema": {"type": "string",
                                                                   "enum": ["true"]}}},
                    "content": json_of("EventResponse")},
            **_errors(400, 409, 415, 422, *SIGNED_ERRORS)}}})
    spec.path(path="/v1/quote", operations={"post": {
        "summary": "Evaluate a payment, redemption or activation without side effects",
        "security": SIGNED,
        "parameters": [
            {"name": "explain", "in": "query", "required": False,
             "description": "true: the answer adds `explain`, why each candidate campaign "
                            "did or did not apply; any value but true or false gets 422",
             "schema": {"type": "string", "enum": ["true", "false"], "default": "false"}}],
        "requestBody": {"required": True, "content": json_of("QuoteRequest")},
        "responses": {"200": {"description": "what would be granted now",
                              "content": json_of("QuoteResponse")},
                      **_errors(400, 415, 422, *SIGNED_ERRORS)}}})
    spec.path(path="/v1/users/{user_id}/points", operations={"get": {
        "summary": "A user's points: balance, pending, expiring, and ledger entries newest first",
        "security": SIGNED,
        "parameters": [
            {"name": "user_id", "in": "path", "required": True,
             "schema": {"type": "string", "pattern": ID_PATTERN}},
            {"name": "limit", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE,
                        "default": DEFAULT_PAGE}},
            {"name": "cursor", "in": "query", "required": False,
             "description": "next_cursor of the previous page; any other value gets 422",
             "schema": {"type": "string", "pattern": CURSOR_PATTERN}}],
        "responses": {"200": {"description": "balance and entries",
                              "content": json_of("PointsResponse")},
                      **_errors(404, 422, *SIGNED_ERRORS)}}})
    spec.path(path="/v1/users/{user_id}/vouchers", operations={"get": {
        "summary": "A user's vouchers, newest first",
        "description": "Query parameters other than status get 422.",
        "security": SIGNED,
        "parameters": [
            {"name": "user_id", "in": "path", "required": True,
             "schema": {"type": "string", "pattern": ID_PATTERN}},
            {"name": "status", "in": "query", "required": False,
             "description": "which vouchers: active (usable now), used, expired, or all "
                            "(voided ones included)",
             "schema": {"type": "string", "enum": list(VOUCHER_FILTERS),
                        "default": VOUCHER_FILTERS[0]}}],
        "responses": {"200": {"description": "the vouchers",
                              "content": json_of("VouchersResponse")},
                      **_errors(404, 422, *SIGNED_ERRORS)}}})
    spec.path(path="/v1/users/{user_id}/offers", operations={"get": {
        "summary": "What the user can still earn: open campaigns with room for them",
        "description": (
            "Open campaigns whose per-user limits, budget and max_redemptions have room, "
            "that do not hold the user out, and whose conditions the user's history and the "
            "parameters given satisfy; a condition on a value not given is not judged. Any "
            "parameter given narrows the list to what a payment with those values can earn "
            "(points exchanges and activation bonuses drop out). A user or device on the "
            "denylist gets no offers; with a risk policy in force, offers the policy would "
            "refuse now are left out. The summaries are in the "
            "language of the Accept-Language header: zh or en, default en. Query parameters "
            "other than " + ", ".join(OFFER_PARAMETERS) + " get 422."),
        "security": SIGNED,
        "parameters": [
            {"name": "user_id", "in": "path", "required": True,
             "schema": {"type": "string", "pattern": ID_PATTERN}},
            {"name": "merchant_id", "in": "query", "required": False,
             "description": "the payment's merchant: campaigns of other merchants drop out",
             "schema": {"type": "string", "pattern": ID_PATTERN}},
            {"name": "mcc", "in": "query", "required": False,
             "description": "the payment's merchant category code",
             "schema": {"type": "string", "pattern": MCC_PATTERN}},
            {"name": "channel", "in": "query", "required": False,
             "description": "the payment's channel",
             "schema": {"type": "string", "pattern": CHANNEL_PATTERN}},
            {"name": "amount", "in": "query", "required": False,
             "description": "the payment's amount, written as in an event: campaigns whose "
                            "min_amount it does not reach drop out",
             "schema": {"type": "string", "pattern": amount_pattern(currency)}},
            {"name": "device_id", "in": "query", "required": False,
             "description": "the device the user will pay with, as in an event: campaigns "
                            "whose per_device or per_device_daily limit it used up drop out "
                            "(and count in uses_left), and the denylist and the risk "
                            "policy judge it; without it, device limits are not judged",
             "schema": {"type": "string", "pattern": DEVICE_ID_PATTERN}}],
        "responses": {"200": {"description": "the offers, highest priority first",
                              "content": json_of("OffersResponse")},
                      **_errors(404, 422, *SIGNED_ERRORS)}}})
    spec.path(path="/v1/campaigns", operations={"get": {
        "summary": "The open campaigns, for the wallet to show (no budget internals)",
        "description": "Query parameters other than merchant_id get 422.",
        "security": SIGNED,
        "parameters": [
            {"name": "merchant_id", "in": "query", "required": False,
             "description": "only the campaigns that apply at this merchant (bank-wide ones "
                            "included)",
             "schema": {"type": "string", "pattern": ID_PATTERN}}],
        "responses": {"200": {"description": "open campaigns, highest priority first",
                              "content": json_of("CampaignsResponse")},
                      **_errors(422, *SIGNED_ERRORS)}}})
    spec.path(path="/v1/openapi.json", operations={"get": {
        "summary": "This description (no signature needed)",
        "responses": {"200": {"description": "OpenAPI 3.1 document",
                              "content": {"application/json": {"schema": {"type": "object"}}}}}}})
    doc = spec.to_dict()
    _complete(doc, currency, allowed_attributes)
    return doc


@bp.get("/v1/openapi.json")
def openapi_json():
    service = current_app.extensions["promo"]
    cached = current_app.extensions.get("promo_openapi")
    if cached is None:
        cached = current_app.extensions["promo_openapi"] = build_spec(
            service.registry.event_types, service.settings.currency,
            service.settings.point_value, service.settings.allowed_attributes)
    return jsonify(cached)
