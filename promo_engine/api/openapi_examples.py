"""Examples for /v1/openapi.json: a request and a response for every operation, and a body
for every error status. One user's story: an activation (a welcome voucher), a Saturday
lunch paid by QR (a discount, base and weekend points), a part refund, points spent.

tests/test_openapi_lint.py validates each against its schema (the CNY program of the
tests); generated documentation and mock servers show them.
"""
from __future__ import annotations

from promo_engine.api.errors import UNAVAILABLE_MESSAGE

PAYMENT = {"event_id": "pay-20261121-0001", "type": "payment", "user_id": "u_1001",
           "occurred_at": "2026-11-21T12:30:00+08:00", "merchant_id": "m_100",
           "amount": "128.50", "currency": "CNY", "mcc": "5812", "channel": "qr"}
EVENT_REQUESTS = {
    "payment": {"summary": "A payment (Saturday lunch, paid by QR)", "value": PAYMENT},
    "refund": {"summary": "A part refund of that payment", "value": {
        "event_id": "ref-20261122-0001", "type": "refund", "user_id": "u_1001",
        "occurred_at": "2026-11-22T09:15:00+08:00", "merchant_id": "m_100",
        "amount": "28.50", "currency": "CNY", "original_event_id": "pay-20261121-0001"}},
    "activation": {"summary": "The user activated the wallet", "value": {
        "event_id": "act-u_1001", "type": "activation", "user_id": "u_1001",
        "occurred_at": "2026-11-20T08:00:00+08:00"}},
    "redemption": {"summary": "50 points spent in the wallet's mall", "value": {
        "event_id": "red-20261123-0001", "type": "redemption", "user_id": "u_1001",
        "occurred_at": "2026-11-23T10:00:00+08:00", "points": 50,
        "reference": "mall-order-7731"}},
    "cancel": {"summary": "That redemption undone", "value": {
        "event_id": "can-20261123-0001", "type": "cancel", "user_id": "u_1001",
        "occurred_at": "2026-11-23T10:05:00+08:00", "original_event_id": "red-20261123-0001"}},
}
QUOTE_REQUESTS = {
    "payment": {"summary": "What a payment would earn now", "value": {
        key: value for key, value in PAYMENT.items() if key != "event_id"}},
    "redemption": {"summary": "Whether 50 points can be spent", "value": {
        "type": "redemption", "user_id": "u_1001",
        "occurred_at": "2026-11-23T10:00:00+08:00", "points": 50}},
}

PAYMENT_REWARDS = [
    {"reward_id": "rw_4f1c9a7e2b6d8c3a5e0f", "campaign_id": "spring-dining",
     "kind": "discount", "amount": "15.00", "currency": "CNY"},
    {"reward_id": "rw_9b2e7d4a1c6f3e8b0d5a", "campaign_id": None, "kind": "points",
     "points": 128},
    {"reward_id": "rw_2d8f5b1e9a4c7f3d6b0e", "campaign_id": "weekend-3x", "kind": "points",
     "points": 256},
]
PAYMENT_RESPONSE = {"event_id": "pay-20261121-0001", "rewards": PAYMENT_REWARDS,
                    "points_balance": 1384}
