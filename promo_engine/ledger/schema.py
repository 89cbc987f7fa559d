"""Creating and migrating the database schema with Alembic (scripts in `migrations/`).

There is no alembic.ini: the configuration is built here, so the CLI, `serve` and the
tests all migrate the same way. `upgrade` is safe to call on an up-to-date database, and
on PostgreSQL concurrent callers queue on an advisory lock instead of racing.
"""
from __future__ import annotations

import importlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, create_engine, pool, text
from sqlalchemy.engine import Connection, make_url

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# Every module that defines tables; a new one must be listed for migrations to see it.
MODEL_MODULES = (
    "promo_engine.ledger.models",
    "promo_engine.ledger.risk_models",
    "promo_engine.ledger.api_clients",
    "merchant_portal.models",
)

# pg_advisory_xact_lock key: the bytes "promomig" as a signed 64-bit integer.
_PG_LOCK_KEY = int.from_bytes(b"promomig", "big", signed=True)


@dataclass(frozen=True)
class UpgradeResult:
    before: str | None  # None: the database had no schema
    after: str | None

    @property
    def changed(self) -> bool:
        return self.before != self.after


def target_metadata() -> MetaData:
    for name in MODEL_MODULES:
        importlib.import_module(name)
    from promo_engine.ledger.extensions import db
    return db.metadata


def alembic_config(database_url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    config.set_main_option("truncate_slug_length", "40")
    config.attributes["database_url"] = database_url
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(database_url: str) -> str | None:
    engine = create_engine(database_url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def upgrade(database_url: str) -> UpgradeResult:
    """Bring the database to the newest revision; a no-op when it is already there."""
    config = alembic_config(database_url)
    engine = create_engine(database_url, poolclass=pool.NullPool)
    try:
        with engine.begin() as connection:
            _lock(connection)
            before = MigrationContext.configure(connection).get_current_revision()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            after = MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
    return UpgradeResult(before, after)


def new_revision(message: str, database_url: str | None = None) -> Path | None:
    """Autogenerate a revision from the models' changes since head; returns its file,
    or None when the models match the newest revision (nothing is written then).

    The models are compared with a database at head: a temporary SQLite one unless
    `database_url` is given. Review the generated file before committing it.
    """
    config = alembic_config(database_url)
    rev_id = f"{len(list(ScriptDirectory.from_config(config).walk_revisions())) + 1:04d}"
    with tempfile.TemporaryDirectory(prefix="promo-revision-") as scratch:
        url = database_url or f"sqlite:///{Path(scratch) / 'head.db'}"
        upgrade(url)
        engine = create_engine(url, poolclass=pool.NullPool)
        try:
            with engine.begin() as connection:
                config.attributes["connection"] = connection
                config.attributes["skip_empty_revision"] = True
                script = command.revision(config, message=message, autogenerate=True,
                                          rev_id=rev_id)
        finally:
            engine.dispose()
    scripts = [s for s in (script if isinstance(script, list) else [script]) if s is not None]
    return Path(scripts[0].path) if scripts else None


def describe_url(database_url: str) -> str:
    """The URL with any password hidden, for messages."""
    return make_url(database_url).render_as_string(hide_password=True)


def _lock(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
