"""Events files for `campaigns simulate`: JSON Lines and CSV, read line by line, each line
judged as POST /v1/events judges a body, in occurred_at order; every refusal is
`FILE:LINE: message` with the API's words, or counted and skipped with --skip-invalid."""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from promo_engine.backtest.event_lines import LineReader
from promo_engine.backtest.events_file import EventsFile, FileProblem
from promo_engine.backtest.simulator import Simulator
from promo_engine.campaigns.files import load_paths
from promo_engine.core.registry import build_registry

REGISTRY = build_registry()
START = datetime(2026, 3, 1, tzinfo=ZoneInfo("Asia/Shanghai"))
CAMPAIGNS = """\
id: lunch
name: Lunch 10% off
type: holiday_discount
merchants: [m_1]
starts_at: 2026-03-01T00:00:00
ends_at: 2026-04-01T00:00:00
conditions: {attributes: {segment: [student]}}
limits: {per_user_daily: 1}
params: {percent: 10}
---
id: welcome
name: Welcome points
type: first_activation_bonus
starts_at: 2026-03-01T00:00:00
ends_at: 2026-04-01T00:00:00
params: {on: activation, points: 100}
"""


def simulate(tmp_path, name: str, text: str, *, skip_invalid=True, campaigns=CAMPAIGNS):
    (tmp_path / "c.yaml").write_text(campaigns)
    loaded = load_paths([tmp_path / "c.yaml"], registry=REGISTRY, currency="CNY",
                        default_timezone="Asia/Shanghai")
    assert not loaded.problems
    simulator = Simulator([c.campaign for c in loaded.campaigns], REGISTRY, currency="CNY",
                          points_per_unit=Decimal(1), point_value=Decimal("0.01"),
                          timezone="Asia/Shanghai")
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    reader = LineReader(event_types=REGISTRY.event_types, currency="CNY",
                        point_value=Decimal("0.01"))
    skipped: dict[int, str] = {}
    result = simulator.run(EventsFile(str(path), reader), skip_invalid=skip_invalid,
                           on_skip=skipped.__setitem__)
    return result, skipped, simulator


def pay(at: str, amount: str = "50.00", **extra) -> dict:
    return {"type": "payment", "user_id": "u1", "occurred_at": at, "merchant_id": "m_1",
            "amount": amount, "currency": "CNY", **extra}


def lines(*bodies) -> str:
    return "".join((b if isinstance(b, str) else json.dumps(b)) + "\n" for b in bodies)


BAD_LINES = lines(
    {"type": "activation", "user_id": "u1", "occurred_at": "2026-03-02T09:00:00+08:00"},
    '{"type":"payment","user_id":"u1","occurred_at":"2026-03-02T10:00:00+08:00"',
    pay("2026-03-02T10:00:00+08:00", "-3"),
    {"type": "payment", "user_id": "u 1", "occurred_at": "2026-03-02T10:00:00+08:00",
     "merchant_id": "m_1", "amount": "3.00", "currency": "USD", "colour": "red"},
    pay("2026-03-02T08:00:00+08:00"),
    "[1, 2]",
    '{"type": "payment", "type": "refund"}',
    pay("2026-03-02 11:00:00+08:00"),
    {"type": "refund", "user_id": "u1", "occurred_at": "2026-03-02T11:00:00+08:00",
     "merchant_id": "m_1", "amount": "3.00", "currency": "CNY", "original_event_id": "p9"},
    pay("2026-03-02T12:00:00+08:00", "12.345"),
    '{"type": "activation", "user_id": "u\\u0000", "occurred_at": "2026-03-02T12:00:00Z"}',
    "not json at all",
)


