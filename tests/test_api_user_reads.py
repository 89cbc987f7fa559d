"""GET /v1/users/{user_id}/points and GET /v1/users/{user_id}/vouchers, as the contract says
("Points: pending, expiry and spending", "Vouchers").

The ledger rows are written here directly through the models, so each test states exactly
what the ledger holds and what the wallet must be shown of it; the ledger's own tests show
that recording events writes such rows.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from conftest import make_settings, running_app
from wallet import new_wallet_client

UTC = timezone.utc
NOW = datetime(2027, 6, 15, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai, the program's zone
CREATED = datetime(2027, 6, 1, 2, 0, tzinfo=UTC)
# Local midnights in Shanghai (+08:00), as lots expire
JUNE_1_PAST = datetime(2027, 5, 31, 16, 0, tzinfo=UTC)
MARCH_15 = datetime(2028, 3, 14, 16, 0, tzinfo=UTC)
APRIL_1 = datetime(2028, 3, 31, 16, 0, tzinfo=UTC)
MAY_1 = datetime(2028, 4, 30, 16, 0, tzinfo=UTC)


def wallet_at_now(app):
    """A signed client of `app`, whose clock reads NOW."""
    from promo_engine.service import promo_service
    promo_service(app).clock = lambda: NOW
    return new_wallet_client(app)


@pytest.fixture
def wallet(app):
    return wallet_at_now(app)


class Ledger:
    """Writes ledger rows as the ledger would leave them; returns their primary keys."""

    def __init__(self, app):
        self.app = app
        self.rewards = 0

    def _add(self, row) -> int | None:
        """Commits the row; its `id`, when it has one."""
        from promo_engine.ledger.extensions import db
        with self.app.app_context():
            db.session.add(row)
            db.session.commit()
            return getattr(row, "id", None)

    def user(self, user_id: str, *, balance: int, pending: int) -> None:
        from promo_engine.ledger.models import UserRecord
        self._add(UserRecord(user_id=user_id, points_balance=balance, pending_points=pending))

    def event(self, event_id: str, kind: str, *, user_id: str = "u_1") -> int:
        from promo_engine.ledger.models import EventRecord
        return self._add(EventRecord(client_id="pk_test", event_id=event_id, type=kind,
                                     user_id=user_id, occurred_at=CREATED,
                                     request_hash="0" * 64, response="{}"))

    def reward(self, event_pk: int | None, *, kind: str = "points", points: int | None = None,
               campaign_id: str | None = None, reason: str | None = None,
               amount_minor: int | None = None, user_id: str = "u_1",
               voucher_code: str | None = None, reverses_id: int | None = None) -> int:
        from promo_engine.ledger.models import RewardRecord
        self.rewards += 1
        return self._add(RewardRecord(
            reward_id=f"rw_{self.rewards:03d}", event_pk=event_pk, user_id=user_id,
            campaign_id=campaign_id, kind=kind, points=points, amount_minor=amount_minor,
            currency=None if amount_minor is None else "CNY", voucher_code=voucher_code,
            reverses_id=reverses_id, reason=reason,
            created_at=CREATED + timedelta(minutes=self.rewards)))

    def lot(self, reward_pk: int, points: int, *, remaining: int | None = None,
            pending: bool = False, expires_at: datetime | None = None,
            user_id: str = "u_1") -> None:
        from promo_engine.ledger.models import PointsLot
        self._add(PointsLot(reward_pk=reward_pk, user_id=user_id, points=points,
                            remaining=points if remaining is None else remaining,
                            debt_paid=0, available_at=CREATED, pending=pending,
                            expires_at=expires_at))

    def voucher(self, code: str, event_pk: int, *, amount_minor: int = 1000,
                min_amount_minor: int | None = None, campaign_id: str | None = "welcome",
                expires_at: datetime = NOW + timedelta(days=30),
                used_by_event_pk: int | None = None, voided_at: datetime | None = None,
                user_id: str = "u_1") -> None:
        from promo_engine.ledger.models import Voucher
        reward_pk = self.reward(event_pk, kind="voucher", campaign_id=campaign_id,
                                amount_minor=amount_minor, user_id=user_id, voucher_code=code)
        self._add(Voucher(code=code, reward_pk=reward_pk, user_id=user_id,
                          campaign_id=campaign_id, amount_minor=amount_minor, currency="CNY",
                          min_amount_minor=min_amount_minor,
                          issued_at=CREATED + timedelta(minutes=self.rewards),
                          expires_at=expires_at, used_by_event_pk=used_by_event_pk,
                          voided_at=voided_at))


@pytest.fixture
def ledger(app):
    return Ledger(app)


def described(app):
    return OpenAPI.from_dict(app.test_client().get("/v1/openapi.json").get_json())


def conforms(app, response) -> None:
    """The response is what /v1/openapi.json describes for its request."""
    sent = response.request
    request = MockRequest("http://127.0.0.1:8000", "get", sent.path, args=dict(sent.args),
                          headers=dict(sent.headers))
    openapi = described(app)
    openapi.validate_request(request)
    openapi.validate_response(request, MockResponse(response.get_data(), response.status_code,
                                                    headers=dict(response.headers),
                                                    content_type=response.mimetype))


# --- points ------------------------------------------------------------------------------

@pytest.fixture
def points_history(ledger):
    """u_1 earned 150 on a payment (100 base, 50 campaign), spent 30 and had them returned
    by a cancel, lost a lot of 20 to expiry, and has more lots: pending, never expiring,
    expiring later; u_2 has a lot too."""
    paid = ledger.event("pay_1", "payment")
    base = ledger.reward(paid, points=100)
    bonus = ledger.reward(paid, points=50, campaign_id="double")
    ledger.reward(paid, kind="discount", amount_minor=500, campaign_id="dining")  # no points
    redeemed = ledger.event("burn_1", "redemption")
    spent = ledger.reward(redeemed, points=-30, reason="spent")
    ledger.reward(ledger.event("cancel_1", "cancel"), points=30, reason="returned",
                  reverses_id=spent)
    ledger.reward(None, points=-20, reason="expired")  # all of `gone`, below
    pending = ledger.reward(ledger.event("pay_2", "payment"), points=40)
    forever = ledger.reward(ledger.event("act_1", "activation"), points=10,
                            campaign_id="welcome")
    late = ledger.reward(ledger.event("pay_3", "payment"), points=5, campaign_id="spring")
    gone = ledger.reward(ledger.event("pay_4", "payment"), points=20)
    other = ledger.reward(ledger.event("pay_9", "payment", user_id="u_2"), points=99,
                          user_id="u_2")
    ledger.lot(base, 100, expires_at=MARCH_15)
    ledger.lot(bonus, 50, expires_at=MARCH_15)
    ledger.lot(pending, 40, pending=True, expires_at=MAY_1)
    ledger.lot(forever, 10)
    ledger.lot(late, 5, expires_at=APRIL_1)
    ledger.lot(gone, 20, remaining=0, expires_at=JUNE_1_PAST)
    ledger.lot(other, 99, expires_at=MARCH_15, user_id="u_2")
    ledger.user("u_1", balance=165, pending=40)
    ledger.user("u_2", balance=99, pending=0)


def entry(reward_id: str, event_id: str | None, points: int, minute: int, *,
          campaign_id: str | None = None, reason: str | None = None) -> dict:
    body = {"reward_id": reward_id, "event_id": event_id, "campaign_id": campaign_id,
            "kind": "points", "points": points,
            "created_at": f"2027-06-01T02:{minute:02d}:00Z"}
    if reason is not None:
        body["reason"] = reason
    return body


ALL_ENTRIES = [
    entry("rw_010", "pay_4", 20, 10),
    entry("rw_009", "pay_3", 5, 9, campaign_id="spring"),
    entry("rw_008", "act_1", 10, 8, campaign_id="welcome"),
    entry("rw_007", "pay_2", 40, 7),
    entry("rw_006", None, -20, 6, reason="expired"),
    entry("rw_005", "cancel_1", 30, 5, reason="returned"),
    entry("rw_004", "burn_1", -30, 4, reason="spent"),
    entry("rw_002", "pay_1", 50, 2, campaign_id="double"),
    entry("rw_001", "pay_1", 100, 1),
]


def test_points_show_pending_expiring_and_every_entry(wallet, points_history):
    assert wallet.get("/v1/users/u_1/points").get_json() == {
        "user_id": "u_1", "points_balance": 165, "pending_points": 40,
        "expiring": [{"points": 150, "expires_at": "2028-03-15T00:00:00+08:00"},
                     {"points": 5, "expires_at": "2028-04-01T00:00:00+08:00"}],
        "entries": ALL_ENTRIES, "next_cursor": None}


def test_points_pages_run_through_entries_of_no_event(wallet, points_history):
    first = wallet.get("/v1/users/u_1/points?limit=4").get_json()
    assert first["entries"] == ALL_ENTRIES[:4]
    second = wallet.get(f"/v1/users/u_1/points?limit=4&cursor={first['next_cursor']}").get_json()
    assert second["entries"] == ALL_ENTRIES[4:8]
    assert second["expiring"] == first["expiring"]  # every page shows the whole user
    third = wallet.get(f"/v1/users/u_1/points?limit=4&cursor={second['next_cursor']}").get_json()
    assert (third["entries"], third["next_cursor"]) == (ALL_ENTRIES[8:], None)


def test_expiring_is_written_in_the_programs_zone(database_url):
    """PROMO_TIMEZONE decides the offset: Shanghai's midnight is New York's noon."""
    with running_app(make_settings(database_url, timezone="America/New_York")) as app:
        ledger = Ledger(app)
        ledger.lot(ledger.reward(ledger.event("pay_1", "payment"), points=12), 12,
                   expires_at=MARCH_15)
        ledger.user("u_1", balance=12, pending=0)
        assert wallet_at_now(app).get("/v1/users/u_1/points").get_json()["expiring"] == [
            {"points": 12, "expires_at": "2028-03-14T12:00:00-04:00"}]


def test_points_of_a_user_never_seen_are_empty(wallet, points_history):
    assert wallet.get("/v1/users/u_404/points").get_json() == {
        "user_id": "u_404", "points_balance": 0, "pending_points": 0, "expiring": [],
        "entries": [], "next_cursor": None}


def test_points_response_conforms_to_the_description(app, wallet, points_history):
    response = wallet.get("/v1/users/u_1/points?limit=5")
    assert response.status_code == 200
    conforms(app, response)


# --- vouchers ----------------------------------------------------------------------------

@pytest.fixture
def vouchers(ledger):
    """Five vouchers of u_1, oldest first, one of each status and two active; one of u_2."""
    granted = ledger.event("act_1", "activation")
    paid = ledger.event("pay_1", "payment")
    ledger.voucher("ACTIVE00000001", granted, min_amount_minor=5000,
                   expires_at=datetime(2027, 7, 1, 16, 0, tzinfo=UTC))
    ledger.voucher("USED0000000001", granted, amount_minor=250, used_by_event_pk=paid,
                   expires_at=NOW - timedelta(days=1))  # used in time, expired since
    ledger.voucher("EXPIRED0000001", granted, expires_at=NOW)  # exclusive: expired now
    ledger.voucher("VOIDED00000001", ledger.event("burn_1", "redemption"),
                   campaign_id="coffee-for-500", voided_at=NOW - timedelta(hours=1))
    ledger.voucher("ACTIVE00000002", granted, amount_minor=1, campaign_id=None,
                   expires_at=NOW + timedelta(microseconds=1))
    ledger.voucher("OTHERUSER00001", ledger.event("act_9", "activation", user_id="u_2"),
                   user_id="u_2")


def voucher(code: str, minute: int, *, amount: str = "10.00", min_amount: str | None = None,
            status: str = "active", campaign_id: str | None = "welcome",
            expires_at: str = "2027-07-15T04:00:00Z", used_by: str | None = None) -> dict:
    return {"code": code, "amount": amount, "currency": "CNY", "min_amount": min_amount,
            "status": status, "campaign_id": campaign_id,
            "issued_at": f"2027-06-01T02:{minute:02d}:00Z", "expires_at": expires_at,
            "used_by_event_id": used_by}


ACTIVE_2 = voucher("ACTIVE00000002", 5, amount="0.01", campaign_id=None,
                   expires_at="2027-06-15T04:00:00.000001Z")
VOIDED = voucher("VOIDED00000001", 4, status="voided", campaign_id="coffee-for-500")
EXPIRED = voucher("EXPIRED0000001", 3, status="expired", expires_at="2027-06-15T04:00:00Z")
USED = voucher("USED0000000001", 2, amount="2.50", status="used",
               expires_at="2027-06-14T04:00:00Z", used_by="pay_1")
ACTIVE_1 = voucher("ACTIVE00000001", 1, min_amount="50.00", expires_at="2027-07-01T16:00:00Z")


@pytest.mark.parametrize("query, listed", [
    ("", [ACTIVE_2, ACTIVE_1]),
    ("?status=active", [ACTIVE_2, ACTIVE_1]),
    ("?status=used", [USED]),
    ("?status=expired", [EXPIRED]),
    ("?status=all", [ACTIVE_2, VOIDED, EXPIRED, USED, ACTIVE_1]),
])
def test_vouchers_newest_first_by_status(wallet, vouchers, query, listed):
    response = wallet.get(f"/v1/users/u_1/vouchers{query}")
    assert response.status_code == 200
    assert response.get_json() == {"user_id": "u_1", "vouchers": listed}


def test_vouchers_of_a_user_never_seen_are_empty(wallet, vouchers):
    assert wallet.get("/v1/users/u_404/vouchers?status=all").get_json() == {
        "user_id": "u_404", "vouchers": []}


@pytest.mark.parametrize("query, fields", [
    ("?status=voided", {"status": ["must be one of: active, used, expired, all"]}),
    ("?status=ACTIVE", {"status": ["must be one of: active, used, expired, all"]}),
    ("?status=", {"status": ["must be one of: active, used, expired, all"]}),
    ("?status=used&status=all", {"status": ["give it once"]}),
    ("?state=used", {"state": ["is not a parameter of this endpoint; known: status"]}),
])
def test_vouchers_query_is_checked(wallet, query, fields):
    response = wallet.get(f"/v1/users/u_1/vouchers{query}")
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert (error["code"], error["fields"]) == ("validation_error", fields)


def test_vouchers_user_id_is_checked(wallet):
    response = wallet.get("/v1/users/u%201/vouchers")
    assert response.status_code == 422
    assert response.get_json()["error"]["fields"] == {
        "user_id": ["must be 1-64 characters of A-Z a-z 0-9 _ . : -"]}


def test_vouchers_need_a_signature(app, vouchers):
    response = app.test_client().get("/v1/users/u_1/vouchers")
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("query", ["", "?status=all"])
def test_vouchers_response_conforms_to_the_description(app, wallet, vouchers, query):
    response = wallet.get(f"/v1/users/u_1/vouchers{query}")
    assert response.status_code == 200
    conforms(app, response)
