"""The reward lifecycle under concurrency, on PostgreSQL (and Redis, where campaign counters
apply): redemptions, vouchers, exchanges, cancels and refunds sent at once from several
worker processes, each with several threads (`concurrent_wallets.WalletPool`, kept for the
whole module), checked against the ledger's rows in plain SQL (`processes.points_problems`).

Exact balances (never spent below zero, every answer's points in the rows), a voucher used
once, an exchange's stock exact with either kind of counter, and cancels and refunds that
are applied whole or refused whole while redemptions race them.
"""
from __future__ import annotations

import contextlib
import json
from collections import Counter
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal

import pytest

from concurrent_wallets import WalletPool
from conftest import TEST_REDIS_URL, make_settings, reused_schema_url, running_app
from processes import LedgerView, points_problems, redis_counters
from wallet import OPEN_RANGE, install_campaigns, new_wallet_client, payment, refund

pytestmark = [pytest.mark.slow, pytest.mark.services]

PROCESSES = 3
THREADS = 10
EXPIRE_MONTHS = 24  # lots expire (in spending order) but none during the tests


@pytest.fixture(scope="module")
def pool():
    pool = WalletPool(PROCESSES, THREADS).start()
    yield pool
    pool.close()


@pytest.fixture(params=["postgresql"])
def database_url(request, tmp_path):
    """An empty, migrated PostgreSQL database (one schema per module, emptied per test)."""
    return reused_schema_url(request, tmp_path)


@pytest.fixture(params=["database-counters", "redis-counters"])
def counters(request) -> dict:
    """Settings for campaign counters in the database, then in Redis."""
    if request.param == "database-counters":
        return {}
    return {"redis_url": TEST_REDIS_URL, "redis_prefix": request.getfixturevalue("redis_prefix")}


@pytest.fixture
def lifecycle(database_url, pool, tmp_path):
    with Lifecycle(database_url, pool, tmp_path) as made:
        yield made


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


def burn(event_id: str, user_id: str, points: int) -> dict:
    return {"event_id": event_id, "type": "redemption", "user_id": user_id,
            "occurred_at": now_iso(), "points": points}


def exchange(event_id: str, user_id: str, campaign_id: str) -> dict:
    return {"event_id": event_id, "type": "redemption", "user_id": user_id,
            "occurred_at": now_iso(), "campaign_id": campaign_id}


def cancel(event_id: str, user_id: str, original: str) -> dict:
    return {"event_id": event_id, "type": "cancel", "user_id": user_id,
            "occurred_at": now_iso(), "original_event_id": original}


def error_code(answer) -> str | None:
    return answer["error"]["code"] if "error" in answer else None


