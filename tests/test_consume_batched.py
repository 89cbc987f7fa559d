"""Batches of the stream consumer on PostgreSQL: many events in one transaction, a savepoint
each (ledger/batches.py, consumer/batching.py), with budgets in Redis.

The multi-process test (100,000 events, three consumers, one killed) is in test_consume.py;
these look at one batch from inside: which events share a transaction (PostgreSQL's xmin),
what one bad event takes with it (nothing but itself), and what Redis's budget counters
hold after events and whole batches were rolled back.
"""
from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from test_consume import (PROBE, PROBE_CAMPAIGN, decoded, error, events_in_ledger, no_probe,
                          new_consumer, probe_registry, streams, terminate_own_connection)
from conftest import make_redis_settings, running_app
from wallet import OPEN_RANGE, install_campaigns, payment, refund

pytestmark = pytest.mark.services
__all__ = ["no_probe", "streams"]  # fixtures of test_consume.py, used here too

BUDGET_CAMPAIGN = f"""
id: off-one
type: holiday_discount
{OPEN_RANGE}budget: {{amount: "5.00"}}
params: {{amount_off: "1.00"}}
"""

# PostgreSQL refuses one event's row, as it refuses a value out of range: the event fails in
# its write, after its budget was reserved in Redis and its user locked.
REFUSE_ONE = """
CREATE FUNCTION refuse_bad() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'refused by the test' USING ERRCODE = 'numeric_value_out_of_range'; END $$;
CREATE TRIGGER refuse_bad BEFORE INSERT ON events FOR EACH ROW
WHEN (NEW.event_id = 'pay-bad') EXECUTE FUNCTION refuse_bad();
"""


@pytest.fixture
def budget_app(postgres_url, redis_prefix, tmp_path):
    with running_app(make_redis_settings(postgres_url, redis_prefix), probe_registry()) as app:
        install_campaigns(app, BUDGET_CAMPAIGN, tmp_path)
        install_campaigns(app, PROBE_CAMPAIGN, tmp_path, name="probe.yaml")
        sql(app, WRITTEN_BY)
        yield app


def sql(app, statement: str, **params):
    from promo_engine.ledger.extensions import db
    with app.app_context():
        with db.engine.begin() as conn:
            result = conn.execute(text(statement), params)
            return result.all() if result.returns_rows else []


# Which transaction wrote each event's row: its top-level id (txid_current), since a row's
# xmin is the id of the savepoint's subtransaction.
WRITTEN_BY = """
CREATE TABLE written_by (event_id text PRIMARY KEY, txid bigint NOT NULL);
CREATE FUNCTION note_txid() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO written_by VALUES (NEW.event_id, txid_current()); RETURN NEW; END $$;
CREATE TRIGGER note_txid AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION note_txid();
"""


def transactions(app) -> dict[str, int]:
    """event_id -> the transaction that wrote its row, for the events in the ledger."""
    return dict(sql(app, "SELECT event_id, txid FROM written_by JOIN events USING (event_id)"))


def budget(app) -> tuple[int, int, int]:
    """(spent in Redis, spent in the ledger, redemptions in Redis) of `off-one`, minor units."""
    from promo_engine.service import promo_service
    [(ledger_spent,)] = sql(app, "SELECT coalesce(sum(amount_minor), 0) FROM rewards "
                                 "WHERE campaign_id = 'off-one'")
    spent, redemptions = promo_service(app).reservations.counters(["off-one"])["off-one"]
    return spent, ledger_spent, redemptions


def test_one_bad_event_in_a_batch_is_dead_lettered_alone_and_its_neighbours_commit(budget_app,
                                                                                   streams):
    sql(budget_app, REFUSE_ONE)
    bodies = [payment("pay-1", "10.00", user_id="u1"),
              payment("pay-bad", "10.00", user_id="u2"),  # refused by PostgreSQL at its write
              payment("pay-3", "10.00", user_id="u2"),  # the same user, after the bad one
              refund("ref-x", "pay-none", "1.00", user_id="u3"),  # refused by the ledger
              payment("pay-1", "10.00", user_id="u1"),  # a copy, earlier in this batch
              payment("pay-5", "10.00", user_id="u0")]
    ids = [streams.add(body) for body in bodies]
    consumer = new_consumer(budget_app, streams)

    assert consumer.step() == 6

    assert consumer.stats.outcomes == {"recorded": 3, "replayed": 1, "dead_lettered": 2}
    written = transactions(budget_app)
    assert sorted(written) == ["pay-1", "pay-3", "pay-5"]
    assert len(set(written.values())) == 1  # one transaction for the batch
    # The bad event failed in a batch applied without savepoints: that batch was rolled
    # back and applied again, each event in a savepoint (a subtransaction: an xmin) of its own.
    assert sql(budget_app, "SELECT count(DISTINCT xmin::text) FROM events") == [(3,)]
    dead = {decoded(fields)["source_id"]: json.loads(fields[b"error"])["error"]["code"]
            for _, fields in streams.entries(streams.dead)}
    assert dead == {ids[1].decode(): "validation_error", ids[3].decode(): "unknown_payment"}
    [(_, refused)] = [entry for entry in streams.entries(streams.dead)
                      if entry[1][b"source_id"] == ids[1]]
    assert json.loads(refused[b"error"]) == error(
        "validation_error", "a value is out of range or cannot be stored")
    # Results in stream order, whatever order the batch applied them in (by user).
    results = [decoded(fields) for _, fields in streams.entries(streams.results)]
    assert [(r["source_id"], r["status"]) for r in results] == [
        (ids[0].decode(), "201"), (ids[1].decode(), "422"), (ids[2].decode(), "201"),
        (ids[3].decode(), "422"), (ids[4].decode(), "200"), (ids[5].decode(), "201")]
    assert results[4]["body"] == results[0]["body"]
    # Three discounts in the ledger and in Redis: the bad event's reservation, and the
    # copy's, were given back when they were rolled back to their savepoints.
    assert budget(budget_app) == (300, 300, 3)
    assert streams.pending() == []


