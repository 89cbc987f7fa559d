"""Alembic environment: the URL or an open connection comes from `config.attributes`.

`promo_engine.ledger.schema` builds the configuration in code (there is no alembic.ini), so
migrations run the same from the CLI, `serve`, and the tests.
"""
from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from promo_engine.ledger.models import UTCDateTime
from promo_engine.ledger.schema import target_metadata

config = context.config
metadata = target_metadata()


def render_item(type_, obj, autogen_context):
    # Migrations describe the column as stored; the UTC handling is the model's business.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def skip_empty_revision(migration_context, revision, directives) -> None:
    # `promo-engine db revision` with no model changes writes nothing.
    if config.attributes.get("skip_empty_revision") and directives[0].upgrade_ops.is_empty():
        directives[:] = []


def _configure(**kwargs) -> None:
    context.configure(target_metadata=metadata, compare_type=True, render_item=render_item,
                      process_revision_directives=skip_empty_revision, **kwargs)


def run_migrations_offline() -> None:
    url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
    _configure(url=url, literal_binds=True, render_as_batch=url.startswith("sqlite"),
               dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def _run_on(connection) -> None:
    # SQLite cannot ALTER most things: batch mode copies the table instead.
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_on(connection)
        return
    engine = create_engine(config.attributes["database_url"], poolclass=pool.NullPool)
    try:
        with engine.begin() as connection:
            _run_on(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
