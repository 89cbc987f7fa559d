"""An event's savepoint inside a batch's transaction, at no round trip of its own.

`EventBatch` (`batches.py`) records many events in one transaction. Each may go between a
SAVEPOINT and its RELEASE, so that one that fails is rolled back alone; `SavepointConnection`
makes that cost nothing in the usual case, by sending those statements with the event's
own. Or, cheaper still, each may go without one until an event fails after sending a
statement: then the batch is rolled back and applied again with savepoints
(`NeedsSavepoints`, raised by the batch).
"""
from __future__ import annotations

from contextlib import contextmanager

from psycopg import pq

SAVEPOINT = "SAVEPOINT promo_event"
RELEASE = "RELEASE SAVEPOINT promo_event"
ROLLBACK_TO = "ROLLBACK TO SAVEPOINT promo_event"


class SavepointConnection:
    """The batch's psycopg connection as `PostgresEventWrites` uses it, so that an event's
    savepoint costs no round trip of its own: its SAVEPOINT goes with the event's first
    statement (in its pipeline, or before it in one simple query), and its RELEASE, where
    the writes commit, is only noted and goes with the next event's SAVEPOINT (or ends with
    the batch's COMMIT). Only an event that fails costs one: back to its savepoint.

    Without savepoints (`protected` False) statements go as they come, and an event that
    fails after sending one spoils the batch (`spoiled`); one that fails before (refused
    on what the prefetch read, say) leaves nothing to undo."""

    def __init__(self, driver, protected: bool = True):
        self._driver = driver
        self.protected = protected
        self.opening = False  # the event's SAVEPOINT is still to be sent
        self.open = False  # the event's savepoint exists (or is about to)
        self.release_due = False  # the last event's savepoint, released with the next
        self.sent = False  # unprotected: the event has sent a statement
        self.spoiled = False  # unprotected: an event failed after sending a statement

    def __getattr__(self, name):
        return getattr(self._driver, name)

    def begin_event(self) -> None:
        if self.protected:
            self.opening = self.open = True
        else:
            self.sent = False

    def _opening(self) -> list[str]:
        statements = [RELEASE, SAVEPOINT] if self.release_due else [SAVEPOINT]
        self.opening = self.release_due = False
        return statements

    @contextmanager
    def pipeline(self):
        self.sent = True
        with self._driver.pipeline() as pipeline:
            if self.opening:
                for statement in self._opening():
                    self._driver.execute(statement)
            yield pipeline

    def execute(self, *args, **kwargs):
        self.sent = True
        if self.opening and self._driver.pgconn.pipeline_status == pq.PipelineStatus.OFF:
            # The SAVEPOINT with the event's first statement, in one round trip.
            with self._driver.pipeline():
                for statement in self._opening():
                    self._driver.execute(statement)
                return self._driver.execute(*args, **kwargs)
        if self.opening:
            for statement in self._opening():
                self._driver.execute(statement)
        return self._driver.execute(*args, **kwargs)

    def commit(self) -> None:
        """The event's writes are in (PostgresEventWrites commits after them): its
        savepoint is released with the next event's (`end_event`)."""

    def end_event(self, ok: bool) -> None:
        """The event is done: its savepoint to be released (ok), or rolled back to and
        dropped now. Nothing is sent for a savepoint never sent."""
        if not self.protected:
            self.spoiled = self.spoiled or (not ok and self.sent)
            return
        if self.opening:
            self.opening = self.open = False
            return
        if not self.open:
            return
        self.open = False
        if ok:
            self.release_due = True
        else:
            self._driver.execute(f"{ROLLBACK_TO}; {RELEASE}", prepare=False)
