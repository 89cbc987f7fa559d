"""Vouchers (contract: "Vouchers"): issued by a campaign, listed by status, used once on a
payment as a discount, refused whole when any code cannot be used, and given back by a full
refund of the payment that used them. Codes: `reward_ids.py`.

Validity is judged at the payment's `occurred_at`; the list's `status` at the service's
clock, which the listing tests fix.
"""
from __future__ import annotations

import re
from datetime import datetime

import pytest
from sqlalchemy import func, select

from promo_engine.ledger.reward_ids import (MIN_VOUCHER_CODE_LENGTH, VOUCHER_ALPHABET,
                                            VOUCHER_CODE_LENGTH, new_voucher_code)

from conftest import make_settings, reused_schema_url, running_app
from wallet import (OPEN_RANGE, activation, install_campaigns, new_wallet_client, payment,
                    refund, without_ids)

CAMPAIGNS = f"""
id: welcome
type: first_activation_bonus
{OPEN_RANGE}params: {{voucher: {{amount: "20.00", valid_days: 30, min_amount: "50.00"}}}}
---
id: mall
type: points_exchange
{OPEN_RANGE}params: {{cost_points: 100, voucher: {{amount: "15.00", valid_days: 10}}}}
---
id: holiday
type: holiday_discount
merchants: [m_900]
{OPEN_RANGE}params: {{amount_off: "40.00"}}
"""
ACTIVATED = "2026-06-15T09:00:00+08:00"  # the welcome voucher: 2026-06-15T01:00:00Z ...
WELCOME_EXPIRES = "2026-07-15T01:00:00Z"  # ... + 30 days
BEFORE_EXPIRY = "2026-07-15T08:59:59+08:00"
AT_EXPIRY = "2026-07-15T09:00:00+08:00"
PAID = "2026-06-20T12:00:00+08:00"
NOW = "2026-06-25T00:00:00+00:00"  # the service's clock unless a test sets another
LATER = "2026-07-16T00:00:00+00:00"  # for payments at the welcome voucher's expiry


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """SQLite, then PostgreSQL: an empty migrated database per test, one schema per module."""
    return reused_schema_url(request, tmp_path)


class Wallet:
    """The wallet backend's view: signed requests, and the ledger's rows to check that a
    refused event left nothing."""

    def __init__(self, app):
        self.app = app
        self.client = new_wallet_client(app)
        self.set_clock(NOW)

    def post(self, body: dict, path: str = "/v1/events"):
        return self.client.post(path, body)

    def ok(self, body: dict) -> dict:
        response = self.post(body)
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    def vouchers(self, user_id: str = "u_1", status: str | None = None):
        query = "" if status is None else f"?status={status}"
        return self.client.get(f"/v1/users/{user_id}/vouchers{query}")

    def voucher(self, code: str, user_id: str = "u_1") -> dict:
        [found] = [v for v in self.vouchers(user_id, "all").get_json()["vouchers"]
                   if v["code"] == code]
        return found

    def balance(self, user_id: str = "u_1") -> int:
        return self.client.get(f"/v1/users/{user_id}/points").get_json()["points_balance"]

    def welcome(self, user_id: str = "u_1", at: str = ACTIVATED) -> str:
        """The user's activation, and the code of the welcome voucher it gives."""
        body = self.ok(activation(f"act-{user_id}", user_id=user_id, at=at))
        return body["rewards"][0]["voucher"]["code"]

    def exchange(self, event_id: str, user_id: str = "u_1", at: str = PAID) -> dict:
        return self.ok(redemption(event_id, user_id=user_id, at=at, campaign_id="mall"))

    def mall_voucher(self, n: int, user_id: str = "u_1", at: str = PAID) -> str:
        """A 15.00 voucher of the exchange, for 100 points earned just before."""
        self.ok(payment(f"earn-{user_id}-{n}", "100.00", user_id=user_id, at=at))
        return self.exchange(f"swap-{user_id}-{n}", user_id, at)["rewards"][1]["voucher"]["code"]

    def set_clock(self, instant: str) -> None:
        from promo_engine.service import promo_service
        fixed = datetime.fromisoformat(instant)
        with self.app.app_context():
            promo_service(self.app).clock = lambda: fixed

    def ledger(self) -> tuple:
        """Everything a refused event could have written: events, rewards, vouchers, users."""
        from promo_engine.ledger.extensions import db
        from promo_engine.ledger.models import EventRecord, RewardRecord, UserRecord, Voucher
        with self.app.app_context():
            state = (
                db.session.execute(select(EventRecord.event_id)
                                   .order_by(EventRecord.id)).scalars().all(),
                db.session.execute(select(func.count()).select_from(RewardRecord)).scalar_one(),
                db.session.execute(select(Voucher.code, Voucher.used_by_event_pk, Voucher.voided_at)
                                   .order_by(Voucher.code)).all(),
                db.session.execute(select(UserRecord.user_id, UserRecord.points_balance)
                                   .order_by(UserRecord.user_id)).all())
            db.session.rollback()
        return state


