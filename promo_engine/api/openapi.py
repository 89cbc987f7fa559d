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
from promo_engine.api.openapi_docs import (ERROR_CODES, ERRORS, INFO, OPERATIONS,
                                           SCHEME_DESCRIPTIONS, SERVERS, TAGS)
from promo_engine.api.openapi_examples import add_examples
from promo_engine.api.openapi_variants import split_events, split_rewards
from promo_engine.api.response_schemas import (REWARD_SCHEMAS, CampaignsResponseSchema,
                                               ErrorSchema, EventResponseSchema,
                                               OffersResponseSchema, PointsResponseSchema,
                                               QuoteResponseSchema, VouchersResponseSchema)
from promo_engine.api.schemas import EventRequestSchema, QuoteRequestSchema, amount_pattern
# Importing the read endpoints also registers their routes on `bp`.
from promo_engine.api.wallet_reads import (CURSOR_PATTERN, DEFAULT_PAGE, MAX_PAGE,
                                           VOUCHER_FILTERS)

SIGNED = [{"PromoKey": [], "PromoTimestamp": [], "PromoSignature": []}]
# Every signed operation: the signature check (401), which reads the body first (413; 400
# for a malformed chunked body), what any signed request can meet (per-client rate limit,
# a backing service down), and a method the path does not take (405, answered once the
# signature is checked).
SIGNED_ERRORS = (400, 401, 405, 413, 429, 503)
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying",
                               "required": True,
                               "schema": {"type": "integer", "minimum": 0}}}
ALLOW = {"Allow": {"description": "the methods the path takes", "required": True,
                   "schema": {"type": "string"}}}


def _errors(*statuses: int) -> dict:
    responses = {}
    for status in sorted(set(statuses)):
        response = {"description": ERRORS[status],
                    "content": {"application/json": {"schema": "Error"}}}
        if status in (429, 503):
            response["headers"] = RETRY_AFTER
        if status == 405:
            response["headers"] = ALLOW
        responses[str(status)] = response
    return responses


def _complete(doc: dict, currency: str, allowed_attributes=None) -> None:
    """What apispec cannot say from the fields: money in responses has exactly the
    currency's minor digits (negative in reversals); attribute names are identifiers;
    error codes are an enum."""
    schemas = doc["components"]["schemas"]
    for reward in ("DiscountReward", "CashbackReward"):
        properties = schemas[reward]["properties"]
        properties["amount"]["pattern"] = amount_pattern(currency, signed=True, exact=True)
        properties["currency"]["enum"] = [currency]
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
    schemas["ErrorDetail"]["properties"]["code"].update(
        enum=sorted(ERROR_CODES), description="stable; one of:\n" + "\n".join(
            f"- `{code}`: {meaning}" for code, meaning in sorted(ERROR_CODES.items())))


def build_spec(event_types, currency: str, point_value: Decimal = Decimal("0.01"),
               allowed_attributes=None) -> dict:
    info = {key: value for key, value in INFO.items() if key != "title"}
    spec = APISpec(title=INFO["title"], version=__version__, openapi_version="3.1.0",
                   plugins=[MarshmallowPlugin()], info=info, servers=SERVERS)
    for tag in TAGS:
        spec.tag(tag)
    for name, header in (("PromoKey", "X-Promo-Key"), ("PromoTimestamp", "X-Promo-Timestamp"),
                         ("PromoSignature", "X-Promo-Signature")):
        spec.components.security_scheme(name, {"type": "apiKey", "in": "header", "name": header,
                                               "description": SCHEME_DESCRIPTIONS[name]})
    request_schema = EventRequestSchema(event_types=event_types, currency=currency,
                                        point_value=point_value)
    quote_schema = QuoteRequestSchema(event_types=event_types, currency=currency,
                                      point_value=point_value)
    spec.components.schema("EventRequest", schema=request_schema)
    spec.components.schema("QuoteRequest", schema=quote_schema)
    for name, reward_schema in REWARD_SCHEMAS.items():
        spec.components.schema(name, schema=reward_schema)
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
        "description": (
            "Records the event and applies the open campaigns in one transaction; the answer "
            "lists the rewards granted (for a refund or a cancel: the reversals, with "
            "negative values and `reverses`). The body's fields depend on `type`: one "
            "schema per event type. Idempotent per event_id: the same event_id with the "
            "same body again (whitespace and key order aside) answers 200 with exactly the "
            "first answer and `Idempotent-Replayed: true`, and changes nothing; with a "
            "different body (another occurred_at, `40.0` for `40.00`) it answers 409. "
            "Retry with the bytes of the first attempt."),
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
        "description": (
            "The evaluation POST /v1/events makes, as if the event were recorded now: it "
            "records, reserves and counts nothing, and answers `dry_run: true`. event_id "
            "is optional. Refunds and cancels change what was recorded and cannot be "
            "quoted (422). With `?explain=true` the answer also says why each candidate "
            "campaign did or did not apply."),
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
        "description": (
            "The available balance, the points still pending, the available points by the "
            "instant they expire, and the ledger entries newest first, a page at a time "
            "(`limit`, then `cursor` = the `next_cursor` of the page before; null on the "
            "last page). A user never seen has balance 0 and no entries."),
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
        "description": (
            "This OpenAPI 3.1 document, generated from the code that validates the "
            "requests, so it states what the server enforces; it shows this program's "
            "currency, event types and point value. Public: no signature needed."),
        "security": [],
        "responses": {"200": {"description": "OpenAPI 3.1 document",
                              "content": {"application/json": {"schema": {"type": "object"}}}},
                      **_errors(405)}}})
    doc = spec.to_dict()
    _complete(doc, currency, allowed_attributes)
    schemas = doc["components"]["schemas"]
    split_events(schemas, "EventRequest", request_schema)
    split_events(schemas, "QuoteRequest", quote_schema)
    split_rewards(schemas)
    add_examples(doc)
    for (path, method), (operation_id, tag) in OPERATIONS.items():
        doc["paths"][path][method].update(operationId=operation_id, tags=[tag])
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