def test_each_refused_line_says_why_in_the_apis_words(tmp_path):
    result, skipped, _ = simulate(tmp_path, "events.jsonl", BAD_LINES)
    assert skipped == {
        2: "invalid JSON at column 75: Expecting ',' delimiter",
        3: "amount: must be greater than 0",
        4: "colour: Unknown field.; currency: USD is not configured; this program runs in "
           "CNY; user_id: must be 1-64 characters of A-Z a-z 0-9 _ . : -",
        5: "occurred_at 2026-03-02T08:00:00+08:00 is before line 1's "
           "(2026-03-02T09:00:00+08:00): events must be in occurred_at order",
        6: "the body must be a JSON object",
        7: 'duplicate key "type"',
        8: 'occurred_at: must separate the date and the time with "T"',
        9: "unknown_payment: no payment p9 of user u1",
        10: "amount: at most 2 decimal places for CNY",
        11: "user_id: must not contain the NUL character (U+0000)",
        12: "invalid JSON at column 1: Expecting value",
    }
    assert (result.events, result.skipped) == (1, 11)


def test_without_skip_invalid_the_first_refused_line_stops_it(tmp_path):
    with pytest.raises(FileProblem) as caught:
        simulate(tmp_path, "events.jsonl", BAD_LINES, skip_invalid=False)
    assert str(caught.value) == (f"{tmp_path / 'events.jsonl'}:2: invalid JSON at column 75: "
                                 "Expecting ',' delimiter")


def test_out_of_order_is_judged_against_the_last_line_in_order(tmp_path):
    text = lines(pay("2026-03-02T10:00:00+08:00"), pay("2026-03-02T09:59:59+08:00"),
                 pay("2026-03-02T02:00:00Z"),  # 10:00 +08:00: the same instant is in order
                 pay("2026-03-02T09:00:00+08:00"))
    result, skipped, _ = simulate(tmp_path, "events.jsonl", text)
    assert skipped == {
        2: "occurred_at 2026-03-02T09:59:59+08:00 is before line 1's "
           "(2026-03-02T10:00:00+08:00): events must be in occurred_at order",
        4: "occurred_at 2026-03-02T09:00:00+08:00 is before line 3's "
           "(2026-03-02T02:00:00Z): events must be in occurred_at order"}
    assert result.events == 2


def test_blank_lines_and_crlf_line_ends_are_read_and_line_numbers_kept(tmp_path):
    text = ("\r\n" + json.dumps(pay("2026-03-02T10:00:00+08:00")) + "\r\n\r\n   \n"
            + json.dumps(pay("2026-03-02T11:00:00+08:00", "0")) + "\r\n")
    result, skipped, _ = simulate(tmp_path, "events.jsonl", text)
    assert skipped == {5: "amount: must be greater than 0"}
    assert result.events == 1


def test_a_byte_order_mark_at_the_start_of_the_file_is_not_part_of_line_1(tmp_path):
    body = json.dumps(pay("2026-03-02T10:00:00+08:00"))
    result, skipped, _ = simulate(tmp_path, "events.jsonl", "\ufeff" + body + "\n\ufeff" + body)
    assert skipped == {2: "invalid JSON at column 1: Unexpected UTF-8 BOM (decode using "
                          "utf-8-sig)"}
    csv_text = "\ufefftype,user_id,occurred_at\nactivation,u1,2026-03-02T10:00:00Z\n"
    result, skipped, _ = simulate(tmp_path, "events.csv", csv_text)
    assert (result.events, skipped) == (1, {})


def test_lines_without_event_id_are_line_n_and_a_refund_can_name_them(tmp_path):
    text = lines(
        {"type": "activation", "user_id": "u1", "occurred_at": "2026-03-02T09:00:00+08:00"},
        pay("2026-03-02T10:00:00+08:00", "80.00", attributes={"segment": "student"}),
        {"type": "refund", "user_id": "u1", "occurred_at": "2026-03-03T10:00:00+08:00",
         "merchant_id": "m_1", "amount": "20.00", "currency": "CNY",
         "original_event_id": "line-2"},
        {"type": "refund", "user_id": "u1", "occurred_at": "2026-03-03T11:00:00+08:00",
         "merchant_id": "m_1", "amount": "60.01", "currency": "CNY",
         "original_event_id": "line-2"})
    result, skipped, simulator = simulate(tmp_path, "events.jsonl", text)
    assert skipped == {4: "refund_exceeds_payment: refunds would exceed the payment; at most "
                          "60.00 is left to refund"}
    lunch = {c.campaign_id: c for c in result.campaigns}["lunch"]
    assert (lunch.rewards, lunch.users, lunch.cost) == (1, 1, Decimal("6.00"))  # 8.00 - 2.00
    assert result.base_points == 60  # 80 - 20
    assert list(simulator.kept) == ["line-2"]  # only the payment a refund names is kept


