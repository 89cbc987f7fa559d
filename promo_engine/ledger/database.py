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
from sqlalchemy.exc import DBAPIError, InvalidatePoolError, OperationalError

log = logging.getLogger(__name__)
T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_MS = 30_000
# A pooled connection checked in this recently is handed out without a ping (as HikariCP's
# alive-bypass window does): under load every checkout would otherwise cost a round trip.
PING_AFTER_IDLE_SECONDS = 1.0
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
    return {"pool_size": 10, "max_overflow": 10}  # pinged when idle: `configure_engine`


def configure_engine(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        _ping_idle_connections(engine)
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


def _ping_idle_connections(engine: Engine) -> None:
    """SQLAlchemy's pre-ping, except for connections used within the last
    PING_AFTER_IDLE_SECONDS. A connection that went idle longer is pinged at checkout, and a
    failed ping replaces every connection of the pool (the server restarted, say), so after
    PostgreSQL comes back the workers reconnect without being restarted. One used a moment
    ago was live a moment ago; if the server died in between, its first statement fails as
    it would have failed just after a ping."""
    dialect = engine.dialect

    @event.listens_for(engine, "connect")
    @event.listens_for(engine, "checkin")
    def _mark_used(_dbapi_connection, record):
        record.info["used_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection, record, _proxy):
        if time.monotonic() - record.info.get("used_at", float("-inf")) < PING_AFTER_IDLE_SECONDS:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as exc:
            if dialect.is_disconnect(exc, dbapi_connection, None):
                raise InvalidatePoolError(str(exc)) from exc
            raise


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, DBAPIError):
        code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        if code in RETRYABLE_PG_CODES:
            return True
        if isinstance(exc, OperationalError) and "database is locked" in str(exc.orig):
            return True
    return False


def end_read(session):
    """End a read the caller began in the session (a lookup, say), so that the write that
    follows starts a transaction of its own (on SQLite, one that holds the write lock from
    its start) and a request holds one connection at a time. Returns the session itself
    (`session` may be a scoped_session)."""
    current = session() if hasattr(session, "registry") else session
    if current.in_transaction():
        session.commit()
    return current


def run_in_transaction(session, work: Callable[[], T], attempts: int = 5) -> T:
    """Run `work` in a write transaction of its own and commit; on a retryable conflict
    roll back and run it again."""
    current = end_read(session)
    token = _WRITING.set(True)
    try:
        with _writer_lock(current):
            return retrying(lambda: _committed(session, work), on_failure=session.rollback,
                            attempts=attempts)
    finally:
        _WRITING.reset(token)


def _committed(session, work: Callable[[], T]) -> T:
    result = work()
    session.commit()
    return result


def retrying(work: Callable[[], T], *, on_failure: Callable[[], object] = lambda: None,
             attempts: int = 5) -> T:
    """Run `work`, a whole transaction; after a retryable conflict (`is_retryable`), call
    `on_failure` (a rollback) and run it again, at most `attempts` times in all."""
    for attempt in range(1, attempts + 1):
        try:
            return work()
        except Exception as exc:
            on_failure()
            if attempt == attempts or not is_retryable(exc):
                raise
            log.info("retrying transaction after %s (attempt %d)", type(exc).__name__, attempt)
            time.sleep(0.01 * attempt)
    raise AssertionError("unreachable")