class Lifecycle:
    """A test's database and settings (`counters`), the app the test sets up with, and
    bursts through the pool."""

    def __init__(self, database_url: str, pool: WalletPool, tmp_path):
        self.database_url, self.pool, self.tmp_path = database_url, pool, tmp_path
        self.stack = contextlib.ExitStack()
        self.ledger = LedgerView(database_url)
        self.settings: dict | None = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stack.close()
        self.ledger.close()

    def start(self, yaml_text: str | None = None, **settings) -> None:
        self.settings = dict(database_url=self.database_url,
                             points_expire_months=EXPIRE_MONTHS, **settings)
        self.app = self.stack.enter_context(running_app(make_settings(**self.settings)))
        if yaml_text:
            install_campaigns(self.app, yaml_text, self.tmp_path)
        self.wallet = new_wallet_client(self.app)
        self.sent: list[tuple[dict, int, dict]] = []  # every event sent, its answer

    def send(self, body: dict) -> dict:
        """One event from the test itself, which must be accepted."""
        response = self.wallet.post("/v1/events", body)
        assert response.status_code == 201, (body, response.get_data(as_text=True))
        answer = response.get_json()
        self.sent.append((body, 201, answer))
        return answer

    def fire(self, bodies: list[dict]) -> list[tuple[dict, int, dict]]:
        """The bodies sent at once from every worker process; (body, status, answer) each.
        Any status but 201, 422 and (for a copy of an event) 200 fails here: a 5xx, or none."""
        answers = self.pool.fire(self.settings, self.wallet.key_id, self.wallet.secret, bodies)
        bad = [(body["event_id"], status, text[:2000])
               for body, (status, text) in zip(bodies, answers)
               if status not in (200, 201, 422)]
        assert not bad, bad[:5]
        outcomes = [(body, status, json.loads(text))
                    for body, (status, text) in zip(bodies, answers)]
        self.sent += outcomes
        return outcomes

    # -- the ledger, read independently ------------------------------------------------

    def check_rows(self) -> None:
        """Each accepted event has one row, whose stored response is the answer and whose
        reward rows are the answer's rewards; a copy of it got 200 with that very answer; a
        refused one left no row; no row without an accepted event; the points rows agree
        with the lots and the users' balances."""
        rows = {event_id: (pk, response) for pk, event_id, response in
                self.ledger.rows("SELECT id, event_id, response FROM events")}
        rewards: dict[int, set] = {}
        for event_pk, reward_id in self.ledger.rows(
                "SELECT event_pk, reward_id FROM rewards WHERE event_pk IS NOT NULL"):
            rewards.setdefault(event_pk, set()).add(reward_id)
        problems = []
        accepted = {}
        for body, status, answer in self.sent:
            event_id = body["event_id"]
            if status == 201:
                if event_id in accepted:
                    problems.append(f"{event_id}: a second 201")
                accepted[event_id] = answer
        for body, status, answer in self.sent:
            event_id = body["event_id"]
            if status == 201:
                if event_id not in rows:
                    problems.append(f"{event_id}: 201 but no event row")
                    continue
                pk, response = rows[event_id]
                if json.loads(response) != answer:
                    problems.append(f"{event_id}: stored {response} != answer {answer}")
                listed = {r["reward_id"] for r in answer["rewards"]}
                if listed != rewards.get(pk, set()):
                    problems.append(f"{event_id}: answer lists {sorted(listed)}, rows "
                                    f"{sorted(rewards.get(pk, set()))}")
            elif status == 422 and event_id in rows and event_id not in accepted:
                problems.append(f"{event_id}: refused ({error_code(answer)}) yet in the ledger")
        problems += [f"{event_id}: in the ledger, never accepted"
                     for event_id in rows if event_id not in accepted]
        problems += [f"{body['event_id']}: replayed {answer}, not the first answer"
                     for body, status, answer in self.sent
                     if status == 200 and accepted.get(body["event_id"]) != answer]
        problems += points_problems(self.ledger)
        assert not problems, "\n".join(problems[:30])

    def balance(self, user_id: str) -> tuple[int, int]:
        (row,) = self.ledger.rows(
            "SELECT points_balance, pending_points FROM users WHERE user_id = :u", u=user_id)
        return tuple(row)

    def answered_points(self, user_id: str) -> int:
        """The points of every reward of every accepted event of the user, as answered."""
        return sum(r.get("points", 0) for body, status, answer in self.sent
                   if status == 201 and body["user_id"] == user_id for r in answer["rewards"])

    def usage_from_rows(self, campaign_ids) -> dict[str, tuple[int, int]]:
        """(spent, redemptions) the campaign counters must hold, from the reward rows: grants
        and their reversals (rows without a reason), each grant a redemption unless its
        redemption was cancelled or its payment refunded in full."""
        spent = dict(self.ledger.rows(
            "SELECT campaign_id, SUM(COALESCE(points, amount_minor)) FROM rewards "
            "WHERE campaign_id IS NOT NULL AND reason IS NULL GROUP BY campaign_id"))
        redemptions = dict(self.ledger.rows(
            "SELECT r.campaign_id, COUNT(*) FROM rewards r JOIN events e ON e.id = r.event_pk "
            "WHERE r.campaign_id IS NOT NULL AND r.reason IS NULL AND r.reverses_id IS NULL "
            "AND e.cancelled_by_pk IS NULL "
            "AND (e.amount_minor IS NULL OR e.refunded_minor < e.amount_minor) "
            "GROUP BY r.campaign_id"))
        return {c: (int(spent.get(c, 0)), int(redemptions.get(c, 0))) for c in campaign_ids}

    def check_counters(self, campaign_ids) -> dict[str, tuple[int, int]]:
        """The campaign counters equal what the rows derive: the database's usage rows (the
        guard itself without Redis), or Redis's counters, exact once every event is
        answered, and after a reconciliation too."""
        expected = self.usage_from_rows(campaign_ids)
        usage_rows = {c: (int(s), int(r)) for c, s, r in self.ledger.rows(
            "SELECT campaign_id, spent, redemptions FROM campaign_usage")}
        if not self.settings.get("redis_url"):
            assert {c: usage_rows.get(c, (0, 0)) for c in campaign_ids} == expected
            return expected
        from redis import Redis

        from promo_engine.campaigns.reconcile import reconcile
        from promo_engine.service import promo_service
        client = Redis.from_url(TEST_REDIS_URL)
        try:
            prefix = self.settings["redis_prefix"]
            assert redis_counters(client, prefix, campaign_ids) == expected
            with self.app.app_context():
                reconcile(promo_service(self.app).reservations)
            assert redis_counters(client, prefix, campaign_ids) == expected
        finally:
            client.close()
        usage_rows = {c: (int(s), int(r)) for c, s, r in self.ledger.rows(
            "SELECT campaign_id, spent, redemptions FROM campaign_usage")}
        assert {c: usage_rows.get(c, (0, 0)) for c in campaign_ids} == expected
        return expected


