"""Quotes of events that spend (contract: "POST /v1/quote", "Vouchers", "Points: pending,
expiry and spending"): a payment with `vouchers` or `redeem_points`, and a redemption (a burn
or an exchange), quoted with exactly the rewards and refusals the event would get, while
nothing is used, spent, reserved or recorded.

Each quote is checked against the event itself, posted after it with the same body.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select, update

from conftest import make_settings, reused_schema_url, running_app
from wallet import (OPEN_RANGE, activation, install_campaigns, new_wallet_client, payment,
                    without_ids)

CAMPAIGNS = f"""
id: welcome
type: first_activation_bonus
{OPEN_RANGE}params: {{voucher: {{amount: "20.00", valid_days: 30, min_amount: "50.00"}}}}
---
id: mall
type: points_exchange
{OPEN_RANGE}params: {{cost_points: 100, voucher: {{amount: "15.00", valid_days: 10}}}}
---
id: last-one
type: points_exchange
{OPEN_RANGE}limits: {{max_redemptions: 1}}
params: {{cost_points: 10, cashback: "1.00"}}
---
id: holiday
type: holiday_discount
merchants: [m_900]
{OPEN_RANGE}params: {{amount_off: "40.00"}}
"""
ACTIVATED = "2026-06-15T09:00:00+08:00"
PAID = "2026-06-20T12:00:00+08:00"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """SQLite, then PostgreSQL: an empty migrated database per test, one schema per module."""
    return reused_schema_url(request, tmp_path)


class Wallet:
    def __init__(self, app):
        self.app = app
        self.client = new_wallet_client(app)

    def ok(self, body: dict) -> dict:
        response = self.client.post("/v1/events", body)
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    def quote(self, body: dict) -> dict:
        response = self.client.post("/v1/quote", body)
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    def welcome(self, user_id: str = "u_1") -> str:
        body = self.ok(activation(f"act-{user_id}", user_id=user_id, at=ACTIVATED))
        return body["rewards"][0]["voucher"]["code"]

    def balance(self, user_id: str = "u_1") -> int:
        return self.client.get(f"/v1/users/{user_id}/points").get_json()["points_balance"]

    def ledger(self) -> tuple:
        """Everything a quote must leave as it was: events, rewards, lots, vouchers, users,
        and the campaigns' counters."""
        from promo_engine.ledger.extensions import db
        from promo_engine.ledger.models import (CampaignUsage, EventRecord, PointsLot,
                                                RewardRecord, UserRecord, Voucher)
        from promo_engine.ledger.usage import current_usage
        from promo_engine.service import promo_service
        with self.app.app_context():
            session = db.session
            state = (
                session.execute(select(EventRecord.event_id)
                                .order_by(EventRecord.id)).scalars().all(),
                session.execute(select(func.count()).select_from(RewardRecord)).scalar_one(),
                session.execute(select(PointsLot.reward_pk, PointsLot.remaining, PointsLot.pending)
                                .order_by(PointsLot.reward_pk)).all(),
                session.execute(select(Voucher.code, Voucher.used_by_event_pk, Voucher.voided_at)
                                .order_by(Voucher.code)).all(),
                session.execute(select(UserRecord.user_id, UserRecord.points_balance,
                                       UserRecord.pending_points)
                                .order_by(UserRecord.user_id)).all(),
                session.execute(select(CampaignUsage.campaign_id, CampaignUsage.spent,
                                       CampaignUsage.redemptions)
                                .order_by(CampaignUsage.campaign_id)).all(),
                current_usage(session, ["mall", "last-one", "holiday", "welcome"],
                              promo_service(self.app).reservations))
            session.rollback()
        return state


def redemption(event_id: str, *, user_id: str = "u_1", at: str = PAID, **fields) -> dict:
    return {"event_id": event_id, "type": "redemption", "user_id": user_id, "occurred_at": at,
            **fields}


def same_rewards(quoted: list[dict], recorded: list[dict]) -> bool:
    """The quote's rewards are the event's, but for the ids and codes only granting makes."""
    return quoted == without_ids(recorded)


@pytest.fixture
def wallet(counters_settings, tmp_path):
    """With the campaigns' counters in the database, then in Redis."""
    with running_app(counters_settings) as app:
        install_campaigns(app, CAMPAIGNS, tmp_path)
        yield Wallet(app)


# -- what a quote shows, and that it spends nothing ---------------------------------------