def redemption(event_id: str, *, user_id: str = "u_1", at: str = PAID, **fields) -> dict:
    return {"event_id": event_id, "type": "redemption", "user_id": user_id, "occurred_at": at,
            **fields}


def cancel(event_id: str, original: str, *, user_id: str = "u_1", at: str = PAID) -> dict:
    return {"event_id": event_id, "type": "cancel", "user_id": user_id, "occurred_at": at,
            "original_event_id": original}


def unavailable(*problems: str) -> dict:
    return {"error": {"code": "voucher_unavailable",
                      "message": "a voucher cannot be used on this payment: "
                                 + "; ".join(problems),
                      "fields": {"vouchers": list(problems)}}}


@pytest.fixture
def wallet(database_url, tmp_path):
    with running_app(make_settings(database_url)) as app:
        install_campaigns(app, CAMPAIGNS, tmp_path)
        yield Wallet(app)


# -- codes --------------------------------------------------------------------------------

def test_codes_are_12_characters_of_an_alphabet_without_look_alikes():
    assert VOUCHER_ALPHABET == "ACDEFGHJKMNPQRTUVWXY34679"
    assert not set("0O1IL2Z5S8B") & set(VOUCHER_ALPHABET)
    assert (VOUCHER_CODE_LENGTH, MIN_VOUCHER_CODE_LENGTH) == (12, 10)
    codes = [new_voucher_code() for _ in range(200)]
    assert {len(code) for code in codes} == {12}
    assert set("".join(codes)) == set(VOUCHER_ALPHABET)  # every symbol is drawn
    assert all(re.fullmatch(r"[A-Z0-9]{10,32}", code) for code in codes)  # as the API takes
    assert len(new_voucher_code(10)) == 10
    with pytest.raises(ValueError, match="at least 10 characters"):
        new_voucher_code(9)


def test_ten_thousand_codes_are_distinct():
    assert len({new_voucher_code() for _ in range(10_000)}) == 10_000


def test_an_issued_voucher_has_a_code_of_its_own_from_the_alphabet(wallet):
    codes = [wallet.welcome(f"u_{n}") for n in range(3)]
    assert len(set(codes)) == 3
    assert all(len(code) == 12 and set(code) <= set(VOUCHER_ALPHABET) for code in codes)


# -- issued ---------------------------------------------------------------------------------

def test_the_first_activation_bonus_issues_a_voucher_with_its_terms(wallet):
    wallet.set_clock("2026-06-16T00:00:00+00:00")
    body = wallet.ok(activation("act-1", at=ACTIVATED))
    code = body["rewards"][0]["voucher"]["code"]

    assert body == {"event_id": "act-1", "points_balance": 0, "rewards": [
        {"reward_id": body["rewards"][0]["reward_id"], "campaign_id": "welcome",
         "kind": "voucher", "voucher": {"code": code, "amount": "20.00", "currency": "CNY",
                                        "expires_at": WELCOME_EXPIRES}}]}
    assert wallet.vouchers().get_json() == {"user_id": "u_1", "vouchers": [
        {"code": code, "amount": "20.00", "currency": "CNY", "min_amount": "50.00",
         "status": "active", "campaign_id": "welcome", "issued_at": "2026-06-15T01:00:00Z",
         "expires_at": WELCOME_EXPIRES, "used_by_event_id": None}]}