# -- 1. burns of one user ------------------------------------------------------------------

def test_twenty_burns_of_one_user_never_spend_more_than_the_balance(lifecycle):
    lifecycle.start()
    # Five lots of 200 points, each expiring a month after the one before.
    for month in range(1, 6):
        lifecycle.send(payment(f"earn-{month}", "200.00", user_id="burner",
                               at=f"2026-{month:02d}-15T12:00:00+08:00"))
    cost = 70
    outcomes = lifecycle.fire([burn(f"burn-{n}", "burner", cost) for n in range(20)])

    won = [answer for _, status, answer in outcomes if status == 201]
    lost = [answer for _, status, answer in outcomes if status == 422]
    assert len(won) == 1000 // cost == 14
    assert len(lost) == 6
    assert {error_code(a) for a in lost} == {"insufficient_points"}
    assert all(set(a["error"]["fields"]) == {"points"} for a in lost)
    for answer in won:
        assert [(r["kind"], r["points"], r["campaign_id"]) for r in answer["rewards"]] == \
            [("points", -cost, None)]
    # Each burn saw the one before it: every balance from 930 down to 20 once.
    assert sorted(a["points_balance"] for a in won) == list(range(1000 - 14 * cost, 1000, cost))
    assert lifecycle.balance("burner") == (1000 - 14 * cost, 0)
    assert lifecycle.answered_points("burner") == 20
    # Spent in expiry order: the four soonest lots are empty, the last holds the rest.
    remaining = [r for (r,) in lifecycle.ledger.rows(
        "SELECT remaining FROM points_lots WHERE user_id = 'burner' ORDER BY expires_at")]
    assert remaining == [0, 0, 0, 0, 20]
    lifecycle.check_rows()


# -- 2. one voucher, thirty payments ---------------------------------------------------------

VOUCHER_SHOP = f"""
id: voucher-shop
type: points_exchange
{OPEN_RANGE}params: {{cost_points: 100, voucher: {{amount: "10.00", valid_days: 30}}}}
---
id: pay-less
type: holiday_discount
{OPEN_RANGE}budget: {{amount: "1000.00"}}
limits: {{max_redemptions: 100}}
params: {{amount_off: "1.00"}}
"""