def test_a_quote_with_vouchers_shows_their_discounts_and_uses_nothing(wallet):
    code = wallet.welcome()
    body = payment("pay-1", "50.00", at=PAID, merchant_id="m_900", vouchers=[code])
    before = wallet.ledger()

    quoted = wallet.quote(body)

    assert quoted == {"event_id": "pay-1", "points_balance": 50, "dry_run": True, "rewards": [
        {"campaign_id": "welcome", "kind": "discount", "amount": "20.00", "currency": "CNY",
         "voucher_code": code},
        {"campaign_id": None, "kind": "points", "points": 50},
        {"campaign_id": "holiday", "kind": "discount", "amount": "30.00", "currency": "CNY"}]}
    assert wallet.ledger() == before
    assert wallet.quote(body) == quoted  # the voucher is still there to quote
    recorded = wallet.ok(body)
    assert same_rewards(quoted["rewards"], recorded["rewards"])
    assert recorded["points_balance"] == quoted["points_balance"]


def test_a_quote_with_redeem_points_shows_the_points_and_their_discount_and_spends_nothing(
        wallet):
    wallet.ok(payment("earn-1", "3000.00"))
    body = payment("pay-1", "100.00", at=PAID, merchant_id="m_900", redeem_points=2000)
    before = wallet.ledger()

    quoted = wallet.quote(body)

    # 20.00 paid with points; base points on the 80.00 left, the holiday discount 40.00.
    assert quoted == {"event_id": "pay-1", "points_balance": 1080, "dry_run": True,
                      "rewards": [
        {"campaign_id": None, "kind": "points", "points": -2000},
        {"campaign_id": None, "kind": "discount", "amount": "20.00", "currency": "CNY"},
        {"campaign_id": None, "kind": "points", "points": 80},
        {"campaign_id": "holiday", "kind": "discount", "amount": "40.00", "currency": "CNY"}]}
    assert wallet.ledger() == before
    assert wallet.balance() == 3000
    recorded = wallet.ok(body)
    assert same_rewards(quoted["rewards"], recorded["rewards"])
    assert recorded["points_balance"] == 1080


def test_a_quote_with_points_and_vouchers_takes_them_in_the_events_order(wallet):
    code = wallet.welcome()
    wallet.ok(payment("earn-1", "3000.00"))
    body = payment("pay-1", "60.00", at=PAID, merchant_id="m_900", redeem_points=3000,
                   vouchers=[code])

    quoted = wallet.quote(body)

    assert quoted["rewards"] == [
        {"campaign_id": None, "kind": "points", "points": -3000},
        {"campaign_id": None, "kind": "discount", "amount": "30.00", "currency": "CNY"},
        {"campaign_id": "welcome", "kind": "discount", "amount": "20.00", "currency": "CNY",
         "voucher_code": code},
        {"campaign_id": None, "kind": "points", "points": 30},
        {"campaign_id": "holiday", "kind": "discount", "amount": "10.00", "currency": "CNY"}]
    assert quoted["points_balance"] == 30
    assert same_rewards(quoted["rewards"], wallet.ok(body)["rewards"])


def test_a_quote_of_a_burn_shows_the_points_it_would_spend_and_spends_none(wallet):
    wallet.ok(payment("earn-1", "300.00"))
    body = redemption("burn-1", points=120, reference="order-7")
    before = wallet.ledger()

    quoted = wallet.quote(body)

    assert quoted == {"event_id": "burn-1", "points_balance": 180, "reference": "order-7",
                      "dry_run": True,
                      "rewards": [{"campaign_id": None, "kind": "points", "points": -120}]}
    assert wallet.ledger() == before
    recorded = wallet.ok(body)
    assert same_rewards(quoted["rewards"], recorded["rewards"])
    assert (recorded["points_balance"], recorded["reference"]) == (180, "order-7")


def test_a_quote_of_an_exchange_shows_its_reward_and_takes_no_points_or_stock(wallet):
    wallet.ok(payment("earn-1", "300.00"))
    body = redemption("swap-1", campaign_id="mall")
    before = wallet.ledger()

    quoted = wallet.quote(body)

    assert quoted == {"event_id": "swap-1", "points_balance": 200, "dry_run": True, "rewards": [
        {"campaign_id": "mall", "kind": "points", "points": -100},
        {"campaign_id": "mall", "kind": "voucher",
         "voucher": {"code": None, "amount": "15.00", "currency": "CNY",
                     "expires_at": "2026-06-30T04:00:00Z"}}]}
    assert wallet.ledger() == before
    assert wallet.client.get("/v1/users/u_1/vouchers?status=all").get_json()["vouchers"] == []
    recorded = wallet.ok(body)
    assert same_rewards([quoted["rewards"][0]], recorded["rewards"][:1])
    assert without_ids(recorded["rewards"])[1] == {
        "campaign_id": "mall", "kind": "voucher",
        "voucher": {"amount": "15.00", "currency": "CNY", "expires_at": "2026-06-30T04:00:00Z"}}


