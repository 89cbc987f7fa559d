"""The words of /v1/openapi.json that are not read from the schemas: the document's info,
servers and tags, each operation's name, tag, summary and description, the signature
scheme, and the error codes.

operationIds and tags name the functions of every generated client: renaming one renames
a function in every client built from the document, so they do not change.
"""
from __future__ import annotations

from promo_engine.api.auth import MAX_CLOCK_SKEW_SECONDS, MAX_SIGNATURES

CLIENTS_DOC = "docs/clients.md"

INFO = {
    "title": "promo-engine wallet API",
    "description": (
        "Signed JSON API for the wallet backend: record events (payments, refunds, "
        "activations, redemptions, cancels) and get the rewards the campaigns grant, quote "
        "an event without side effects, and read a user's points, vouchers and offers.\n\n"
        "Every /v1/ request except GET /v1/openapi.json carries the headers X-Promo-Key, "
        "X-Promo-Timestamp and X-Promo-Signature (see the security schemes, and "
        f"{CLIENTS_DOC} for tested signing code for curl, Python, Node and Java). Every "
        "4xx and 5xx answer is JSON: `{\"error\": {\"code\", \"message\", \"fields\"}}`.\n\n"
        "Money is a decimal string (`\"128.50\"`), never a JSON number."),
    "license": {"name": "Apache 2.0", "identifier": "Apache-2.0"},
    "contact": {"name": "promo-engine maintainers"},
}

SERVERS = [{"url": "http://127.0.0.1:8000",
            "description": "`promo-engine serve` on this machine (its default address); "
                           "replace it with your deployment's URL"}]

TAGS = [
    {"name": "events", "description": "Record an event and get its rewards, or quote one "
                                      "without side effects"},
    {"name": "users", "description": "A user's points, vouchers and the offers they can "
                                     "still earn"},
    {"name": "campaigns", "description": "The open campaigns, for the wallet to show"},
    {"name": "meta", "description": "This description of the API (no signature needed)"},
]

# (path, method) -> operationId, tag: fixed, see the module's docstring
OPERATIONS = {
    ("/v1/events", "post"): ("recordEvent", "events"),
    ("/v1/quote", "post"): ("quoteEvent", "events"),
    ("/v1/users/{user_id}/points", "get"): ("getUserPoints", "users"),
    ("/v1/users/{user_id}/vouchers", "get"): ("listUserVouchers", "users"),
    ("/v1/users/{user_id}/offers", "get"): ("listUserOffers", "users"),
    ("/v1/campaigns", "get"): ("listCampaigns", "campaigns"),
    ("/v1/openapi.json", "get"): ("getOpenApiDocument", "meta"),
}

SIGNING_SAMPLE = """\
```python
import hashlib, hmac, json, time, requests

def signed_post(base_url, key_id, secret, path, payload):
    body = json.dumps(payload).encode()  # sign the exact bytes you send
    timestamp = str(int(time.time()))
    message = b".".join([timestamp.encode(), b"POST", path.encode(), body])
    signature = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return requests.post(base_url + path, data=body, headers={
        "Content-Type": "application/json", "X-Promo-Key": key_id,
        "X-Promo-Timestamp": timestamp, "X-Promo-Signature": "v1=" + signature})
```"""

SIGNATURE_DESCRIPTION = (
    "`v1=` followed by the lowercase hex HMAC-SHA256 of the string "
    "`{timestamp}.{METHOD}.{path}.{body}`, keyed with the client's secret (UTF-8):\n\n"
    "- `timestamp`: the X-Promo-Timestamp header as sent;\n"
    "- `METHOD`: the HTTP method in capitals (`POST`, `GET`);\n"
    "- `path`: the path with the query string exactly as sent (`/v1/users/u_1/points?"
    "limit=10`);\n"
    "- `body`: the raw body bytes exactly as sent (empty for GET).\n\n"
    "Sign the bytes you send, not an object you serialize again. Several values may be sent "
    f"comma-separated (`v1=abc..., v1=def...`) while a secret is rotated: one match "
    f"suffices; at most {MAX_SIGNATURES} (a rotation needs 2 or 3), more gets 401. A "
    "missing, unknown or wrong key or signature gets 401 `unauthorized`.\n\n"
    + SIGNING_SAMPLE + f"\n\nMore languages (curl + openssl, Node, Java, generated clients): "
    f"{CLIENTS_DOC}.")

SCHEME_DESCRIPTIONS = {
    "PromoKey": "The API client's key id, as printed by `promo-engine clients create NAME "
                "--json` (with its secret, shown once).",
    "PromoTimestamp": (f"Unix time in whole seconds when the request is signed; more than "
                       f"{MAX_CLOCK_SKEW_SECONDS} s from the server's clock in either "
                       "direction gets 401. It is part of the signed string."),
    "PromoSignature": SIGNATURE_DESCRIPTION,
}

# Every error code the API can answer with, and when. tests/test_openapi_lint.py holds
# this to the codes raised in the source: a new code fails it until it is listed here.
ERROR_CODES = {
    "bad_request": "400: the body could not be read (a malformed chunked body)",
    "malformed_json": "400: the body is not JSON (not UTF-8, duplicate keys, NaN, ...)",
    "unauthorized": "401: missing or invalid key, signature or timestamp",
    "not_found": "404: no such URL (e.g. a user_id holding a /)",
    "method_not_allowed": "405: the path does not take this method (see the Allow header)",
    "idempotency_conflict": "409: the event_id was already used with a different body",
    "payload_too_large": "413: the body is larger than 64 KiB",
    "unsupported_media_type": "415: not Content-Type application/json in UTF-8",
    "validation_error": "422: a field or parameter is invalid (see fields)",
    "unknown_payment": "422: a refund of no payment of this user",
    "refund_exceeds_payment": "422: refunds would add up to more than the payment",
    "insufficient_points": "422: not enough available points",
    "offer_unavailable": "422: the exchange campaign is not open or does not apply now",
    "voucher_unavailable": "422: a voucher code cannot be used (see fields.vouchers)",
    "voucher_used": "422: a cancel of a redemption whose voucher was used",
    "already_cancelled": "422: the redemption was cancelled already",
    "unknown_redemption": "422: a cancel of no redemption of this user",
    "rate_limited": "429: too many requests (or failed signatures); retry after "
                    "Retry-After seconds",
    "unavailable": "503: the database or Redis is unavailable; retry after Retry-After "
                   "seconds",
    "internal_error": "500: a bug (no input should cause it); please report it",
}

ERRORS = {
    400: "the body is not JSON (malformed_json) or cannot be read (bad_request)",
    401: "unauthorized: missing or invalid key or signature, or a timestamp more than "
         f"{MAX_CLOCK_SKEW_SECONDS} s off",
    404: "not_found: no such resource (e.g. a user_id holding a /)",
    405: "method_not_allowed: the path does not take this method; the Allow header lists "
         "those it takes",
    409: "idempotency_conflict: event_id already used with a different body",
    413: "payload_too_large: body over 64 KiB (checked before the signature)",
    415: "unsupported_media_type: not Content-Type application/json in UTF-8",
    422: "validation_error (events also: unknown_payment, refund_exceeds_payment, "
         "insufficient_points, offer_unavailable, voucher_unavailable, voucher_used, "
         "already_cancelled, unknown_redemption)",
    429: "rate_limited: this client sends too many requests; retry after Retry-After seconds",
    503: "unavailable: database or Redis unavailable; retry after Retry-After seconds",
}