def test_a_points_exchange_issues_a_voucher_for_its_points(wallet):
    wallet.set_clock("2026-06-21T00:00:00+00:00")
    wallet.ok(payment("earn-1", "130.00", at=PAID))
    body = wallet.ok(redemption("swap-1", campaign_id="mall", reference="order-7"))
    code = body["rewards"][1]["voucher"]["code"]

    assert body == {"event_id": "swap-1", "points_balance": 30, "reference": "order-7",
                    "rewards": [
        {"reward_id": body["rewards"][0]["reward_id"], "campaign_id": "mall",
         "kind": "points", "points": -100},
        {"reward_id": body["rewards"][1]["reward_id"], "campaign_id": "mall",
         "kind": "voucher", "voucher": {"code": code, "amount": "15.00", "currency": "CNY",
                                        "expires_at": "2026-06-30T04:00:00Z"}}]}
    assert wallet.vouchers().get_json()["vouchers"] == [
        {"code": code, "amount": "15.00", "currency": "CNY", "min_amount": None,
         "status": "active", "campaign_id": "mall", "issued_at": "2026-06-20T04:00:00Z",
         "expires_at": "2026-06-30T04:00:00Z", "used_by_event_id": None}]


# -- listed -----------------------------------------------------------------------------------

def listed(code, status, *, campaign="mall", amount="15.00", min_amount=None,
           issued="2026-07-18T02:00:00Z", expires="2026-07-28T02:00:00Z", used_by=None):
    return {"code": code, "amount": amount, "currency": "CNY", "min_amount": min_amount,
            "status": status, "campaign_id": campaign, "issued_at": issued,
            "expires_at": expires, "used_by_event_id": used_by}


def test_vouchers_are_listed_by_status_newest_first(wallet):
    wallet.set_clock("2026-07-20T00:00:00+00:00")  # the welcome voucher expired on 07-15
    welcome = wallet.welcome()
    at = "2026-07-18T10:00:00+08:00"
    kept, used, voided = (wallet.mall_voucher(n, at=at) for n in range(3))
    wallet.ok(cancel("undo-2", "swap-u_1-2", at="2026-07-18T11:00:00+08:00"))
    wallet.ok(payment("pay-1", "40.00", at="2026-07-19T10:00:00+08:00", vouchers=[used]))
    wallet.welcome("u_2")  # another user's

    everything = [listed(voided, "voided"), listed(used, "used", used_by="pay-1"),
                  listed(kept, "active"),
                  listed(welcome, "expired", campaign="welcome", amount="20.00",
                         min_amount="50.00", issued="2026-06-15T01:00:00Z",
                         expires=WELCOME_EXPIRES)]
    assert wallet.vouchers(status="all").get_json() == {"user_id": "u_1",
                                                        "vouchers": everything}
    for status, expected in (("active", [everything[2]]), ("used", [everything[1]]),
                             ("expired", [everything[3]])):
        response = wallet.vouchers(status=status)
        assert response.status_code == 200
        assert response.get_json() == {"user_id": "u_1", "vouchers": expected}, status
    assert wallet.vouchers().get_json()["vouchers"] == [everything[2]]  # default: active


def test_a_voucher_is_active_until_its_expires_at_exclusive(wallet):
    code = wallet.welcome()
    wallet.set_clock("2026-07-15T00:59:59+00:00")
    assert wallet.voucher(code)["status"] == "active"
    wallet.set_clock("2026-07-15T01:00:00+00:00")
    assert wallet.voucher(code)["status"] == "expired"
    assert wallet.vouchers(status="active").get_json()["vouchers"] == []


def test_a_user_without_vouchers_has_an_empty_list(wallet):
    assert wallet.vouchers("nobody").get_json() == {"user_id": "nobody", "vouchers": []}


@pytest.mark.parametrize("status", ["bogus", "ACTIVE", ""])
def test_an_unknown_status_is_refused_naming_status(wallet, status):
    response = wallet.vouchers(status=status)
    assert response.status_code == 422
    assert response.get_json() == {"error": {
        "code": "validation_error", "message": "invalid query parameters",
        "fields": {"status": ["must be one of: active, used, expired, all"]}}}


# -- used on a payment ---------------------------------------------------------------------------