def test_thirty_payments_with_one_voucher_use_it_once(lifecycle, counters):
    lifecycle.start(VOUCHER_SHOP, **counters)
    lifecycle.send(payment("earn", "300.00", user_id="owner"))
    voucher = lifecycle.send(exchange("get-voucher", "owner", "voucher-shop"))["rewards"][1]
    code = voucher["voucher"]["code"]
    at = now_iso()
    outcomes = lifecycle.fire([payment(f"pay-{n}", "50.00", user_id="owner", at=at,
                                       vouchers=[code]) for n in range(30)])

    won = [(body, answer) for body, status, answer in outcomes if status == 201]
    lost = [answer for _, status, answer in outcomes if status == 422]
    assert len(won) == 1 and len(lost) == 29
    winner, answer = won[0]
    used = [r for r in answer["rewards"] if r.get("voucher_code") == code]
    assert [(r["kind"], r["amount"], r["campaign_id"]) for r in used] == \
        [("discount", "10.00", "voucher-shop")]
    assert all(a["error"] == {"code": "voucher_unavailable", "message": a["error"]["message"],
                              "fields": {"vouchers": [f"{code}: already used"]}} for a in lost)
    (used_by,) = lifecycle.ledger.rows(
        "SELECT e.event_id FROM vouchers v JOIN events e ON e.id = v.used_by_event_pk "
        "WHERE v.code = :code", code=code)
    assert used_by == (winner["event_id"],)
    response = lifecycle.wallet.get("/v1/users/owner/vouchers?status=used")
    assert [(v["code"], v["used_by_event_id"]) for v in response.get_json()["vouchers"]] == \
        [(code, winner["event_id"])]
    lifecycle.check_rows()
    assert lifecycle.balance("owner")[0] == lifecycle.answered_points("owner")
    assert lifecycle.check_counters(["voucher-shop", "pay-less"]) == \
        {"voucher-shop": (1000, 1), "pay-less": (200, 2)}  # the seed payment and the winner


# -- 3. an exchange's stock ------------------------------------------------------------------

def test_forty_users_exchange_for_a_stock_of_seven(lifecycle, counters):
    lifecycle.start(f"""
id: seven-left
type: points_exchange
{OPEN_RANGE}limits: {{max_redemptions: 7}}
params: {{cost_points: 100, voucher: {{amount: "10.00", valid_days: 30}}}}
""", **counters)
    users = [f"x{n:02d}" for n in range(40)]
    for user_id in users:
        lifecycle.send(payment(f"earn-{user_id}", "150.00", user_id=user_id))
    outcomes = lifecycle.fire([exchange(f"swap-{u}", u, "seven-left") for u in users])

    won = {body["user_id"]: answer for body, status, answer in outcomes if status == 201}
    lost = [answer for _, status, answer in outcomes if status == 422]
    assert len(won) == 7 and len(lost) == 33
    assert all(error_code(a) == "offer_unavailable" and set(a["error"]["fields"]) ==
               {"campaign_id"} for a in lost), lost[:3]
    for answer in won.values():
        assert [r["kind"] for r in answer["rewards"]] == ["points", "voucher"]
        assert answer["rewards"][0]["points"] == -100 and answer["points_balance"] == 50
    vouchers = dict(lifecycle.ledger.rows("SELECT user_id, code FROM vouchers"))
    assert sorted(vouchers) == sorted(won)
    assert all(vouchers[u] == won[u]["rewards"][1]["voucher"]["code"] for u in won)
    balances = dict(lifecycle.ledger.rows("SELECT user_id, points_balance FROM users"))
    assert balances == {u: 50 if u in won else 150 for u in users}
    lifecycle.check_rows()
    assert lifecycle.check_counters(["seven-left"]) == {"seven-left": (7000, 7)}


# -- 4. cancels and refunds racing redemptions --------------------------------------------------

SWAP = f"""
id: swap
type: points_exchange
{OPEN_RANGE}limits: {{max_redemptions: 3}}
params: {{cost_points: 80, voucher: {{amount: "5.00", valid_days: 30}}}}
"""


