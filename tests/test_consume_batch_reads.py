"""A batch's users locked and read at its start (ledger/batch_reads.py), and its events
written without savepoints until one fails (ledger/batches.py), on PostgreSQL with budgets
in Redis.

What must hold: a user's first event in the batch is judged on the counters as committed,
its later ones on the counters after the earlier ones; a user made for the batch leaves no
row unless one of its events is written; the limits hold exactly while wallets send events
of the same users over HTTP at the same time.
"""
from __future__ import annotations

import json
import threading
from collections import Counter

import pytest

from conftest import make_redis_settings, running_app
from test_consume import decoded, events_in_ledger, new_consumer, no_probe, streams
from test_consume_batched import WRITTEN_BY, sql, transactions
from wallet import OPEN_RANGE, install_campaigns, new_wallet_client, payment

pytestmark = pytest.mark.services
__all__ = ["no_probe", "streams"]  # fixtures of test_consume.py, used here too

TWICE = f"""
id: twice
type: holiday_discount
{OPEN_RANGE}budget: {{amount: "1000.00"}}
limits: {{per_user: 2}}
params: {{amount_off: "1.00"}}
"""


@pytest.fixture
def twice_app(postgres_url, redis_prefix, tmp_path):
    with running_app(make_redis_settings(postgres_url, redis_prefix)) as app:
        install_campaigns(app, TWICE, tmp_path)
        sql(app, WRITTEN_BY)
        yield app


def discounted(app) -> dict[str, list[str]]:
    """event_id -> the discounts' amounts its answer gave."""
    return {event_id: [reward["amount"] for reward in response["rewards"]
                       if reward["kind"] == "discount"]
            for event_id, response in events_in_ledger(app).items()}


def test_first_events_use_the_prefetched_counters_and_later_ones_see_the_earlier_writes(
        twice_app, streams):
    streams.add(payment("a1", "10.00", user_id="u1"))
    assert new_consumer(twice_app, streams).step() == 1  # u1 has used `twice` once
    bodies = [payment("b1", "10.00", user_id="u1"), payment("b2", "10.00", user_id="u1"),
              payment("b3", "10.00", user_id="u2"),  # new to the ledger
              payment("b4", "10.00", user_id="u3"), payment("b5", "10.00", user_id="u3"),
              payment("b6", "10.00", user_id="u3")]
    for body in bodies:
        streams.add(body)

    assert new_consumer(twice_app, streams, "c2").step() == 6

    assert discounted(twice_app) == {"a1": ["1.00"], "b1": ["1.00"], "b2": [], "b3": ["1.00"],
                                     "b4": ["1.00"], "b5": ["1.00"], "b6": []}
    assert sql(twice_app, "SELECT user_id, payments FROM users ORDER BY user_id") == [
        ("u1", 3), ("u2", 1), ("u3", 3)]
    assert sql(twice_app, "SELECT user_id, uses FROM user_campaign_usage ORDER BY user_id") == [
        ("u1", 2), ("u2", 1), ("u3", 2)]
    # One transaction, and no savepoint in it: every row of the batch has its xmin.
    written = transactions(twice_app)
    assert len({written[f"b{n}"] for n in range(1, 7)}) == 1
    [(xmins,)] = sql(twice_app, "SELECT count(DISTINCT xmin::text) FROM events "
                                "WHERE event_id LIKE 'b%'")
    assert xmins == 1


def test_a_new_user_whose_only_event_is_refused_leaves_no_row(twice_app, streams):
    streams.add(payment("p1", "10.00", user_id="u1"))
    assert new_consumer(twice_app, streams).step() == 1
    # p1 again, from another user: refused as a conflict, after the batch made u-new's row.
    conflicting = streams.add(payment("p1", "10.00", user_id="u-new"))
    streams.add(payment("p2", "10.00", user_id="u2"))
    consumer = new_consumer(twice_app, streams, "c2")

    assert consumer.step() == 2

    assert consumer.stats.outcomes == {"recorded": 1, "dead_lettered": 1}
    [(message_id, fields)] = streams.entries(streams.dead)
    assert fields[b"source_id"] == conflicting
    assert json.loads(decoded(fields)["error"])["error"]["code"] == "idempotency_conflict"
    assert sql(twice_app, "SELECT user_id FROM users ORDER BY user_id") == [("u1",), ("u2",)]
    # Refused before it sent a statement: nothing to undo, the batch went on without savepoints.
    [(xmins,)] = sql(twice_app, "SELECT count(DISTINCT xmin::text) FROM events "
                                "WHERE event_id = 'p2'")
    assert xmins == 1