def test_a_voucher_discounts_a_payment_and_is_then_used(wallet):
    wallet.set_clock("2026-06-21T00:00:00+00:00")
    code = wallet.welcome()
    body = wallet.ok(payment("pay-1", "80.00", at=PAID, vouchers=[code]))

    assert body == {"event_id": "pay-1", "points_balance": 80, "rewards": [
        {"reward_id": body["rewards"][0]["reward_id"], "campaign_id": "welcome",
         "kind": "discount", "amount": "20.00", "currency": "CNY", "voucher_code": code},
        {"reward_id": body["rewards"][1]["reward_id"], "campaign_id": None,
         "kind": "points", "points": 80}]}
    assert wallet.voucher(code) == listed(code, "used", campaign="welcome", amount="20.00",
                                          min_amount="50.00", issued="2026-06-15T01:00:00Z",
                                          expires=WELCOME_EXPIRES, used_by="pay-1")


def test_each_discount_is_at_most_what_points_and_earlier_vouchers_left(wallet):
    welcome = wallet.welcome()
    first = wallet.mall_voucher(1)
    wallet.ok(payment("earn-more", "3000.00"))
    # 60.00: 30.00 paid with 3,000 points, 20.00 by the welcome voucher, and 10.00 left
    # for the 15.00 mall voucher.
    body = wallet.ok(payment("pay-1", "60.00", at=PAID, redeem_points=3000,
                             vouchers=[welcome, first]))

    assert without_ids(body["rewards"]) == [
        {"campaign_id": None, "kind": "points", "points": -3000},
        {"campaign_id": None, "kind": "discount", "amount": "30.00", "currency": "CNY"},
        {"campaign_id": "welcome", "kind": "discount", "amount": "20.00", "currency": "CNY",
         "voucher_code": welcome},
        {"campaign_id": "mall", "kind": "discount", "amount": "10.00", "currency": "CNY",
         "voucher_code": first},
        {"campaign_id": None, "kind": "points", "points": 30}]
    assert body["points_balance"] == 30  # 3,000 earned, 3,000 spent, 30 for the 30.00 left
    assert [wallet.voucher(c)["status"] for c in (welcome, first)] == ["used", "used"]


def test_two_vouchers_on_one_payment_in_the_order_given(wallet):
    first, second = wallet.mall_voucher(1), wallet.mall_voucher(2)
    body = wallet.ok(payment("pay-1", "25.00", at=PAID, vouchers=[second, first]))

    assert without_ids(body["rewards"]) == [
        {"campaign_id": "mall", "kind": "discount", "amount": "15.00", "currency": "CNY",
         "voucher_code": second},
        {"campaign_id": "mall", "kind": "discount", "amount": "10.00", "currency": "CNY",
         "voucher_code": first},
        {"campaign_id": None, "kind": "points", "points": 25}]
    assert wallet.voucher(first)["used_by_event_id"] == "pay-1"
    assert wallet.voucher(second)["used_by_event_id"] == "pay-1"


def test_a_voucher_nothing_is_left_for_is_refused(wallet):
    first, second = wallet.mall_voucher(1), wallet.mall_voucher(2)
    before = wallet.ledger()
    response = wallet.post(payment("pay-1", "15.00", at=PAID, vouchers=[first, second]))

    assert response.status_code == 422
    assert response.get_json() == unavailable(
        f"{second}: nothing of the payment is left for it to discount")
    assert wallet.ledger() == before


@pytest.fixture
def budgeted(counters_settings, tmp_path):
    """The campaigns with budgets: two welcome vouchers, 45.00 of holiday discounts."""
    yaml = CAMPAIGNS.replace("id: welcome\n", "id: welcome\nbudget: {amount: \"40.00\"}\n")
    yaml = yaml.replace("merchants: [m_900]\n", "merchants: [m_900]\nbudget: {amount: \"45.00\"}\n")
    with running_app(counters_settings) as app:
        install_campaigns(app, yaml, tmp_path)
        yield Wallet(app)


