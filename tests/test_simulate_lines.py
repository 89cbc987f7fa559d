"""The events file's fast path is the API's judgement, only faster: for every body it takes, it
makes exactly the event POST /v1/events would, and every body it is unsure of goes to the
API's own steps (which then accept it or say why not).

Bodies: everyday activations, payments and refunds, each with one field mutated in many
ways (wrong types, nulls, edge amounts and timestamps, unknown fields, ...), and random
combinations of those mutations.
"""
from __future__ import annotations

import json
import random
import re
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from marshmallow import ValidationError

from promo_engine.api.errors import ApiError
from promo_engine.api.requests import parse_json
from promo_engine.backtest.event_lines import LineInvalid, LineReader
from promo_engine.core.registry import build_registry

REGISTRY = build_registry()
NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)

BASES = [
    {"event_id": "a1", "type": "activation", "user_id": "u_1",
     "occurred_at": "2026-05-31T09:00:00+08:00"},
    {"event_id": "p1", "type": "payment", "user_id": "u_1",
     "occurred_at": "2026-05-31T12:00:00+08:00", "merchant_id": "m_100", "amount": "128.50",
     "currency": "CNY", "mcc": "5812", "channel": "qr", "device_id": "d-1",
     "attributes": {"segment": "student", "vip": True, "n": 3, "x": Decimal("2.50")}},
    {"event_id": "r1", "type": "refund", "user_id": "u_1", "occurred_at": "2026-05-31T13:00:00Z",
     "merchant_id": "m_100", "amount": "8", "currency": "CNY", "original_event_id": "p1"},
]

VALUES = {
    "event_id": ["e" * 64, "e" * 65, "", "a b", "x:y.z-_", 7, None, ["a"]],
    "type": ["payment", "refund", "activation", "redemption", "cancel", "Payment", "", 1,
             None],
    "user_id": ["u" * 64, "u" * 65, "ü", "u\n", 5, None],
    "occurred_at": ["2026-05-31T12:00:00.123456789+08:00", "2026-05-31t12:00:00z",
                    "2026-05-31T12:00:00", "2026-05-31 12:00:00Z", "2026-02-30T12:00:00Z",
                    "2026-05-31T23:59:60Z", "2026-05-31T12:00:00+24:00", "1969-12-31T23:59:59Z",
                    "2026-06-01T00:05:00Z", "2026-06-01T00:05:01Z", "9999-12-31T23:59:59-01:00",
                    "2026-5-31T12:00:00Z", 1717000000, None, ""],
    "merchant_id": ["m" * 64, "m" * 65, "", "m/1", 3, None],
    "amount": ["0.01", "0.00", "0", "00012.5", "1000000000", "1000000000.00",
               "1000000000.01", "12.345", "1e2", "-1.00", "+1.00", ".5", "5.", " 5", "5 ",
               "١٢", 12.5, 12, Decimal("12.5"), True, None, ""],
    "currency": ["CNY", "USD", "cny", "XXX", 1, None],
    "mcc": ["5812", "581", "58120", "58a2", "٥٨١٢", 5812, None],
    "channel": ["qr", "c" * 32, "c" * 33, "in store", "", None, 1],
    "device_id": ["d" * 128, "d" * 129, "", None],
    "original_event_id": ["p1", "", "p" * 65, None, 1],
    "attributes": [{}, {"a": "x" * 256}, {"a": "x" * 257}, {"a b": "x"}, {"a": None},
                   {"a": [1]}, {"a": {"b": 1}}, {"a": 1.5}, {"a": Decimal("1E+2")},
                   {str(n): n for n in range(32)}, {str(n): n for n in range(33)}, [], "s",
                   None, {"a": False}],
    "points": [10, None], "campaign_id": ["x"], "reference": ["r"], "redeem_points": [10],
    "vouchers": [["ABCDEFGHIJ"]], "colour": ["red"],
}


def reader() -> LineReader:
    return LineReader(event_types=REGISTRY.event_types, currency="CNY",
                      point_value=Decimal("0.01"), now=NOW)


def mutations():
    for base in BASES:
        yield dict(base)
        for name, values in VALUES.items():
            yield {key: value for key, value in base.items() if key != name}
            for value in values:
                yield dict(base, **{name: value})
    rng = random.Random(15)
    names = list(VALUES)
    for _ in range(3000):
        body = dict(rng.choice(BASES))
        for name in rng.sample(names, rng.randrange(1, 4)):
            if rng.random() < 0.2:
                body.pop(name, None)
            else:
                body[name] = rng.choice(VALUES[name])
        yield body


def api_outcome(lines: LineReader, body: dict):
    try:
        return lines.schema.load(dict(body))
    except ValidationError:
        return "refused"


def test_the_fast_path_makes_the_apis_event_or_hands_over():
    lines = reader()
    taken = accepted = 0
    for body in mutations():
        expected = api_outcome(lines, body)
        if expected != "refused":
            accepted += 1
        fast = lines.fast_event(dict(body))
        if fast is not None:
            taken += 1
            assert fast == expected, body
            assert type(fast.amount) is type(expected.amount)
    assert taken > 300 and accepted > taken  # most everyday bodies are fast, not all valid


def json_text(body: dict) -> bytes:
    """The body as a wallet would send it, Decimal values as JSON numbers."""
    text = json.dumps(body, default=lambda value: f"@@{value}@@")
    return re.sub(r'"@@([^@]*)@@"', r"\1", text).encode()


def test_a_json_line_is_judged_as_the_api_judges_its_body():
    lines = reader()
    for number, body in enumerate(mutations(), 1):
        raw = json_text(body)
        try:
            sent = parse_json(raw)
            if isinstance(sent, dict):
                sent.setdefault("event_id", f"line-{number}")
            expected = lines.schema.load(sent)
        except (ValidationError, ApiError):
            expected = "refused"
        try:
            event, _ = lines.json_line(raw, number)
        except LineInvalid:
            event = "refused"
        assert event == expected, raw


@pytest.mark.parametrize("raw", [
    b'{"event_id": "p1", "type": "payment", "user_id": "u_1", "type": "payment"}',
    b'{"event_id": "p1", "type" : "activation", "user_id": "u_1", "type": "activation", '
    b'"occurred_at": "2026-05-31T12:00:00Z"}',
    b'{"event_id": "a\\u0031", "type": "activation", "user_id": "u_1", '
    b'"occurred_at": "2026-05-31T12:00:00Z"}',
    b'{"event_id": "a1", "type": "activation", "user_id": "u_1", '
    b'"occurred_at": "2026-05-31T12:00:00Z", "attributes": {"n": NaN}}',
    b'{"event_id": "a1", "type": "activation", "user_id": "u_1", '
    b'"occurred_at": "2026-05-31T12:00:00Z"}  ',
    b'  {"event_id": "a1", "type": "activation", "user_id": "u_1", '
    b'"occurred_at": "2026-05-31T12:00:00Z"}',
    b'{"event_id": "a1", "type": "activation", "user_id": "u_1", '
    b'"occurred_at": "2026-05-31T12:00:00Z"} {}',
])
def test_what_plain_json_would_let_through_is_judged_by_the_api(raw):
    lines = reader()
    try:
        expected = lines.schema.load(parse_json(raw))
    except (ValidationError, ApiError) as exc:
        expected = type(exc)
    try:
        outcome, _ = lines.json_line(raw, 1)
    except LineInvalid:
        outcome = type(expected) if expected in (ValidationError, ApiError) else "x"
        assert expected in (ValidationError, ApiError)
    else:
        assert outcome == expected
