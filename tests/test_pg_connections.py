"""PostgreSQL connections: the pool pings only connections that went idle, and replaces a
dead one (and every connection as old) at checkout; the event write path runs on a pooled
connection of its own, outside the ORM session, and leaves no session transaction open."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import create_engine, event, text

from promo_engine.ledger import database
from promo_engine.ledger.database import configure_engine, engine_options
from promo_engine.ledger.extensions import db

from wallet import new_wallet_client, payment


@pytest.fixture
def database_url(postgres_url):
    return postgres_url


@pytest.fixture
def engine(postgres_url, monkeypatch):
    """The app's engine options and pool handling, with a short idle window so that the
    test can let a connection go idle."""
    monkeypatch.setattr(database, "PING_AFTER_IDLE_SECONDS", 0.2)
    engine = create_engine(postgres_url, **engine_options(postgres_url))
    configure_engine(engine)
    pings = []
    do_ping = engine.dialect.do_ping

    def counted_ping(dbapi_connection):
        pings.append(dbapi_connection)
        return do_ping(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counted_ping)
    engine.pings = pings
    yield engine
    engine.dispose()


def backend_pid(pooled) -> int:
    return pooled.driver_connection.execute("SELECT pg_backend_pid()").fetchone()[0]


def terminate(postgres_url: str, pids: list[int]) -> None:
    admin = create_engine(postgres_url)
    with admin.connect() as connection:
        for pid in pids:
            assert connection.execute(text("SELECT pg_terminate_backend(:pid)"),
                                      {"pid": pid}).scalar() is True
    admin.dispose()


def test_connection_used_a_moment_ago_is_not_pinged(engine):
    first = engine.raw_connection()  # new: just connected, no ping
    pid = backend_pid(first)
    first.close()
    again = engine.raw_connection()
    assert backend_pid(again) == pid  # the same connection, handed out without a ping
    again.close()
    assert engine.pings == []


def test_connection_idle_past_the_window_is_pinged(engine):
    pooled = engine.raw_connection()
    pid = backend_pid(pooled)
    pooled.close()
    time.sleep(0.3)
    pooled = engine.raw_connection()
    assert len(engine.pings) == 1
    assert backend_pid(pooled) == pid  # alive: kept
    pooled.close()


def test_dead_idle_connections_are_replaced_at_checkout(engine, postgres_url):
    """A PostgreSQL restart seen at checkout: the failed ping replaces that connection and
    every other one as old, so the second checkout reconnects without a ping of its own."""
    first, second = engine.raw_connection(), engine.raw_connection()
    old_pids = [backend_pid(first), backend_pid(second)]
    first.close()
    second.close()
    terminate(postgres_url, old_pids)
    time.sleep(0.3)

    first, second = engine.raw_connection(), engine.raw_connection()
    new_pids = [backend_pid(first), backend_pid(second)]
    first.close()
    second.close()
    assert len(engine.pings) == 1
    assert set(new_pids).isdisjoint(old_pids)
    assert new_pids[0] != new_pids[1]


def test_event_is_written_outside_the_orm_session(app):
    """The write path on PostgreSQL begins no session transaction (its bookkeeping cost more
    than the round trips), and a read the request began ends before the event's transaction,
    so a request holds one connection at a time."""
    wallet = new_wallet_client(app)
    begun = []

    def listener(session, transaction):
        if transaction.parent is None:  # a session transaction, not a savepoint
            begun.append(transaction)

    with app.app_context():
        event.listen(db.session(), "after_transaction_create", listener)
        try:
            db.session.execute(text("SELECT 1"))  # a read left open, as a key lookup leaves it
            assert db.session().in_transaction()
            service = app.extensions["promo"]
            from promo_engine.api.recording import record_event_body
            body = payment("p1", "10.00")
            _, recorded = record_event_body(service, wallet.key_id, body)
            assert recorded.status == 201
            assert not db.session().in_transaction()
            assert len(begun) == 1  # the read's own transaction, none for the event
        finally:
            event.remove(db.session(), "after_transaction_create", listener)
        stored = db.session.execute(text("SELECT count(*) FROM events WHERE event_id = 'p1'"))
        assert stored.scalar() == 1