def test_campaign_discounts_take_only_what_the_vouchers_left(budgeted):
    wallet = budgeted
    code = wallet.welcome()
    body = wallet.ok(payment("pay-1", "50.00", at=PAID, merchant_id="m_900", vouchers=[code]))

    assert without_ids(body["rewards"]) == [
        {"campaign_id": "welcome", "kind": "discount", "amount": "20.00", "currency": "CNY",
         "voucher_code": code},
        {"campaign_id": None, "kind": "points", "points": 50},
        {"campaign_id": "holiday", "kind": "discount", "amount": "30.00", "currency": "CNY"}]
    # The budget counted 30.00, not 40.00: 15.00 more fits exactly, then nothing does.
    assert without_ids(wallet.ok(payment("pay-2", "15.00", user_id="u_2",
                                         merchant_id="m_900"))["rewards"])[1] == \
        {"campaign_id": "holiday", "kind": "discount", "amount": "15.00", "currency": "CNY"}
    assert [r["campaign_id"] for r in wallet.ok(payment("pay-3", "1.00", user_id="u_3",
                                                        merchant_id="m_900"))["rewards"]] == \
        [None]


def test_using_a_voucher_takes_nothing_from_budgets_and_a_refund_gives_nothing_back(budgeted):
    wallet = budgeted
    code = wallet.welcome()
    wallet.ok(payment("pay-1", "60.00", at=PAID, vouchers=[code]))
    # The budget counts each voucher once, when issued: room for one more.
    wallet.welcome("u_2")
    assert wallet.ok(activation("act-u_3", user_id="u_3", at=ACTIVATED))["rewards"] == []

    wallet.ok(refund("ref-1", "pay-1", "60.00"))

    # The voucher is active again, and the budget still holds it.
    assert wallet.voucher(code)["status"] == "active"
    assert wallet.ok(activation("act-u_4", user_id="u_4", at=ACTIVATED))["rewards"] == []


# -- refused whole, nothing recorded -------------------------------------------------------------

def refusal_case(wallet: Wallet, kind: str) -> tuple[dict, str]:
    """(a payment of u_1 using a code it cannot use, the reason given for that code)."""
    code = wallet.welcome()
    if kind == "unknown":
        return payment("pay-x", "60.00", at=PAID, vouchers=["ACDEFGHJKM"]), \
            "ACDEFGHJKM: no such voucher for this user"
    if kind == "another user's":
        theirs = wallet.welcome("u_2")
        return payment("pay-x", "60.00", at=PAID, vouchers=[theirs]), \
            f"{theirs}: no such voucher for this user"
    if kind == "used":
        wallet.ok(payment("pay-0", "60.00", at=PAID, vouchers=[code]))
        return payment("pay-x", "60.00", at=PAID, vouchers=[code]), f"{code}: already used"
    if kind == "voided":
        voided = wallet.mall_voucher(1)
        wallet.ok(cancel("undo-1", "swap-u_1-1"))
        return payment("pay-x", "60.00", at=PAID, vouchers=[voided]), f"{voided}: voided"
    if kind == "expired":
        wallet.set_clock(LATER)
        return payment("pay-x", "60.00", at=AT_EXPIRY, vouchers=[code]), f"{code}: expired"
    if kind == "min_amount not met":
        return payment("pay-x", "49.99", at=PAID, vouchers=[code]), \
            f"{code}: needs a payment of at least 50.00 CNY"
    if kind == "before it was issued":
        return payment("pay-x", "60.00", at="2026-06-15T08:59:59+08:00", vouchers=[code]), \
            f"{code}: not valid before it was issued"
    raise AssertionError(kind)


REFUSALS = ["unknown", "another user's", "used", "voided", "expired", "min_amount not met",
            "before it was issued"]


@pytest.mark.parametrize("kind", REFUSALS)
def test_a_voucher_that_cannot_be_used_refuses_the_payment_and_records_nothing(wallet, kind):
    body, why = refusal_case(wallet, kind)
    before = wallet.ledger()

    response = wallet.post(body)

    assert response.status_code == 422
    assert response.get_json() == unavailable(why)
    assert wallet.ledger() == before
    assert "pay-x" not in before[0]
    # The same event again is refused again, not replayed: nothing of it was stored.
    assert wallet.post(body).get_json() == unavailable(why)
    # And its event_id is free: the payment without the code is a new event.
    retry = {k: v for k, v in body.items() if k != "vouchers"}
    assert wallet.post(retry).status_code == 201


