"""Engine options per backend, and running a write transaction with retries.

SQLite: write transactions (those run by `run_in_transaction`) start with BEGIN IMMEDIATE,
so concurrent writers (threads or processes) queue on the database lock instead of
failing mid-transaction; every other transaction is a deferred BEGIN, a WAL reader that
never takes the write lock, so a read left open can never stall a writer. PostgreSQL: READ COMMITTED with row locks and
guarded updates; a deadlock or serialization failure is retried as a whole.
"""
from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
from typing import Callable, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

log = logging.getLogger(__name__)
T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_MS = 30_000
RETRYABLE_PG_CODES = {"40001", "40P01"}  # serialization failure, deadlock detected

# Set while `run_in_transaction` runs its work: SQLite then begins with BEGIN IMMEDIATE.
_WRITING: contextvars.ContextVar[bool] = contextvars.ContextVar("promo_writing", default=False)

# SQLite has one writer at a time. Threads of one process queue for it on a lock here, in
# order, rather than in SQLite's busy handler, which sleeps and retries at growing
# intervals and so gives long tails under load. Other processes still meet the busy handler.
_SQLITE_WRITERS: dict[str, threading.RLock] = {}
_SQLITE_WRITERS_GUARD = threading.Lock()


def _writer_lock(session):
    bind = session.get_bind()
    if bind.dialect.name != "sqlite":
        return contextlib.nullcontext()
    key = str(bind.url)
    with _SQLITE_WRITERS_GUARD:
        return _SQLITE_WRITERS.setdefault(key, threading.RLock())


def engine_options(database_url: str) -> dict:
    if database_url.startswith("sqlite"):
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
                                 "check_same_thread": False}}
    return {"pool_pre_ping": True, "pool_size": 10, "max_overflow": 10}


def configure_engine(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let SQLAlchemy, not pysqlite, decide when transactions begin (so BEGIN IMMEDIATE
        # and SAVEPOINT work), and wait for the lock rather than fail.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE" if _WRITING.get() else "BEGIN")


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, DBAPIError):
        code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        if code in RETRYABLE_PG_CODES:
            return True
        if isinstance(exc, OperationalError) and "database is locked" in str(exc.orig):
            return True
    return False


def run_in_transaction(session, work: Callable[[], T], attempts: int = 5) -> T:
    """Run `work` in a write transaction of its own and commit; on a retryable conflict
    roll back and run it again."""
    current = session() if hasattr(session, "registry") else session  # a scoped_session
    if current.in_transaction():
        # A read the caller began (a lookup, say) ends here, so that the work starts a
        # transaction of its own: on SQLite, one that holds the write lock from its start.
        session.commit()
    token = _WRITING.set(True)
    try:
        with _writer_lock(current):
            return _attempt(session, work, attempts)
    finally:
        _WRITING.reset(token)


def _attempt(session, work: Callable[[], T], attempts: int) -> T:
    for attempt in range(1, attempts + 1):
        try:
            result = work()
            session.commit()
            return result
        except Exception as exc:
            session.rollback()
            if attempt == attempts or not is_retryable(exc):
                raise
            log.info("retrying transaction after %s (attempt %d)", type(exc).__name__, attempt)
            time.sleep(0.01 * attempt)
    raise AssertionError("unreachable")
