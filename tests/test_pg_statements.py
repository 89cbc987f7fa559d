"""The hot path's PostgreSQL statements stay within what psycopg caches: a statement's
parsed form is kept only up to 4,096 bytes and 50 parameters, and one past either limit is
parsed again on every event (which cost a write with webhooks a fifth more CPU before the
statements were kept within). The parameters are those of a real payment that earns points,
a discount and a voucher, with two webhook endpoints."""
from __future__ import annotations

import psycopg._queries
import pytest

from promo_engine.ledger import postgres_writes
from promo_engine.ledger.postgres_writes import PostgresEventWrites

from conftest import make_settings, running_app
from test_webhook_outbox import add_endpoint
from wallet import OPEN_RANGE, install_campaigns, new_wallet_client, payment

LENGTH = psycopg._queries.MAX_CACHED_STATEMENT_LENGTH
PARAMS = psycopg._queries.MAX_CACHED_STATEMENT_PARAMS

CAMPAIGNS = f"""
id: double
type: points_multiplier
{OPEN_RANGE}params: {{multiplier: 2}}
---
id: tenner
type: holiday_discount
merchants: [m_100]
{OPEN_RANGE}params: {{amount_off: "10.00"}}
budget: {{amount: "1000.00"}}
---
id: welcome
type: first_activation_bonus
{OPEN_RANGE}params: {{voucher: {{amount: "20.00", valid_days: 30}}}}
"""


@pytest.mark.parametrize("name", ["_PG_LOCK_USER", "_PG_USER_COUNTERS", "_PG_MATURE",
                                  "_PG_STORED_EVENT", "_PG_WRITE_EVENT",
                                  "_PG_WRITE_EVENT_ANNOUNCED", "_PG_WRITE_EVENT_COUNTED",
                                  "_PG_USER_COUNTERS_STORED", "_PG_TAKE_FROM_CAMPAIGN"])
def test_each_hot_statement_is_short_enough_to_be_cached(name):
    assert len(getattr(postgres_writes, name).encode()) <= LENGTH


@pytest.mark.parametrize("endpoints", [0, 2])
def test_a_write_passes_few_enough_parameters_to_be_cached(postgres_url, tmp_path,
                                                           monkeypatch, endpoints):
    written = []
    statement_for = PostgresEventWrites.statement_for

    def spy(self, rows):
        made = statement_for(self, rows)
        written.append(made)
        return made
    monkeypatch.setattr(PostgresEventWrites, "statement_for", spy)
    with running_app(make_settings(postgres_url)) as app:
        install_campaigns(app, CAMPAIGNS, tmp_path)
        for n in range(endpoints):
            add_endpoint(app, f"we_{n}")
        wallet = new_wallet_client(app)
        assert wallet.event(event_id="a1", type="activation", user_id="u_1",
                            occurred_at="2026-06-15T09:00:00+08:00").status_code == 201
        answer = wallet.event(**payment("p1", "50.00", at="2026-06-15T10:00:00+08:00"))
        assert answer.status_code == 201
        assert [r["campaign_id"] for r in answer.get_json()["rewards"]] == [
            None, "double", "tenner"]
    [(_, activated), (statement, params)] = written
    # Without endpoints a rewarded payment's risk counters travel in its write statement.
    assert statement == (postgres_writes._PG_WRITE_EVENT_ANNOUNCED if endpoints
                         else postgres_writes._PG_WRITE_EVENT_COUNTED)
    assert len(params) <= PARAMS and len(activated) <= PARAMS
    assert len(statement.encode()) <= LENGTH


def test_the_writes_also_work_pipelined(postgres_url, tmp_path, monkeypatch):
    """HTTP sends its statements one by one; a subclass may pipeline them
    (`PostgresEventWrites.pipelined`, used by the batched consumer): same answers."""
    monkeypatch.setattr(PostgresEventWrites, "pipelined", True)
    with running_app(make_settings(postgres_url)) as app:
        install_campaigns(app, CAMPAIGNS, tmp_path)
        wallet = new_wallet_client(app)
        first = wallet.event(**payment("p1", "50.00", at="2026-06-15T10:00:00+08:00"))
        assert first.status_code == 201
        assert [r["campaign_id"] for r in first.get_json()["rewards"]] == [
            None, "double", "tenner"]
        again = wallet.post("/v1/events", wallet.last_body)
        assert (again.status_code, again.data) == (200, first.data)
        assert wallet.event(**payment("p1", "51.00")).status_code == 409