def test_every_code_that_cannot_be_used_is_named_in_the_order_given(wallet):
    code = wallet.welcome()
    good = wallet.mall_voucher(1)
    theirs = wallet.welcome("u_2")
    before = wallet.ledger()

    response = wallet.post(payment("pay-x", "49.00", at=PAID,
                                   vouchers=[theirs, good, code, "ACDEFGHJKM"]))

    assert response.get_json() == unavailable(
        f"{theirs}: no such voucher for this user",
        f"{code}: needs a payment of at least 50.00 CNY",
        "ACDEFGHJKM: no such voucher for this user")
    assert wallet.ledger() == before
    assert wallet.voucher(good)["status"] == "active"


def test_a_voucher_is_usable_up_to_a_second_before_it_expires(wallet):
    code = wallet.welcome()
    wallet.set_clock(LATER)
    body = wallet.ok(payment("pay-1", "60.00", at=BEFORE_EXPIRY, vouchers=[code]))
    assert body["rewards"][0]["amount"] == "20.00"


def test_a_payment_of_exactly_min_amount_may_use_the_voucher(wallet):
    code = wallet.welcome()
    body = wallet.ok(payment("pay-1", "50.00", at=PAID, vouchers=[code]))
    assert without_ids(body["rewards"]) == [
        {"campaign_id": "welcome", "kind": "discount", "amount": "20.00", "currency": "CNY",
         "voucher_code": code},
        {"campaign_id": None, "kind": "points", "points": 50}]


def test_a_voucher_is_used_at_most_once(wallet):
    code = wallet.welcome()
    wallet.ok(payment("pay-1", "60.00", at=PAID, vouchers=[code]))
    second = wallet.post(payment("pay-2", "60.00", at=PAID, vouchers=[code]))
    replay = wallet.post(payment("pay-1", "60.00", at=PAID, vouchers=[code]))

    assert second.get_json() == unavailable(f"{code}: already used")
    assert replay.status_code == 200  # the first payment's answer, not a second use
    assert wallet.voucher(code)["used_by_event_id"] == "pay-1"


def test_the_cancel_of_an_exchange_whose_voucher_was_used_is_refused(wallet):
    code = wallet.mall_voucher(1)
    wallet.ok(payment("pay-1", "60.00", at=PAID, vouchers=[code]))
    before = wallet.ledger()

    response = wallet.post(cancel("undo-1", "swap-u_1-1"))

    assert response.status_code == 422
    assert response.get_json() == {"error": {
        "code": "voucher_used",
        "message": f"voucher {code} of this redemption was already used",
        "fields": {"original_event_id": [f"voucher {code} of this redemption was already used"]}}}
    assert wallet.ledger() == before


def test_a_voucher_can_be_used_while_the_points_balance_is_negative(wallet):
    code = wallet.welcome()
    wallet.ok(payment("earn-1", "100.00", at=PAID))
    wallet.ok(redemption("burn-1", points=100))
    wallet.ok(refund("ref-1", "earn-1", "100.00"))
    assert wallet.balance() == -100

    body = wallet.ok(payment("pay-1", "60.00", at=PAID, vouchers=[code]))

    assert body["points_balance"] == -40


# -- refunds ------------------------------------------------------------------------------------

def test_a_full_refund_in_two_parts_frees_the_voucher_and_reverses_its_discount_in_proportion(
        wallet):
    code = wallet.welcome()
    paid = wallet.ok(payment("pay-1", "50.00", at=PAID, merchant_id="m_900", vouchers=[code]))
    discount, points, holiday = (r["reward_id"] for r in paid["rewards"])
    assert without_ids(paid["rewards"])[2]["amount"] == "30.00"

    first = wallet.ok(refund("ref-1", "pay-1", "20.00"))  # 40%
    assert first == {"event_id": "ref-1", "points_balance": 30, "rewards": [
        {"reward_id": first["rewards"][0]["reward_id"], "campaign_id": "welcome",
         "kind": "discount", "amount": "-8.00", "currency": "CNY", "voucher_code": code,
         "reverses": discount},
        {"reward_id": first["rewards"][1]["reward_id"], "campaign_id": None,
         "kind": "points", "points": -20, "reverses": points},
        {"reward_id": first["rewards"][2]["reward_id"], "campaign_id": "holiday",
         "kind": "discount", "amount": "-12.00", "currency": "CNY", "reverses": holiday}]}
    assert wallet.voucher(code)["status"] == "used"  # a partial refund keeps it used
    assert wallet.post(payment("pay-2", "60.00", at=PAID, vouchers=[code])).get_json() == \
        unavailable(f"{code}: already used")

    second = wallet.ok(refund("ref-2", "pay-1", "30.00"))  # the rest: every sum is zero
    assert [(r["amount"] if "amount" in r else r["points"], r["reverses"])
            for r in second["rewards"]] == [("-12.00", discount), (-30, points),
                                           ("-18.00", holiday)]
    assert wallet.voucher(code)["status"] == "active"
    assert wallet.voucher(code)["used_by_event_id"] is None
    again = wallet.ok(payment("pay-2", "60.00", at=PAID, vouchers=[code]))
    assert without_ids(again["rewards"])[0] == {
        "campaign_id": "welcome", "kind": "discount", "amount": "20.00", "currency": "CNY",
        "voucher_code": code}