def test_cancels_and_refunds_racing_redemptions_are_whole_and_the_balance_exact(
        lifecycle, counters):
    # A payment's points are pending for 30 days: those of the payments made now.
    lifecycle.start(SWAP, points_pending_days=30, **counters)
    user = "racer"
    for n in range(1, 7):  # six available lots of 100 points, expiring in turn
        lifecycle.send(payment(f"P{n}", "100.00", user_id=user,
                               at=f"2026-{n:02d}-10T12:00:00+08:00"))
    for n in range(1, 5):
        lifecycle.send(burn(f"R{n}", user, 50))
    lifecycle.send(exchange("X1", user, "swap"))
    code = lifecycle.send(exchange("X2", user, "swap"))["rewards"][1]["voucher"]["code"]
    lifecycle.send(payment("P7", "60.00", user_id=user, at=now_iso(), vouchers=[code],
                           redeem_points=40))

    race = (
        [burn(f"N{n}", user, 60) for n in range(1, 9)]
        + [cancel(f"C-R{n}", user, f"R{n}") for n in range(1, 5)]
        + [cancel(f"C-R{n}-again", user, f"R{n}") for n in range(1, 5)]
        + [cancel("C-X1", user, "X1"), cancel("C-X2", user, "X2")]
        + [exchange("X3", user, "swap"), exchange("X4", user, "swap")]
        + [payment("P8", "100.00", user_id=user, at="2026-07-10T12:00:00+08:00"),
           payment("P9", "100.00", user_id=user, at=now_iso())]
        # Payments paid partly with points; redemptions racing their own cancels.
        + [payment(f"PR{n}", "20.00", user_id=user, at=now_iso(), redeem_points=30)
           for n in (1, 2)]
        + [burn("R5", user, 20), cancel("C-R5", user, "R5"),
           burn("R6", user, 20), cancel("C-R6", user, "R6")]
        + [refund("F1", "P1", "30.00", user_id=user), refund("F2a", "P2", "50.00", user_id=user),
           refund("F2b", "P2", "50.00", user_id=user), refund("F3", "P3", "100.00", user_id=user),
           refund("F4a", "P4", "100.00", user_id=user),
           refund("F4b", "P4", "100.00", user_id=user),
           refund("F7", "P7", "60.00", user_id=user)])
    # Copies of events, sent at the same time as the event (the wallet's retries).
    race += [next(b for b in race if b["event_id"] == e) for e in ("C-R1", "F3", "N1")]
    outcomes = lifecycle.fire(race)
    copies: dict[str, list] = {}
    for body, s, answer in outcomes:
        copies.setdefault(body["event_id"], []).append((s, error_code(answer)))
    # A copy of an accepted event is answered as a replay of it (200); a copy of a refused
    # one is judged again (a burn refused may pass once a cancel or refund gave points).
    answered = {e: sorted(s for s, _ in copies[e]) for e in ("C-R1", "F3", "N1")}
    assert answered["C-R1"] in ([200, 201], [422, 422])
    assert answered["F3"] == [200, 201]
    assert answered["N1"] in ([200, 201], [201, 422], [422, 422])
    status = {e: min(s for s, _ in c) for e, c in copies.items()}  # 200 or 201: accepted
    status = {e: 201 if s == 200 else s for e, s in status.items()}
    code_of = {e: None if status[e] == 201 else c[0][1] for e, c in copies.items()}

    # Each redemption cancelled once; the second cancel refused.
    for n in range(1, 5):
        assert sorted([status[f"C-R{n}"], status[f"C-R{n}-again"]]) == [201, 422]
        assert {code_of[f"C-R{n}"], code_of[f"C-R{n}-again"]} == {None, "already_cancelled"}
    assert status["C-X1"] == 201  # its voucher was never used
    # X2's voucher was used by P7: its cancel is refused, unless P7's full refund, which
    # frees the voucher, came first.
    assert status["C-X2"] == 201 and status["F7"] == 201 or code_of["C-X2"] == "voucher_used"
    assert [status[e] for e in ("F1", "F2a", "F2b", "F3", "F7", "P8", "P9")] == [201] * 7
    assert sorted([code_of["F4a"], code_of["F4b"]], key=str) == [None, "refund_exceeds_payment"]
    burns = Counter(code_of[f"N{n}"] for n in range(1, 9))
    assert set(burns) <= {None, "insufficient_points"}
    assert set(code_of[x] for x in ("X3", "X4")) <= {None, "insufficient_points",
                                                      "offer_unavailable"}
    assert {code_of["PR1"], code_of["PR2"]} <= {None, "insufficient_points"}
    for n in (5, 6):  # a cancel applies only to a redemption recorded before it
        assert code_of[f"C-R{n}"] in (None, "unknown_redemption")
        assert status[f"C-R{n}"] == 422 or status[f"R{n}"] == 201

    lifecycle.check_rows()
    # The balance is exactly what the answers gave and took, and what the rows derive.
    balance, pending = lifecycle.balance(user)
    assert balance + pending == lifecycle.answered_points(user)
    # Pending: what the payments made now earned (P7's went with its full refund).
    earned_now = {body["event_id"]: sum(r["points"] for r in answer["rewards"]
                                        if r.get("points", 0) > 0)
                  for body, s, answer in outcomes if s == 201}
    assert pending == sum(earned_now.get(e, 0) for e in ("P9", "PR1", "PR2"))
    assert earned_now["P9"] == 100

    # Cancels: the redemption's every row reversed, exactly once.
    for original, by in lifecycle.ledger.rows(
            "SELECT r.event_id, c.event_id FROM events r LEFT JOIN events c "
            "ON c.id = r.cancelled_by_pk WHERE r.type = 'redemption'"):
        cancelled = [e for e in (f"C-{original}", f"C-{original}-again") if status.get(e) == 201]
        assert cancelled == ([by] if by else []), (original, by, cancelled)
        for reward_id, value, reversed_ in lifecycle.ledger.rows(
                "SELECT g.reward_id, COALESCE(g.points, g.amount_minor), "
                "COALESCE(SUM(COALESCE(v.points, v.amount_minor)), 0) FROM rewards g "
                "JOIN events e ON e.id = g.event_pk "
                "LEFT JOIN rewards v ON v.reverses_id = g.id "
                "WHERE e.event_id = :e AND g.reverses_id IS NULL GROUP BY g.id", e=original):
            assert int(reversed_) == (-value if by else 0), (original, reward_id)
    voided = dict(lifecycle.ledger.rows(
        "SELECT e.event_id, v.voided_at IS NOT NULL FROM vouchers v "
        "JOIN rewards r ON r.id = v.reward_pk JOIN events e ON e.id = r.event_pk"))
    assert voided["X1"] is True and voided["X2"] is (status["C-X2"] == 201)

    # Refunds: each payment's rewards reversed in proportion to what was refunded in all.
    refunded = Counter()
    for body, s, _ in outcomes:
        if body["type"] == "refund" and s == 201:
            refunded[body["original_event_id"]] += Decimal(body["amount"])
    for event_id, amount_minor, refunded_minor in lifecycle.ledger.rows(
            "SELECT event_id, amount_minor, refunded_minor FROM events WHERE type = 'payment'"):
        assert refunded_minor == int(refunded[event_id] * 100), event_id
        share = Decimal(refunded_minor) / Decimal(amount_minor)
        for reward_id, value, reversed_ in lifecycle.ledger.rows(
                "SELECT g.reward_id, COALESCE(g.points, g.amount_minor), "
                "COALESCE(SUM(COALESCE(v.points, v.amount_minor)), 0) FROM rewards g "
                "JOIN events e ON e.id = g.event_pk "
                "LEFT JOIN rewards v ON v.reverses_id = g.id "
                "WHERE e.event_id = :e AND g.reverses_id IS NULL "
                "AND g.reason IS DISTINCT FROM 'returned' GROUP BY g.id", e=event_id):
            target = int((Decimal(value) * share).to_integral_value(ROUND_HALF_UP))
            assert int(reversed_) == -target, (event_id, reward_id, value, reversed_)

    lifecycle.check_counters(["swap"])
    stock = lifecycle.usage_from_rows(["swap"])["swap"][1]
    assert stock <= 3
    exchanged = [e for e in ("X1", "X2", "X3", "X4") if status.get(e, 201) == 201]
    cancelled = [e for e in ("X1", "X2") if status[f"C-{e}"] == 201]
    assert stock == len(exchanged) - len(cancelled)