def test_a_repeated_event_is_a_replay_and_another_body_a_conflict(tmp_path):
    first = pay("2026-03-02T10:00:00+08:00", "30.00", event_id="p1",
                attributes={"segment": "student"})
    text = lines(first, json.dumps(first, indent=None, separators=(",", ":")),
                 dict(first, amount="31.00"))
    result, skipped, _ = simulate(tmp_path, "events.jsonl", text)
    assert skipped == {3: "idempotency_conflict: event_id p1 was already used with a "
                          "different body (line 1)"}
    assert result.events == 2  # the replay is answered, and changes nothing
    assert result.base_points == 30
    assert {c.campaign_id: c.rewards for c in result.campaigns} == {"lunch": 1, "welcome": 0}


def test_an_event_id_refused_the_first_time_can_be_used_again(tmp_path):
    text = lines(pay("2026-03-02T10:00:00+08:00", "0", event_id="p1"),
                 pay("2026-03-02T10:00:00+08:00", "30.00", event_id="p1"))
    result, skipped, _ = simulate(tmp_path, "events.jsonl", text)
    assert skipped == {1: "amount: must be greater than 0"}
    assert result.base_points == 30


CSV = (
    "event_id,type,user_id,occurred_at,merchant_id,amount,currency,mcc,channel,"
    "original_event_id,attr.segment\n"
    ",activation,u1,2026-03-02T09:00:00+08:00,,,,,,,\n"
    "p1,payment,u1,2026-03-02T12:00:00+08:00,m_1,80.00,CNY,5812,qr,,student\n"
    "r1,refund,u1,2026-03-03T12:00:00+08:00,m_1,20.00,CNY,,,p1,\n"
    '"p2",payment,u1,2026-03-03T12:00:00+08:00,m_1,"12.5\n0",CNY,,,,\n'
    "p3,payment,u1,2026-03-03T12:30:00+08:00,m_1,5.00,CNY,58,,,\n"
    "p4,payment,u1,2026-03-03T13:00:00+08:00\n"
)


def test_csv_is_read_like_json_lines(tmp_path):
    result, skipped, _ = simulate(tmp_path, "events.csv", CSV)
    assert skipped == {
        5: 'amount: must be a decimal string such as "12.50"',  # a line break in it
        7: "mcc: must be 4 digits",
        8: "the row has 4 cells and the header 11"}
    as_json = lines(
        {"type": "activation", "user_id": "u1", "occurred_at": "2026-03-02T09:00:00+08:00"},
        pay("2026-03-02T12:00:00+08:00", "80.00", event_id="p1", mcc="5812", channel="qr",
            attributes={"segment": "student"}),
        {"event_id": "r1", "type": "refund", "user_id": "u1",
         "occurred_at": "2026-03-03T12:00:00+08:00", "merchant_id": "m_1", "amount": "20.00",
         "currency": "CNY", "original_event_id": "p1"})
    from_json, _, _ = simulate(tmp_path, "events.jsonl", as_json)
    assert replace(result, skipped=0) == from_json
    assert (result.events, result.skipped, result.base_points) == (3, 3, 60)


@pytest.mark.parametrize("header, message", [
    ("", "no header row: the first line names the columns (the event's fields, attr.NAME)"),
    ("type,user_id,colour", "unknown column 'colour': columns are the event's fields and "
                            "attr.NAME for attributes"),
    ("type,user_id,type", "column 'type' is given twice"),
    ("type,attr.a b", "column 'attr.a b': attribute names are 1-64 characters of "
                      "A-Z a-z 0-9 _ . : -"),
])
def test_a_bad_csv_header_is_a_problem_on_line_1_whatever_the_flags(tmp_path, header, message):
    with pytest.raises(FileProblem) as caught:
        simulate(tmp_path, "events.csv", header + "\nactivation,u1\n")
    assert str(caught.value) == f"{tmp_path / 'events.csv'}:1: {message}"