EVENT_RESPONSES = {
    "payment": {"summary": "A payment's rewards", "value": PAYMENT_RESPONSE},
    "refund": {"summary": "A part refund reverses its share of each reward", "value": {
        "event_id": "ref-20261122-0001", "points_balance": 1299, "rewards": [
            {"reward_id": "rw_6a3d0f8c2e5b9a1d4f7c", "campaign_id": "spring-dining",
             "kind": "discount", "amount": "-3.33", "currency": "CNY",
             "reverses": "rw_4f1c9a7e2b6d8c3a5e0f"},
            {"reward_id": "rw_1e7b4d9f0a3c6e2b8d5f", "campaign_id": None, "kind": "points",
             "points": -28, "reverses": "rw_9b2e7d4a1c6f3e8b0d5a"},
            {"reward_id": "rw_8c5a2f6d1b9e4a7c3f0d", "campaign_id": "weekend-3x",
             "kind": "points", "points": -57, "reverses": "rw_2d8f5b1e9a4c7f3d6b0e"}]}},
    "activation": {"summary": "A welcome voucher", "value": {
        "event_id": "act-u_1001", "points_balance": 1000, "rewards": [
            {"reward_id": "rw_3b9e6c0a4d7f1b8e5c2a", "campaign_id": "welcome",
             "kind": "voucher", "voucher": {"code": "W8K2M4Q9TX7B", "amount": "5.00",
                                            "currency": "CNY",
                                            "expires_at": "2026-11-27T00:00:00Z"}}]}},
    "redemption": {"summary": "Points spent", "value": {
        "event_id": "red-20261123-0001", "reference": "mall-order-7731",
        "points_balance": 1249, "rewards": [
            {"reward_id": "rw_5f2a8d3c9e6b0f4a1d7e", "campaign_id": None, "kind": "points",
             "points": -50}]}},
}
QUOTE_RESPONSE = {"event_id": None, "dry_run": True, "points_balance": 1384,
                  "rewards": [{k: v for k, v in reward.items() if k != "reward_id"}
                              for reward in PAYMENT_REWARDS]}
POINTS_RESPONSE = {
    "user_id": "u_1001", "points_balance": 1384, "pending_points": 0,
    "expiring": [{"points": 384, "expires_at": "2027-11-21T00:00:00+08:00"}],
    "entries": [
        {"reward_id": "rw_2d8f5b1e9a4c7f3d6b0e", "event_id": "pay-20261121-0001",
         "campaign_id": "weekend-3x", "kind": "points", "points": 256,
         "created_at": "2026-11-21T04:30:00Z"},
        {"reward_id": "rw_9b2e7d4a1c6f3e8b0d5a", "event_id": "pay-20261121-0001",
         "campaign_id": None, "kind": "points", "points": 128,
         "created_at": "2026-11-21T04:30:00Z"}],
    "next_cursor": "eyJiZWZvcmUiOiAxMjM0NX0"}
VOUCHERS_RESPONSE = {"user_id": "u_1001", "vouchers": [
    {"code": "W8K2M4Q9TX7B", "amount": "5.00", "currency": "CNY", "min_amount": None,
     "status": "active", "campaign_id": "welcome", "issued_at": "2026-11-20T00:00:00Z",
     "expires_at": "2026-11-27T00:00:00Z", "used_by_event_id": None}]}
SPRING_DINING = {"name": "Spring dining: 15% off", "type": "holiday_discount",
                 "summary": "15% off, at most 30.00 CNY",
                 "starts_at": "2026-03-01T00:00:00+08:00",
                 "ends_at": "2027-06-01T00:00:00+08:00"}
OFFERS_RESPONSE = {"user_id": "u_1001", "offers": [
    {"campaign_id": "spring-dining", **SPRING_DINING, "in_window_now": True, "uses_left": 2,
     "cost_points": None},
    {"campaign_id": "mall-coffee", "name": "A coffee voucher for 300 points",
     "type": "points_exchange", "summary": "a 10.00 CNY voucher for 300 points",
     "starts_at": "2026-01-01T00:00:00+08:00", "ends_at": "2027-01-01T00:00:00+08:00",
     "in_window_now": True, "uses_left": None, "cost_points": 300}]}
CAMPAIGNS_RESPONSE = {"campaigns": [
    {"id": "spring-dining", **SPRING_DINING, "merchants": ["m_100", "m_200"],
     "timezone": "Asia/Shanghai",
     "windows": [{"days": ["sat", "sun"], "from": "11:00", "to": "14:30"}],
     "conditions": {"min_amount": "50.00", "mcc": ["5812"], "channels": None}}]}
DOCUMENT_RESPONSE = {"openapi": "3.1.0",
                     "info": {"title": "promo-engine wallet API", "version": "0.1.0"},
                     "paths": {"/v1/events": {"post": {"operationId": "recordEvent"}}}}

