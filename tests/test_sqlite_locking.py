"""On SQLite, only write transactions take the database's write lock: a read left open
(a secret lookup, a quote) never stalls an event being recorded."""
from __future__ import annotations

import threading
import time

import pytest

from promo_engine.ledger.api_clients import lookup_secret
from promo_engine.ledger.extensions import db

from wallet import new_wallet_client, payment


@pytest.fixture
def database_url(sqlite_url):
    return sqlite_url


def test_open_read_transaction_does_not_block_a_write(app):
    wallet = new_wallet_client(app)
    reader_has_read = threading.Event()
    writer_done = threading.Event()

    def reader():
        with app.app_context():
            assert lookup_secret(wallet.key_id) is not None
            db.session.execute(db.text("SELECT count(*) FROM events")).scalar()
            reader_has_read.set()  # its transaction stays open until the writer is done
            writer_done.wait(timeout=20)
            db.session.rollback()

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        assert reader_has_read.wait(timeout=10)
        started = time.monotonic()
        response = wallet.event(**payment("p1", "10.00"))
        waited = time.monotonic() - started
    finally:
        writer_done.set()
        thread.join(timeout=30)
    assert response.status_code == 201
    assert waited < 5, f"the write waited {waited:.1f} s behind an open read"


def test_reads_begin_deferred_and_writes_immediate(app):
    statements = []
    with app.app_context():
        from sqlalchemy import event
        engine = db.engine

        @event.listens_for(engine, "before_cursor_execute")
        def remember(conn, cursor, statement, *args):
            if statement.startswith("BEGIN"):
                statements.append(statement)

        new_wallet_client(app).get("/v1/users/u_1/points")
        assert statements[-1] == "BEGIN"
        new_wallet_client(app)  # creates a client: a write
        assert statements[-1] == "BEGIN IMMEDIATE"
        event.remove(engine, "before_cursor_execute", remember)
