#!/usr/bin/env python
"""The floor for a durable write over HTTP: what `bench/load.py` compares POST /v1/events with.

A Flask app with one endpoint, `POST /bare/events`, that does the least a durable event
write can do on the same stack: parse the JSON body, INSERT one row (the event id, the user
id and the raw body) through a flask-sqlalchemy session and COMMIT it, answer 201 with a
small JSON body. Nothing else: no signature check, no validation beyond "a JSON object
with a string event_id", no campaign, no idempotency read. `GET /healthz` answers 200.

It runs on exactly the server of `promo-engine serve`: the same gunicorn options (gthread
worker class, threads per worker, keep-alive, timeouts), the same master (`PromoArbiter`),
the same command line (`--workers`, `--threads`, `--host`, `--port`). Rather than copy
those settings, `serve` below runs `promo-engine serve`'s own command with the application
swapped for this one (and without its schema migration and scheduler), so a change to the
server's configuration moves the floor with it. The database engine gets the same options
as the app's (`promo_engine.ledger.database.engine_options`, e.g. the PostgreSQL pool).

    DATABASE_URL=postgresql://postgres@127.0.0.1/db SECRET_KEY=... \\
        .venv/bin/python bench/bare_app.py init                  # creates the table
    DATABASE_URL=... SECRET_KEY=... .venv/bin/python bench/bare_app.py serve --workers 2 --port 8100

The table is `bench_bare_events`; `init` creates it (load.py does so in its own database).
"""
from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # runnable as `python bench/bare_app.py` from anywhere
    sys.path.insert(0, str(ROOT))

from flask import Flask, jsonify, request  # noqa: E402
from flask_sqlalchemy import SQLAlchemy  # noqa: E402
from sqlalchemy import (BigInteger, Column, DateTime, Identity, MetaData, String,  # noqa: E402
                        Table, Text, create_engine, insert)
from sqlalchemy.exc import IntegrityError  # noqa: E402

from promo_engine.config import MAX_BODY_BYTES  # noqa: E402
from promo_engine.ledger.database import configure_engine, engine_options  # noqa: E402

PATH = "/bare/events"
TABLE = "bench_bare_events"

metadata = MetaData()
bare_events = Table(
    TABLE, metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("user_id", String(64), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
# Built once with bound parameters: the floor does not rebuild its statement per request.
INSERT = insert(bare_events).returning(bare_events.c.id)

db = SQLAlchemy(metadata=metadata)


def create_app(database_url: str) -> Flask:
    app = Flask(__name__)
    app.config.update(SQLALCHEMY_DATABASE_URI=database_url,
                      SQLALCHEMY_ENGINE_OPTIONS=engine_options(database_url),
                      MAX_CONTENT_LENGTH=MAX_BODY_BYTES)
    db.init_app(app)
    with app.app_context():
        configure_engine(db.engine)

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    @app.post(PATH)
    def record():
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("event_id"), str):
            return jsonify(error={"code": "validation_error",
                                  "message": "a JSON object with a string event_id"}), 422
        try:
            row_id = write(body, request.get_data(as_text=True))
        except IntegrityError:  # the event id was used before
            return jsonify(error={"code": "idempotency_conflict",
                                  "message": "event_id already recorded"}), 409
        return jsonify(event_id=body["event_id"], id=row_id), 201

    return app


def write(body: dict, raw: str) -> int:
    """The floor's durable write (in an app context): one INSERT committed through the
    session; the row's id. Also what bench/record.py measures in-process."""
    try:
        row_id = db.session.execute(INSERT, {
            "event_id": body["event_id"], "user_id": str(body.get("user_id", "")),
            "body": raw, "created_at": datetime.now(timezone.utc),
        }).scalar_one()
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise
    return row_id


def init_schema(database_url: str) -> None:
    """Create the table (idempotent); run once before the workers start. `database_url` as
    `Settings` gives it (postgresql:// already made postgresql+psycopg://)."""
    engine = create_engine(database_url)
    try:
        metadata.create_all(engine)
    finally:
        engine.dispose()


def serve(argv: list[str]) -> None:
    """`promo-engine serve ARGS` with this app in place of promo-engine's."""
    from promo_engine.cli import serve as serve_module

    class BareServer(serve_module.PromoServer):
        def load(self):
            return create_app(self.settings.database_url)

    serve_module.PromoServer = BareServer
    # No schema migration of the promo tables: the bare table is made by `init`.
    serve_module.upgrade_or_exit = lambda url: SimpleNamespace(changed=False)
    serve_module.serve_command.main(args=[*argv, "--no-scheduler"], prog_name="bare_app.py serve")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["init"]:
        from promo_engine.config import Settings
        init_schema(Settings.from_env().database_url)
    elif argv[:1] == ["serve"]:
        serve(argv[1:])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