# (path, method) -> request body examples, parameter examples, response examples by status
OPERATION_EXAMPLES = {
    ("/v1/events", "post"): {
        "request": EVENT_REQUESTS,
        "responses": {"201": EVENT_RESPONSES,
                      "200": {"replay": {"summary": "The same event sent again: the first "
                                                    "answer, unchanged",
                                         "value": PAYMENT_RESPONSE}}}},
    ("/v1/quote", "post"): {
        "request": QUOTE_REQUESTS, "parameters": {"explain": "false"},
        "responses": {"200": {"payment": {"summary": "What the payment would earn",
                                          "value": QUOTE_RESPONSE}}}},
    ("/v1/users/{user_id}/points", "get"): {
        "parameters": {"user_id": "u_1001", "limit": 2},
        "responses": {"200": {"points": {"summary": "A page of two entries",
                                         "value": POINTS_RESPONSE}}}},
    ("/v1/users/{user_id}/vouchers", "get"): {
        "parameters": {"user_id": "u_1001", "status": "active"},
        "responses": {"200": {"vouchers": {"summary": "An active welcome voucher",
                                           "value": VOUCHERS_RESPONSE}}}},
    ("/v1/users/{user_id}/offers", "get"): {
        "parameters": {"user_id": "u_1001", "merchant_id": "m_100", "mcc": "5812",
                       "channel": "qr", "amount": "128.50", "device_id": "dev-7f3a9c"},
        "responses": {"200": {"offers": {"summary": "A discount and a points exchange",
                                         "value": OFFERS_RESPONSE}}}},
    ("/v1/campaigns", "get"): {
        "parameters": {"merchant_id": "m_100"},
        "responses": {"200": {"campaigns": {"summary": "A weekend lunch discount",
                                            "value": CAMPAIGNS_RESPONSE}}}},
    ("/v1/openapi.json", "get"): {
        "responses": {"200": {"document": {"summary": "The start of this document",
                                           "value": DOCUMENT_RESPONSE}}}},
}


def _error(code: str, message: str, **fields) -> dict:
    error: dict = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    return {"error": error}


ERROR_EXAMPLES = {
    400: _error("malformed_json", "invalid JSON: Expecting ',' delimiter: line 1 column 42"),
    401: _error("unauthorized", "invalid key or signature"),
    404: _error("not_found", "The requested URL was not found on the server."),
    405: _error("method_not_allowed", "The method is not allowed for the requested URL."),
    409: _error("idempotency_conflict",
                "event_id pay-20261121-0001 was already used with a different body",
                event_id=["already used with a different body"]),
    413: _error("payload_too_large", "the request body is larger than 64 KiB"),
    415: _error("unsupported_media_type",
                "send the body as JSON with Content-Type: application/json"),
    422: _error("validation_error", "the event is not valid",
                amount=["is required for payment events"]),
    429: _error("rate_limited", "more than 100 requests per 1 second for this client; "
                                "retry later"),
    503: _error("unavailable", UNAVAILABLE_MESSAGE),
}


MALFORMED_BODY = _error("bad_request", "the request body is malformed (a chunk of a chunked "
                                       "body is not valid)")


def add_examples(doc: dict) -> None:
    """Put the examples into the document's operations."""
    for (path, method), examples in OPERATION_EXAMPLES.items():
        operation = doc["paths"][path][method]
        if "request" in examples:
            operation["requestBody"]["content"]["application/json"]["examples"] = \
                examples["request"]
        for parameter in operation.get("parameters", []):
            if parameter["name"] in examples.get("parameters", {}):
                parameter["example"] = examples["parameters"][parameter["name"]]
        for status, named in examples["responses"].items():
            operation["responses"][status]["content"]["application/json"]["examples"] = named
        for status, response in operation["responses"].items():
            if int(status) in ERROR_EXAMPLES:
                example = ERROR_EXAMPLES[int(status)]
                if status == "400" and "requestBody" not in operation:  # no JSON to parse
                    example = MALFORMED_BODY
                response["content"]["application/json"]["example"] = example