def test_a_batch_that_cannot_commit_is_acknowledged_nowhere_and_gives_its_budget_back(
        budget_app, streams):
    from promo_engine.service import promo_service
    with budget_app.app_context():
        assert promo_service(budget_app).counters_not_ready() is None  # counters built

    failed = []

    def fail_at_a_second_event(ctx):  # inside the batch's transaction, at pay-2's turn
        if ctx.event.event_id == "pay-2" and not failed:
            failed.append(ctx.event.event_id)
            terminate_own_connection(ctx)
    PROBE["hook"] = fail_at_a_second_event
    # pay-2 is u1's second event: evaluated in its turn, after pay-0 and pay-1 were written
    # on reservations made ahead for the batch (as was pay-3's, not yet written).
    users = ["u0", "u1", "u1", "u3"]
    ids = [streams.add(payment(f"pay-{n}", "10.00", user_id=user))
           for n, user in enumerate(users)]
    consumer = new_consumer(budget_app, streams)

    with pytest.raises(Exception):
        consumer.step()

    assert failed == ["pay-2"]
    assert events_in_ledger(budget_app) == {}
    assert [p["message_id"] for p in streams.pending()] == ids  # none acknowledged
    assert streams.entries(streams.results) == [] and streams.entries(streams.dead) == []
    assert budget(budget_app) == (0, 0, 0)  # every reservation of the batch given back

    assert consumer.step() == 4  # its own pending messages, again, in one batch
    assert len(set(transactions(budget_app).values())) == 1
    assert budget(budget_app) == (400, 400, 4)
    assert streams.pending() == []


def test_a_quiet_stream_waits_at_most_max_wait_ms_for_a_batch_to_fill(budget_app, streams):
    import threading
    import time
    streams.add(payment("pay-1", "10.00", user_id="u1"))
    consumer = new_consumer(budget_app, streams, max_wait_ms=300)
    later = threading.Timer(0.1, lambda: streams.add(payment("pay-2", "10.00", user_id="u2")))
    later.start()
    started = time.monotonic()

    assert consumer.step() == 2  # the second arrived within the wait: one batch

    elapsed = time.monotonic() - started
    assert 0.1 <= elapsed < 2.0
    assert len(set(transactions(budget_app).values())) == 1
    quiet = new_consumer(budget_app, streams, "c2", max_wait_ms=0)
    streams.add(payment("pay-3", "10.00", user_id="u3"))
    assert quiet.step() == 1


def test_a_batch_commits_early_once_half_its_first_reservation_time_is_gone(
        postgres_url, redis_prefix, streams, tmp_path):
    import time
    settings = make_redis_settings(postgres_url, redis_prefix, reservation_ttl_ms=1000)
    with running_app(settings, probe_registry()) as app:
        install_campaigns(app, BUDGET_CAMPAIGN, tmp_path)
        install_campaigns(app, PROBE_CAMPAIGN, tmp_path, name="probe.yaml")
        sql(app, WRITTEN_BY)
        def slow_second_event(ctx):  # the second event's evaluation takes 0.6 s
            if ctx.event.event_id == "pay-1":
                time.sleep(0.6)
        PROBE["hook"] = slow_second_event
        ids = [streams.add(payment(f"pay-{n}", "10.00", user_id=f"u{n}")) for n in range(3)]
        consumer = new_consumer(app, streams)

        # Past half the first reservation's 1,000 ms, the batch commits what it has; the
        # third event stays pending for the next round instead of risking the deadline.
        assert consumer.step() == 2
        assert [p["message_id"] for p in streams.pending()] == ids[2:]
        # u2 was locked with the batch's other users, a row made for it, and dropped again
        # at the commit: its event is not in the ledger yet, so neither is the user.
        assert sql(app, "SELECT user_id FROM users ORDER BY user_id") == [("u0",), ("u1",)]
        assert consumer.step() == 1

        written = transactions(app)
        assert written["pay-0"] == written["pay-1"] != written["pay-2"]
        assert budget(app) == (300, 300, 3)
        assert streams.pending() == [] and streams.entries(streams.dead) == []
