"""/v1/openapi.json says exactly what the server enforces.

For every field of every /v1 request body and every parameter the served description
lists, values just inside and just outside its rules are sent to the server; the
description (read as a client's validator reads it) and the server (422 validation_error
naming the field, or not) must give each the same verdict. The only exceptions are the
rules JSON Schema cannot state, and the description must say those in words
(openapi_verdicts.py).

In-process and on SQLite only: the rules do not depend on the database.
"""
from __future__ import annotations

import base64
import itertools
import json
from datetime import datetime, timedelta, timezone
from urllib.parse import quote, urlencode

import pytest

from conftest import make_settings, running_app
from openapi_verdicts import (UNKNOWN_PARAMETER, UNSTATABLE_RULES, Description,
                              unstatable_message, validation_errors)
from wallet import activation, new_wallet_client, payment, refund

ABSENT = "<absent>"  # a probe that leaves the field out


class Unstatable:
    """A probe the description accepts and the server refuses, by the field's rule that
    JSON Schema cannot state (UNSTATABLE_RULES)."""

    def __init__(self, value):
        self.value = value

    def __repr__(self):
        return f"Unstatable({self.value!r})"


IDS = ["e", "e" * 64, "a.b:c_D-9", "e" * 65, "", "evt 1", "evt\n", "\u00e9", 5, None]


def seconds_from_now(seconds: int) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds)).isoformat()