def test_quotes_take_no_stock_the_last_one_is_still_there_to_exchange(wallet):
    wallet.ok(payment("earn-1", "100.00"))
    body = redemption("swap-1", campaign_id="last-one")
    quotes = [wallet.quote(body) for _ in range(3)]

    assert quotes[0]["rewards"] == [
        {"campaign_id": "last-one", "kind": "points", "points": -10},
        {"campaign_id": "last-one", "kind": "cashback", "amount": "1.00", "currency": "CNY"}]
    assert quotes[1:] == quotes[:2]
    assert same_rewards(quotes[0]["rewards"], wallet.ok(body)["rewards"])


# -- a quote refuses as the event would --------------------------------------------------

def insufficient(field: str, needed: int, available: int) -> tuple:
    message = f"{needed} points are needed and {available} are available"
    return "insufficient_points", message, {field: [message]}


def refused_voucher(*problems: str) -> tuple:
    return ("voucher_unavailable",
            "a voucher cannot be used on this payment: " + "; ".join(problems),
            {"vouchers": list(problems)})


def offer_unavailable(message: str) -> tuple:
    return "offer_unavailable", message, {"campaign_id": [message]}


def refusal(wallet: Wallet, kind: str) -> tuple[dict, tuple]:
    """(a body of u_1 the ledger refuses, the refusal: code, message, fields)."""
    wallet.ok(payment("earn-1", "150.00"))  # 150 points
    if kind == "burn over the balance":
        return redemption("x-1", points=151), insufficient("points", 151, 150)
    if kind == "exchange over the balance":
        wallet.ok(redemption("burn-1", points=51))
        return redemption("x-1", campaign_id="mall"), insufficient("campaign_id", 100, 99)
    if kind == "redeem_points over the balance":
        return payment("x-1", "10.00", redeem_points=200), \
            insufficient("redeem_points", 200, 150)
    if kind == "voucher used":
        code = wallet.welcome()
        wallet.ok(payment("pay-0", "60.00", at=PAID, vouchers=[code]))
        return payment("x-1", "60.00", at=PAID, vouchers=[code]), \
            refused_voucher(f"{code}: already used")
    if kind == "voucher min_amount":
        code = wallet.welcome()
        return payment("x-1", "49.99", at=PAID, vouchers=[code, "ACDEFGHJKM"]), \
            refused_voucher(f"{code}: needs a payment of at least 50.00 CNY",
                            "ACDEFGHJKM: no such voucher for this user")
    if kind == "not an exchange":
        return redemption("x-1", campaign_id="holiday"), \
            offer_unavailable("campaign holiday is not a points exchange")
    if kind == "no such campaign":
        return redemption("x-1", campaign_id="nowhere"), \
            offer_unavailable("campaign nowhere is not open")
    if kind == "out of stock":
        wallet.ok(redemption("swap-0", campaign_id="last-one"))
        return redemption("x-1", campaign_id="last-one"), \
            offer_unavailable("campaign last-one is out of stock (1 given)")
    raise AssertionError(kind)


REFUSALS = ["burn over the balance", "exchange over the balance",
            "redeem_points over the balance", "voucher used", "voucher min_amount",
            "not an exchange", "no such campaign", "out of stock"]


def ledger_quote(app, body: dict) -> dict:
    """The ledger's quote of `body` (what POST /v1/quote answers), its refusal raised."""
    from promo_engine.api.recording import validated_event
    from promo_engine.service import promo_service
    with app.test_request_context():
        service = promo_service(app)
        return service.ledger.quote(validated_event(service, body, quote=True),
                                    service.engine())


@pytest.mark.parametrize("kind", REFUSALS)
def test_the_ledger_refuses_a_quote_as_it_refuses_the_event(wallet, kind):
    from promo_engine.ledger.outcomes import LedgerError
    body, (code, message, fields) = refusal(wallet, kind)
    before = wallet.ledger()

    with pytest.raises(LedgerError) as refused:
        ledger_quote(wallet.app, body)
    event = wallet.client.post("/v1/events", body)

    assert (refused.value.code, refused.value.message, refused.value.fields) == \
        (code, message, fields)
    assert event.status_code == 422
    assert event.get_json() == {"error": {"code": code, "message": message, "fields": fields}}
    assert wallet.ledger() == before


