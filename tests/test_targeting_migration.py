"""Migration 0009 gives users who paid before it the time of their last payment, read from
their recorded payments, so `inactive_days` judges them as it judges users who pay after."""
from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import command
from sqlalchemy import create_engine, pool

from promo_engine.ledger import schema
from promo_engine.ledger.models import UserRecord, UTCDateTime

UTC = timezone.utc
NOW = datetime(2026, 12, 1, tzinfo=UTC)

_users = sa.table("users", sa.column("user_id"), sa.column("activations"),
                  sa.column("payments"), sa.column("points_balance"),
                  sa.column("pending_points"), sa.column("created_at", UTCDateTime()))
_events = sa.table("events", sa.column("client_id"), sa.column("event_id"), sa.column("type"),
                   sa.column("user_id"), sa.column("occurred_at", UTCDateTime()),
                   sa.column("refunded_minor"), sa.column("request_hash"),
                   sa.column("response"), sa.column("created_at", UTCDateTime()))


def test_upgrade_fills_in_the_last_payment_of_each_user(database_url):
    config = schema.alembic_config(database_url)
    command.upgrade(config, "0008")
    engine = create_engine(database_url, poolclass=pool.NullPool)
    try:
        with engine.begin() as connection:
            connection.execute(_users.insert(), [
                {"user_id": user_id, "activations": 1, "payments": payments,
                 "points_balance": 0, "pending_points": 0, "created_at": NOW}
                for user_id, payments in [("paid", 3), ("never", 0), ("late", 2)]])
            events = [
                ("paid", "p1", "payment", datetime(2026, 6, 1, 4, 0, tzinfo=UTC)),
                ("paid", "p2", "payment", datetime(2026, 9, 30, 23, 59, 59, 5, tzinfo=UTC)),
                ("paid", "p3", "payment", datetime(2026, 7, 1, 4, 0, tzinfo=UTC)),  # sent late
                ("paid", "r1", "refund", datetime(2026, 10, 5, 4, 0, tzinfo=UTC)),
                ("never", "a1", "activation", datetime(2026, 10, 5, 4, 0, tzinfo=UTC)),
                ("late", "p4", "payment", datetime(2026, 10, 1, 0, 0, tzinfo=UTC)),
                ("late", "p5", "payment", datetime(2026, 9, 1, 0, 0, tzinfo=UTC)),
            ]
            connection.execute(_events.insert(), [
                {"client_id": "c", "event_id": event_id, "type": type_, "user_id": user_id,
                 "occurred_at": occurred_at, "refunded_minor": 0, "request_hash": "h",
                 "response": "{}", "created_at": NOW}
                for user_id, event_id, type_, occurred_at in events])
        schema.upgrade(database_url)
        users = UserRecord.__table__
        with engine.connect() as connection:
            rows = dict(connection.execute(sa.select(users.c.user_id, users.c.last_paid_at)).all())
    finally:
        engine.dispose()
    assert rows == {"paid": datetime(2026, 9, 30, 23, 59, 59, 5, tzinfo=UTC), "never": None,
                    "late": datetime(2026, 10, 1, 0, 0, tzinfo=UTC)}