USERS, PER_USER_STREAM, PER_USER_HTTP = 30, 4, 4


def test_limits_hold_exactly_with_two_consumers_and_http_on_the_same_users(twice_app, streams):
    """Two consumers in threads apply batches while four wallet threads post payments of
    the same users over the API: each user gets exactly two discounts, however the batches'
    user locks and the requests' interleave."""
    for n in range(PER_USER_STREAM):
        for user in range(USERS):
            streams.add(payment(f"s{n}-{user}", "10.00", user_id=f"u{user:02d}"))
    wallet = new_wallet_client(twice_app)
    http_bodies = [payment(f"h{n}-{user}", "10.00", user_id=f"u{user:02d}")
                   for n in range(PER_USER_HTTP) for user in range(USERS)]
    answers: list[int] = []
    consumers = [new_consumer(twice_app, streams, f"c{n}", batch=25) for n in range(2)]
    applied = Counter()

    def consume(consumer):
        for _ in range(200):
            applied[consumer.options.consumer] += consumer.step()
            if sum(applied.values()) >= USERS * PER_USER_STREAM:
                return

    def post(share):
        for body in share:
            answers.append(wallet.post("/v1/events", body).status_code)

    threads = [threading.Thread(target=consume, args=(consumer,)) for consumer in consumers]
    threads += [threading.Thread(target=post, args=(http_bodies[n::4],)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert sum(applied.values()) == USERS * PER_USER_STREAM
    assert Counter(answers) == Counter({201: USERS * PER_USER_HTTP})
    assert streams.pending() == [] and streams.entries(streams.dead) == []
    [(uses,)] = sql(twice_app, "SELECT array_agg(DISTINCT uses) FROM user_campaign_usage")
    assert uses == [2]
    assert sql(twice_app, "SELECT count(*), sum(amount_minor) FROM rewards "
                          "WHERE campaign_id = 'twice' AND kind = 'discount'") == [
        (USERS * 2, USERS * 2 * 100)]
    assert sql(twice_app, "SELECT DISTINCT payments FROM users") == [
        (PER_USER_STREAM + PER_USER_HTTP,)]
    from promo_engine.service import promo_service
    spent, redemptions = promo_service(twice_app).reservations.counters(["twice"])["twice"]
    assert (spent, redemptions) == (USERS * 2 * 100, USERS * 2)


def test_a_decision_made_ahead_stands_only_for_the_state_it_was_made_on(twice_app):
    """`evaluate_reserving` with `ahead`: on the same event, state and engine the decision and
    reservation made ahead are the event's; on another state (the user denylisted
    meanwhile) the reservation is given back and the event evaluated again."""
    from promo_engine.api.recording import validated_event
    from promo_engine.core.campaign_type import UserState
    from promo_engine.ledger.gates import CollectingGate
    from promo_engine.ledger.reserving import Ahead, evaluate_reserving
    from promo_engine.service import promo_service
    with twice_app.app_context():
        service = promo_service(twice_app)
        assert service.counters_not_ready() is None
        reservations, engine = service.reservations, service.engine()
        event = validated_event(service, payment("x1", "10.00", user_id="u1"))
        state = UserState(user_id="u1")

        def made_ahead():
            gate = CollectingGate(service.ledger.minor_digits, set())
            decision = engine.evaluate(event, state, gate)
            [reservation] = reservations.reserve_ahead([gate.requests])
            return Ahead(event, state, engine, decision, reservation)

        ahead, held = made_ahead(), []
        decision = evaluate_reserving(reservations, service.ledger.minor_digits, event,
                                      UserState(user_id="u1"), engine, held, ahead=ahead)
        assert decision is ahead.decision and held == [ahead.reservation]
        assert sorted(grant.reward.kind for grant in decision.grants) == ["discount", "points"]
        assert reservations.counters(["twice"]) == {"twice": (100, 1)}

        other, held = made_ahead(), []
        decision = evaluate_reserving(reservations, service.ledger.minor_digits, event,
                                      UserState(user_id="u1", denied=True), engine, held,
                                      ahead=other)
        # Evaluated again: a denylisted user earns base points, no campaign's reward.
        assert [grant.reward.kind for grant in decision.grants] == ["points"] and held == []
        assert other.reservation.done
        assert reservations.counters(["twice"]) == {"twice": (100, 1)}  # given back