@pytest.mark.parametrize("kind", ["burn over the balance", "voucher used", "out of stock"])
def test_a_quote_refuses_with_the_events_422(wallet, kind):
    body, (code, message, fields) = refusal(wallet, kind)
    before = wallet.ledger()

    quoted = wallet.client.post("/v1/quote", body)
    event = wallet.client.post("/v1/events", body)

    assert event.status_code == 422
    assert (quoted.status_code, quoted.get_json()) == (422, event.get_json())
    assert wallet.ledger() == before


# -- the points an event would find: pending lots come due, expired ones gone -------------

def rfc3339(instant: datetime) -> str:
    return instant.astimezone(timezone(timedelta(hours=8))).isoformat(timespec="seconds")


@pytest.fixture
def lots_app(database_url, tmp_path, request):
    """An app with the lot policy the test gives (`lot_policy`)."""
    with running_app(make_settings(database_url, **request.param)) as app:
        install_campaigns(app, CAMPAIGNS, tmp_path)
        yield Wallet(app)


def lot_policy(**settings):
    """The settings of the test's `lots_app`."""
    return pytest.mark.parametrize("lots_app", [settings], indirect=True,
                                   ids=[",".join(f"{k}={v}" for k, v in settings.items())])


@lot_policy(points_expire_months=1)
def test_points_past_their_expiry_are_not_quoted_even_before_the_sweep(lots_app):
    from promo_engine.ledger.outcomes import LedgerError
    wallet = lots_app
    recent = rfc3339(datetime.now(timezone.utc) - timedelta(hours=1))
    wallet.ok(payment("old-1", "100.00", at="2026-06-15T12:00:00+08:00"))  # expired 07-15
    wallet.ok(payment("new-1", "30.00", at=recent))
    assert wallet.balance() == 130  # not swept yet

    with pytest.raises(LedgerError) as refused:
        ledger_quote(wallet.app, redemption("burn-1", points=31, at=recent))
    assert (refused.value.code, refused.value.message) == \
        ("insufficient_points", "31 points are needed and 30 are available")
    assert wallet.client.post("/v1/events", redemption("burn-1", points=31, at=recent)
                              ).get_json()["error"]["message"] == refused.value.message

    quoted = wallet.quote(redemption("burn-2", points=30, at=recent))
    assert quoted["points_balance"] == 0
    assert wallet.ok(redemption("burn-2", points=30, at=recent))["points_balance"] == 0


@lot_policy(points_pending_days=7)
def test_pending_points_that_came_due_are_quoted_as_available(lots_app):
    from promo_engine.ledger.extensions import db
    from promo_engine.ledger.models import PointsLot
    from promo_engine.ledger.outcomes import LedgerError
    wallet = lots_app
    now = datetime.now(timezone.utc)
    wallet.ok(payment("pay-1", "100.00", at=rfc3339(now - timedelta(days=1))))
    burn = redemption("burn-1", points=60, at=rfc3339(now))
    with pytest.raises(LedgerError) as refused:
        ledger_quote(wallet.app, burn)  # pending for six more days
    assert refused.value.message == "60 points are needed and 0 are available"

    with wallet.app.app_context():  # six days later: due, not yet matured by anyone
        db.session.execute(update(PointsLot).values(available_at=now - timedelta(seconds=1)))
        db.session.commit()
    quoted = wallet.quote(burn)

    assert (quoted["rewards"], quoted["points_balance"]) == \
        ([{"campaign_id": None, "kind": "points", "points": -60}], 40)
    assert wallet.ok(burn)["points_balance"] == 40


@lot_policy(points_pending_days=7)
def test_the_ledger_quotes_a_payments_own_points_as_pending(lots_app):
    """A payment's points are pending for 7 days: the balance after it does not have them."""
    from promo_engine.api.recording import validated_event
    from promo_engine.ledger.quotes import quote_event
    from promo_engine.service import promo_service
    wallet = lots_app
    body = payment("pay-1", "100.00", at=rfc3339(datetime.now(timezone.utc)))
    with wallet.app.test_request_context():
        service = promo_service(wallet.app)
        quoted = quote_event(validated_event(service, body, quote=True), service.engine(), 2,
                             None, policy=service.ledger.policy)
    assert (quoted["rewards"], quoted["points_balance"]) == \
        ([{"campaign_id": None, "kind": "points", "points": 100}], 0)
    assert wallet.ok(body)["points_balance"] == 0


@lot_policy(points_pending_days=7)
def test_a_quote_does_not_count_a_payments_pending_points_as_available(lots_app):
    body = payment("pay-1", "100.00", at=rfc3339(datetime.now(timezone.utc)))
    assert lots_app.quote(body)["points_balance"] == lots_app.ok(body)["points_balance"] == 0
