"""Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""
from __future__ import annotations

import threading

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, pool

from promo_engine.ledger import schema


def differences(database_url: str) -> list:
    engine = create_engine(database_url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return compare_metadata(context, schema.target_metadata())
    finally:
        engine.dispose()


def table_names(database_url: str) -> set[str]:
    engine = create_engine(database_url, poolclass=pool.NullPool)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_migrations_have_a_single_head():
    assert len(ScriptDirectory.from_config(schema.alembic_config()).get_heads()) == 1


def test_upgrade_builds_the_schema_of_the_models(database_url):
    result = schema.upgrade(database_url)
    assert (result.before, result.after) == (None, schema.head_revision())
    assert differences(database_url) == []


def test_upgrade_twice_is_a_no_op(database_url):
    schema.upgrade(database_url)
    again = schema.upgrade(database_url)
    assert (again.before, again.after, again.changed) == (schema.head_revision(),
                                                          schema.head_revision(), False)
    assert differences(database_url) == []


def test_current_revision_is_none_before_and_head_after(database_url):
    assert schema.current_revision(database_url) is None
    schema.upgrade(database_url)
    assert schema.current_revision(database_url) == schema.head_revision()


def test_downgrade_to_base_and_upgrade_again(database_url):
    schema.upgrade(database_url)
    config = schema.alembic_config(database_url)
    command.downgrade(config, "base")
    assert table_names(database_url) == {"alembic_version"}
    schema.upgrade(database_url)
    assert differences(database_url) == []


def test_concurrent_upgrades_of_one_postgresql_database_both_succeed(postgres_url):
    results, errors = [], []

    def run():
        try:
            results.append(schema.upgrade(postgres_url))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(r.changed for r in results) == [False, True]
    assert differences(postgres_url) == []


def test_a_users_counters_are_read_through_an_index(postgres_url):
    """Every event reads its user's campaign counters (event_writes.py). Keys led by the user
    serve that read from a few index pages; keys led by the campaign made PostgreSQL read
    every row of both tables, on every event, ever more as users come."""
    import json
    from datetime import date

    from sqlalchemy import text

    from promo_engine.ledger.postgres_writes import _PG_USER_COUNTERS
    schema.upgrade(postgres_url)
    engine = create_engine(postgres_url, poolclass=pool.NullPool)
    try:
        with engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO user_campaign_usage (campaign_id, user_id, uses) "
                "SELECT 'c' || (n % 50), 'u' || n, 1 FROM generate_series(1, 20000) AS n"))
            connection.execute(text(
                "INSERT INTO user_campaign_daily_usage (campaign_id, user_id, day, uses) "
                "SELECT 'c' || (n % 50), 'u' || n, DATE '2026-12-04', 1 "
                "FROM generate_series(1, 20000) AS n"))
            connection.execute(text("ANALYZE user_campaign_usage; ANALYZE user_campaign_daily_usage"))
        with engine.connect() as connection:
            query = _PG_USER_COUNTERS.replace("%(user_id)s", "'u7'") \
                .replace("%(first_day)s", "DATE '2026-12-03'").replace("%(last_day)s", "DATE '2026-12-05'")
            rows = connection.execute(text(query)).all()
            [[plan]] = connection.execute(text("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + query)).all()
    finally:
        engine.dispose()
    assert sorted(rows, key=str) == [("c7", None, 1, None, None, None, None),
                                     ("c7", date(2026, 12, 4), 1, None, None, None, None)]
    top = (plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"]
    pages = top["Shared Hit Blocks"] + top["Shared Read Blocks"]
    assert pages <= 12, f"{pages} pages read for one user's counters: {json.dumps(top)[:2000]}"


def test_every_database_gets_a_program_id_of_its_own(database_url, tmp_path):
    """Migration 0005: a random program id in program_state, whether the row was there
    before (a campaign applied at 0004) or not; the Redis prefix's owner check uses it."""
    from sqlalchemy import text
    config = schema.alembic_config(database_url)
    command.upgrade(config, "0004")
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO program_state (id, campaigns_revision, "
                                "scheduler_fence) VALUES (1, 7, 0)"))
    schema.upgrade(database_url)
    other = f"sqlite:///{tmp_path / 'other.db'}"
    schema.upgrade(other)
    other_engine = create_engine(other)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text(
                "SELECT id, campaigns_revision, program_id FROM program_state")).all()
        with other_engine.connect() as connection:
            [(other_id,)] = connection.execute(text("SELECT program_id FROM program_state")).all()
    finally:
        engine.dispose()
        other_engine.dispose()
    [(row_id, revision, program_id)] = rows
    assert (row_id, revision) == (1, 7)
    assert len(program_id) == 32 and len(other_id) == 32 and program_id != other_id
    command.downgrade(config, "0004")
    assert differences(database_url) != []  # the column is gone again
    schema.upgrade(database_url)