def test_csv_cells_that_are_whole_numbers_and_voucher_lists(tmp_path):
    text = ("type,user_id,occurred_at,points,campaign_id,merchant_id,amount,currency,"
            "vouchers\n"
            "activation,u1,2026-03-02T09:00:00+08:00,,,,,,\n"
            "redemption,u1,2026-03-02T10:00:00+08:00,40,,,,,\n"
            "redemption,u1,2026-03-02T10:00:00+08:00,x,,,,,\n"
            "payment,u1,2026-03-02T11:00:00+08:00,,,m_1,20.00,CNY,ABCDEFGHIJ KLMNOPQRST\n")
    result, skipped, simulator = simulate(tmp_path, "events.csv", text)
    assert skipped == {
        4: "points: must be a whole number such as 100, not a string",
        5: "voucher_unavailable: a voucher cannot be used on this payment: ABCDEFGHIJ: no "
           "such voucher for this user; KLMNOPQRST: no such voucher for this user"}
    assert simulator.users["u1"].points_balance == 60  # 100 welcome points, 40 spent


def test_a_file_not_in_utf8_is_refused_line_by_line(tmp_path):
    text = (json.dumps(pay("2026-03-02T10:00:00+08:00")).encode() + b"\n"
            + b'{"type": "payment", "user_id": "\xff"}\n')
    _, skipped, _ = simulate(tmp_path, "events.jsonl", text)
    assert skipped == {2: "the body is not valid UTF-8"}
    csv_text = b"type,user_id,occurred_at\nactivation,u\xff,2026-03-02T10:00:00Z\n"
    _, skipped, _ = simulate(tmp_path, "events.csv", csv_text)
    assert skipped == {2: "the line is not valid UTF-8"}


def test_memory_grows_with_the_users_not_the_events(tmp_path):
    """What stays in memory after 2,000 and after 8,000 events of the same 40 users, with a
    per-day limit and base points every day, and the same refunds: about the same. (A
    payment that a refund names is kept until the end: a few hundred bytes each.)"""
    import gc
    import tracemalloc

    def history(days: int) -> str:
        bodies, number = [], 0
        for day in range(days):
            for user in range(40):
                number += 1
                at = (START + timedelta(hours=7 * day, minutes=user)).isoformat()
                bodies.append(pay(at, "50.00", user_id=f"u{user}", event_id=f"p{number}",
                                  attributes={"segment": "student"}))
                if number % 50 == 0 and day < 50:  # the same refunds in both
                    bodies.append({"type": "refund", "user_id": f"u{user}",
                                   "occurred_at": at, "merchant_id": "m_1", "amount": "10.00",
                                   "currency": "CNY", "original_event_id": f"p{number}"})
        return lines(*bodies)

    simulate(tmp_path, "warm-up.jsonl", history(10))  # what any first run allocates once
    retained = []
    for days in (50, 200):  # 15 and 58 calendar days
        text = history(days)
        gc.collect()
        tracemalloc.start()
        result, skipped, simulator = simulate(tmp_path, f"events{days}.jsonl", text)
        gc.collect()
        retained.append(tracemalloc.get_traced_memory()[0])
        tracemalloc.stop()
        assert not skipped and result.events > 40 * days
        assert len(simulator.users) == 40
        assert len(simulator.kept) == 40  # only the refunded payments
        assert max(len(user.daily_uses) for user in simulator.users.values()) <= 9
    assert retained[1] < retained[0] * 1.1, retained


def test_a_users_history_is_handed_to_the_engine_as_its_user_state():
    """UserHistory has every field of UserState, so no UserState is built per event; a
    field added to UserState must be kept by the simulator too (it would then copy)."""
    from dataclasses import fields

    from promo_engine.backtest import simulator
    from promo_engine.backtest.memory_ledger import UserHistory
    from promo_engine.core.campaign_type import UserState
    assert {f.name for f in fields(UserState)} <= set(UserHistory.__slots__)
    assert simulator._AS_STATE
