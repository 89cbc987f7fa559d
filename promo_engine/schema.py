"""Creating and migrating the database schema (to be replaced by Alembic migrations)."""
from __future__ import annotations


def upgrade(database_url: str) -> None:
    from sqlalchemy import create_engine

    from . import models  # noqa: F401  (registers the tables)
    from .extensions import db
    engine = create_engine(database_url)
    db.metadata.create_all(engine)
    engine.dispose()