def _cursor_of(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


OCCURRED_AT = [
    "2026-06-15T12:00:00+08:00", "1970-01-01T00:00:00Z", "1970-01-01T00:00:00+14:00",
    "2026-06-15T12:00:00+23:59", "2026-06-15T12:00:00-23:59", "2026-06-15t12:00:00z",
    "2024-02-29T12:00:00Z", "2026-06-15T23:59:59.123456789Z", "2026-06-15T12:00:00.5-05:00",
    lambda: seconds_from_now(200),
    # just outside
    "1969-12-31T23:59:59Z", "1969-12-31T23:59:59-01:00", "0001-01-01T00:00:00+14:00",
    "2026-06-15T12:00:00+24:00", "2026-06-15T12:00:00+00:60", "2026-06-15T12:00:00-00:60",
    "2026-06-15T12:00:00+13:60", "2026-06-15T12:00:00+0800", "2026-06-15T12:00:00+08",
    "2016-12-31T23:59:60Z", "2026-06-15T12:00:60Z", "2026-06-15T12:60:00Z",
    "2026-06-15T24:00:00Z", "2026-13-01T12:00:00Z", "2026-00-10T12:00:00Z",
    "2026-02-29T12:00:00Z", "2026-04-31T12:00:00Z", "2026-06-00T12:00:00Z",
    "2026-06-15 12:00:00Z", "2026-06-15T12:00:00", "2026-06-15T12:00Z", "2026-06-15",
    "2026-06-15T12:00:00.Z", "\uff12\uff10\uff12\uff16-06-15T12:00:00Z", 1781234567, None,
    ABSENT,
    # inside the pattern, outside what the server's clock allows
    Unstatable(lambda: seconds_from_now(400)), Unstatable("9999-12-31T23:59:59-14:00"),
]

AMOUNTS = [
    "0.01", "0.1", "0.10", "0.05", "00.5", "1", "10.00", "0001.50", "0000000000001",
    "999999999.99", "1000000000", "1000000000.0", "1000000000.00", "01000000000",
    # just outside
    "0", "0.0", "0.00", "00.0", "000", "0.001", "10.005", ".5", "10.", "1000000000.01",
    "1000000001", "10000000000", "-5", "+5", "1e3", "1E3", "1_000", " 1", "1 ", "1\n",
    "\u0661\u0662", "NaN", "Infinity", "", 12.5, 12, None, ABSENT,
]

ATTRIBUTES = [
    {}, {"segment": "student"}, {f"k{i}": i for i in range(32)}, {"n" * 64: 1},
    {"s": "x" * 256}, {"s": ""}, {"s": 1.5}, {"s": -3}, {"s": True}, {"s": "\u4e2d\u6587"},
    # just outside
    {f"k{i}": i for i in range(33)}, {"n" * 65: 1}, {"bad name": 1}, {"": 1},
    {"s": "x" * 257}, {"s": "a\u0000b"}, {"s": None}, {"s": [1]}, {"s": {"a": 1}},
    [], "segment", None,
]

PAYMENT_FIELDS = {
    "event_id": IDS + [ABSENT],
    "type": ["payment", "activation", "purchase", "Payment", "", 1, None, ABSENT],
    "user_id": IDS + [ABSENT],
    "occurred_at": OCCURRED_AT,
    "merchant_id": IDS + [ABSENT],
    "amount": AMOUNTS,
    "currency": ["CNY", "USD", "cny", "CNYY", "", 1, None, ABSENT],
    "mcc": ["5812", "0000", "581", "58123", "58a2", "\u0665\u0668\u0661\u0662", "5812\n",
            5812, None],
    "channel": ["qr", "in_store", "c" * 32, "c" * 33, "", "in store", "qr\n", None],
    "attributes": ATTRIBUTES,
    "device_id": ["d", "d" * 128, "a.b:c_D-9", "d" * 129, "", "dev 1", "dev\n", "\u00e9", 5,
                  None, ABSENT],
    # the base payment is 10.00 CNY, and a point pays 0.01 of it
    "redeem_points": [1, 1000, 0, -1, 10**12 + 1, 1.5, "1", True, None, ABSENT,
                      Unstatable(1001), Unstatable(10**12), Unstatable(1.0), Unstatable(1e2)],
    "vouchers": [["ABCDEFGHIJ"], ["A" * 32], [f"CODE{n:06d}" for n in range(5)], ["0123456789"],
                 # just outside
                 [], [f"CODE{n:06d}" for n in range(6)], ["ABCDEFGHI"], ["A" * 33],
                 ["abcdefghij"], ["ABCDEFGHI-"], ["ABCDEFGHIJ\n"], ["ABCDEFGHIJ", "ABCDEFGHIJ"],
                 ["ABCDEFGHIJ", 5], "ABCDEFGHIJ", [None], None],
    "coupon": ["X", ABSENT],  # no such field
}
REFUND_FIELDS = {"original_event_id": ["seed-pay", "x" * 64] + IDS[3:] + [ABSENT]}
# Probed on a redemption: a plain burn of 1 point, or (campaign_id) an exchange
REDEMPTION_FIELDS = {
    "points": [1, 500, 10**12, 0, -1, 10**12 + 1, 1.5, "1", True, None, ABSENT,
               Unstatable(1.0), Unstatable(1e2)],
    "campaign_id": ["no-such-offer", "c" * 64, "0", "-", "c" * 65, "", "Spring", "a_b", "a b",
                    "a\n", 5, None, ABSENT],
    "reference": IDS + [ABSENT],
}

CURSORS = [
    "<issued>",  # the next_cursor of a page
    _cursor_of('{"before":1}'),  # the shortest the server reads (16 characters)
    # just outside
    "0", "A" * 15, "A" * 65, _cursor_of('{"before": 1}') + "==",
    # of the right shape, but not a cursor
    Unstatable("A" * 20),
]
PARAMETERS = {
    ("get", "/v1/users/{user_id}/points"): {
        "user_id": ["u_1", "u" * 64, "a.b:c_D-9", "u" * 65, "u x", "u\n", "\u00e9", "u%1"],
        "limit": ["1", "500", "50", "0", "501", "-1", "abc", "1.5", ""],
        "cursor": CURSORS,
    },
    ("get", "/v1/users/{user_id}/vouchers"): {
        "user_id": ["u_1", "u" * 64, "u" * 65, "u x", "u\n", "u%1"],
        "status": ["active", "used", "expired", "all", "voided", "ACTIVE", "", "active "],
    },
    ("get", "/v1/campaigns"): {
        "merchant_id": ["m_100", "m" * 64, "m" * 65, "m 100", "m\n", ""],
    },
    ("get", "/v1/users/{user_id}/offers"): {
        "user_id": ["u_1", "u" * 64, "u" * 65, "u x", "u\n", "u%1"],
        "merchant_id": ["m_100", "m" * 64, "m" * 65, "m 100", "m\n", ""],
        "mcc": ["5812", "0000", "12", "58123", "58a2", "\u0665\u0668\u0661\u0662", "5812\n", ""],
        "channel": ["qr", "c" * 32, "c" * 33, "", "in store", "qr\n"],
        "amount": ["0.01", "50", "10.00", "0001.50", "1000000000", "1000000000.00", "0", "0.00",
                   "abc", "10.005", ".5", "10.", "1000000000.01", "-5", "1e3", " 1", "NaN", ""],
        "device_id": ["d", "d" * 128, "a.b:c_D-9", "d" * 129, "", "dev 1", "dev\n", "\u00e9"],
    },
}
BODIES = {("post", "/v1/events"): {**PAYMENT_FIELDS, **REFUND_FIELDS, **REDEMPTION_FIELDS},
          ("post", "/v1/quote"): {**PAYMENT_FIELDS, **REDEMPTION_FIELDS,
                                  "type": ["refund", "cancel", *PAYMENT_FIELDS["type"]]}}


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """One app for the module, a payment to refund, and two entries to page through."""
    path = tmp_path_factory.mktemp("agrees") / "promo.db"
    with running_app(make_settings(f"sqlite:///{path}")) as app:
        wallet = new_wallet_client(app)
        assert wallet.event(**payment("seed-pay", "500.00")).status_code == 201
        assert wallet.event(**payment("seed-pay-2", "20.00")).status_code == 201
        description = Description(app.test_client().get("/v1/openapi.json").get_json())
        issued = wallet.get("/v1/users/u_1/points?limit=1").get_json()["next_cursor"]
        yield wallet, description, issued


fresh_ids = (f"probe-{n}" for n in itertools.count())
# valid requests the ledger refuses: a refund of an event that is not a payment, more
# points than the user has, an exchange campaign or voucher codes that do not exist
BUSINESS_REFUSALS = {"unknown_payment", "insufficient_points", "offer_unavailable",
                     "voucher_unavailable"}


def base_body(path: str, field: str) -> dict:
    if field == "original_event_id":
        return refund(next(fresh_ids), "seed-pay", "0.01")
    if field in REDEMPTION_FIELDS:
        body = {"event_id": next(fresh_ids), "type": "redemption", "user_id": "u_1",
                "occurred_at": "2026-06-15T12:00:00+08:00"}
        body.update({"campaign_id": "no-such-offer"} if field == "campaign_id" else
                    {"points": 1, "reference": "order-1"})
        if path == "/v1/quote":
            del body["event_id"]
        return body
    body = payment(next(fresh_ids), "10.00", mcc="5812", channel="qr",
                   attributes={"segment": "student"})
    if path == "/v1/quote":
        del body["event_id"]
    return body


def with_probe(body: dict, field: str, value) -> dict:
    body = dict(body)
    if value == ABSENT:
        body.pop(field, None)
    else:
        body[field] = value() if callable(value) else value
    return body


def request_of(method: str, path: str, field: str, value, issued: str) -> dict:
    """The request that probes `field` with `value`: a body, or a path and query."""
    if isinstance(value, Unstatable):
        value = value.value
    if field in BODY_PARAMETERS.get((method, path), {}):
        return {"body": base_body(path, "type"),
                "args": {} if value == ABSENT else {field: value}}
    if (method, path) in BODIES:
        return {"body": with_probe(base_body(path, field), field, value)}
    value = issued if value == "<issued>" else value
    if "{" + field + "}" in path:
        return {"path": path.replace("{" + field + "}", quote(value, safe="")), "args": {}}
    return {"path": path.replace("{user_id}", "u_1"), "args": {field: value}}


def disagreements(service, method: str, path: str, field: str, probes: list) -> list:
    """The probes on which the server's verdict is not the description's."""
    wallet, description, issued = service
    wrong = []
    for value in probes:
        request = request_of(method, path, field, value, issued)
        if "body" in request:
            query = "?" + urlencode(request["args"]) if request.get("args") else ""
            response = wallet.post(path + query, request["body"])
            accepted = description.accepts(method, path, args=request.get("args"),
                                           body=request["body"])
        else:
            query = "?" + urlencode(request["args"]) if request["args"] else ""
            response = wallet.get(request["path"] + query)
            accepted = description.accepts(method, request["path"], args=request["args"])
        errors = validation_errors(response.status_code, response.get_data())
        answer = (response.status_code, response.get_data(as_text=True))
        if isinstance(value, Unstatable):
            if not (accepted and errors and set(errors) == {field} and
                    all(unstatable_message(field, message) for message in errors[field])):
                wrong.append((value, "not refused by the unstatable rule alone", *answer))
        elif accepted and errors is not None:
            wrong.append((value, "described as valid, refused", *answer))
        elif accepted and response.status_code not in (200, 201) and \
                response.get_json()["error"]["code"] not in BUSINESS_REFUSALS:
            wrong.append((value, "described as valid, answered", *answer))
        elif not accepted and not (errors and any(name == field or name.startswith(field + ".")
                                                  for name in errors)):
            wrong.append((value, "described as invalid, not refused naming it", *answer))
    return wrong


# query parameters of the operations that take a body: probed with a valid body
BODY_PARAMETERS = {("post", "/v1/quote"): {
    "explain": ["true", "false", ABSENT, "yes", "True", "TRUE", "1", "0", ""]}}
PROBES = {**BODIES, **PARAMETERS}
for operation, fields in BODY_PARAMETERS.items():
    PROBES[operation] = {**PROBES[operation], **fields}
CASES = [(method, path, field) for (method, path), fields in PROBES.items()
         for field in fields]


@pytest.mark.parametrize("method, path, field", CASES,
                         ids=[f"{m} {p} {f}" for m, p, f in CASES])
def test_server_gives_the_described_verdict(service, method, path, field):
    probes = PROBES[method, path][field]
    assert disagreements(service, method, path, field, probes) == []


@pytest.mark.parametrize("method, path, field", CASES,
                         ids=[f"{m} {p} {f}" for m, p, f in CASES])
def test_probes_reach_both_sides_of_each_rule(service, method, path, field):
    """Each field's probes hold values the description accepts and values it refuses, so
    the comparison above crosses every field's boundary."""
    wallet, description, issued = service
    probes = PROBES[method, path][field]
    sides = set()
    for value in probes:
        request = request_of(method, path, field, value, issued)
        sides.add(description.accepts(method, request.get("path", path),
                                      args=request.get("args"), body=request.get("body")))
    assert sides == {True, False}


def test_every_described_field_and_parameter_is_probed(service):
    """A field or parameter added to the description gets probes here, or this fails."""
    _, description, _ = service
    described = set()
    for path, operations in description.document["paths"].items():
        for method, operation in operations.items():
            if path == "/v1/openapi.json":
                continue
            for parameter in operation.get("parameters", []):
                described.add((method, path, parameter["name"]))
            if "requestBody" in operation:
                schemas = description.document["components"]["schemas"]
                ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                # a oneOf of one schema per event type (a redemption: one per choice of
                # points or campaign_id): the fields of all of them
                names = [ref.split("/")[-1]]
                while names:
                    schema = schemas[names.pop()]
                    if "oneOf" in schema:
                        names.extend(one["$ref"].split("/")[-1] for one in schema["oneOf"])
                        continue
                    assert schema["additionalProperties"] is False
                    described.update((method, path, name) for name in schema["properties"])
    probed = {(method, path, field) for method, path, field in CASES if field != "coupon"}
    assert described == probed


def test_unstatable_rules_are_described_in_words(service):
    _, description, _ = service
    for field, rules in UNSTATABLE_RULES.items():
        for _, words in rules:
            assert words in description.field_description(field), field


def test_unknown_query_parameters_are_refused_where_the_description_says_so(service):
    wallet, description, _ = service
    paths = description.document["paths"]
    response = wallet.get("/v1/campaigns?merchant=m_100")
    assert description.accepts("get", "/v1/campaigns", args={"merchant": "m_100"})
    assert validation_errors(response.status_code, response.get_data()) == {
        "merchant": [f"{UNKNOWN_PARAMETER[0]}; known: merchant_id"]}
    assert UNKNOWN_PARAMETER[1] in paths["/v1/campaigns"]["get"]["description"]
    response = wallet.get("/v1/users/u_1/vouchers?state=used")
    assert description.accepts("get", "/v1/users/u_1/vouchers", args={"state": "used"})
    assert validation_errors(response.status_code, response.get_data()) == {
        "state": [f"{UNKNOWN_PARAMETER[0]}; known: status"]}
    assert UNKNOWN_PARAMETER[1] in paths["/v1/users/{user_id}/vouchers"]["get"]["description"]
    # the points endpoint ignores them, and says nothing of them
    response = wallet.get("/v1/users/u_1/points?merchant=m_100")
    assert response.status_code == 200
    assert UNKNOWN_PARAMETER[1] not in paths["/v1/users/{user_id}/points"]["get"]["description"]


@pytest.mark.parametrize("amount, message", [
    ("0", "must be greater than 0"), ("0.00", "must be greater than 0"),
    (".5", 'must be digits with an optional point followed by digits, e.g. "12.50"'),
    ("10.", 'must be digits with an optional point followed by digits, e.g. "12.50"'),
    ("1000000000.01", "must be at most 1000000000"),
    ("10.005", "at most 2 decimal places for CNY"),
])
def test_refused_amounts_say_why(service, amount, message):
    wallet, _, _ = service
    response = wallet.event(**payment(next(fresh_ids), amount))
    assert response.status_code == 422
    assert response.get_json()["error"]["fields"] == {"amount": [message]}


@pytest.mark.parametrize("at, message", [
    ("2026-06-15T12:00:00+00:60", "must have an offset of hours 00-23 and minutes 00-59"),
    ("2026-06-15T12:00:00+24:00", "must have an offset of hours 00-23 and minutes 00-59"),
    ("2016-12-31T23:59:60Z", "must not be a leap second (second 60)"),
    ("2026-06-15 12:00:00+08:00", 'must separate the date and the time with "T"'),
    ("1969-12-31T23:59:59Z", "must not be before the year 1970"),
    ("2026-02-29T12:00:00Z", "is not a valid date and time"),
    ("2026-06-15T12:60:00Z", "is not a valid date and time"),
    ("2026-06-15T12:00:00", "must be an RFC 3339 timestamp with offset, "
                            "e.g. 2026-11-22T10:30:00+08:00"),
    ("9999-12-31T23:59:59-14:00", "is more than 300 seconds in the future"),
])
def test_refused_timestamps_say_why(service, at, message):
    wallet, _, _ = service
    response = wallet.event(**activation(next(fresh_ids), at=at))
    assert response.status_code == 422
    assert response.get_json()["error"]["fields"] == {"occurred_at": [message]}


def test_a_timestamp_at_1970_east_of_utc_is_recorded_as_written(service):
    """The lower bound is on the date as written: 1970-01-01T00:00+14:00 is still 1969 in
    UTC, and the point of the bound (staying clear of datetime's year 1) holds."""
    wallet, _, _ = service
    response = wallet.event(**activation("early-east", at="1970-01-01T00:00:00+14:00"))
    assert response.status_code == 201, response.get_data(as_text=True)
    assert json.loads(response.get_data())["event_id"] == "early-east"