def test_a_freed_voucher_is_usable_only_until_its_own_expiry(wallet):
    code = wallet.welcome()
    wallet.set_clock(LATER)
    wallet.ok(payment("pay-1", "60.00", at=PAID, vouchers=[code]))
    wallet.ok(refund("ref-1", "pay-1", "60.00"))

    assert wallet.post(payment("pay-2", "60.00", at=AT_EXPIRY, vouchers=[code])).get_json() \
        == unavailable(f"{code}: expired")
    assert wallet.ok(payment("pay-3", "60.00", at=BEFORE_EXPIRY,
                             vouchers=[code]))["rewards"][0]["voucher_code"] == code


def test_the_discount_of_a_voucher_is_reversed_rounded_half_up_and_exactly_in_total(wallet):
    code = wallet.welcome()
    paid = wallet.ok(payment("pay-1", "60.00", at=PAID, vouchers=[code]))
    discount = paid["rewards"][0]["reward_id"]

    third = wallet.ok(refund("ref-1", "pay-1", "20.00"))["rewards"][0]  # 20.00 / 3 = 6.666..
    rest = wallet.ok(refund("ref-2", "pay-1", "40.00"))["rewards"][0]

    assert (third["amount"], third["reverses"], third["voucher_code"]) == ("-6.67", discount, code)
    assert (rest["amount"], rest["reverses"]) == ("-13.33", discount)
    assert wallet.voucher(code)["status"] == "active"


# -- a voucher earned by a payment that is refunded ---------------------------------------

FIRST_PAYMENT_VOUCHER = f"""
id: first-pay
type: first_activation_bonus
{OPEN_RANGE}params: {{on: first_payment, voucher: {{amount: "10.00", valid_days: 30}}}}
"""


@pytest.fixture
def first_payment_wallet(database_url, tmp_path):
    with running_app(make_settings(database_url)) as app:
        install_campaigns(app, FIRST_PAYMENT_VOUCHER, tmp_path)
        yield Wallet(app)


def test_a_full_refund_voids_the_unused_voucher_its_payment_earned(first_payment_wallet):
    wallet = first_payment_wallet
    earned = wallet.ok(payment("p1", "80.00", at=PAID))
    [code] = [r["voucher"]["code"] for r in earned["rewards"] if r["kind"] == "voucher"]
    wallet.ok(refund("f1", "p1", "30.00", at=PAID))
    assert wallet.voucher(code)["status"] == "active"  # a partial refund leaves it
    wallet.ok(refund("f2", "p1", "50.00", at=PAID))
    assert wallet.voucher(code)["status"] == "voided"
    response = wallet.post(payment("p2", "80.00", at=PAID, vouchers=[code]))
    assert response.status_code == 422
    assert response.get_json()["error"]["fields"] == {"vouchers": [f"{code}: voided"]}


def test_a_voucher_already_used_stays_used_when_the_payment_that_earned_it_is_refunded(
        first_payment_wallet):
    wallet = first_payment_wallet
    earned = wallet.ok(payment("p1", "80.00", at=PAID))
    [code] = [r["voucher"]["code"] for r in earned["rewards"] if r["kind"] == "voucher"]
    wallet.ok(payment("p2", "60.00", at=PAID, vouchers=[code]))
    wallet.ok(refund("f1", "p1", "80.00", at=PAID))
    assert (wallet.voucher(code)["status"], wallet.voucher(code)["used_by_event_id"]) == \
        ("used", "p2")
