"""When a Redis prefix's budget counters may begin: at once for a new deployment, after the
settle period for one whose Redis lost its data.

Redis alone cannot tell the two apart (neither has any key); the database can. A prefix is
new when this database has never begun counting under it and its ledger holds no event:
then no transaction anywhere can hold a reservation under it, and its counters are the
ledger's, all zero. Anything else (a prefix recorded here, or events recorded before the
prefix was, as after an upgrade or a change of PROMO_REDIS_PREFIX) is treated as a data
loss, and waits until every reservation made before it has passed its deadline
(`Reservations.settle_ms`: the reservation TTL plus the clock grace).

The judgement and the epoch it sets are made under the program-state row lock, and the
prefix is recorded in the same transaction: a second process judging at the same moment
waits for the first, then finds the epoch set.
"""
from __future__ import annotations

import logging

from sqlalchemy import select

from promo_engine.ledger.database import run_in_transaction
from promo_engine.ledger.extensions import db
from promo_engine.ledger.models import EventRecord, RedisCounterPrefix, utcnow
from promo_engine.ledger.program_state import lock_program_state

log = logging.getLogger(__name__)


def judge_epoch(reservations) -> None:
    """`Reservations`' epoch judge: begin the prefix's epoch, settled now if it is new.
    Runs a transaction of its own: call it outside any other."""
    started: list[str] = []

    def begin() -> bool:
        started.clear()
        lock_program_state(db.session)
        known = db.session.get(RedisCounterPrefix, reservations.prefix) is not None
        new = not known and db.session.execute(select(EventRecord.id).limit(1)).first() is None
        value = reservations.start_epoch(0 if new else reservations.settle_ms)
        if value is not None:
            started.append(value)
        if not known:
            db.session.add(RedisCounterPrefix(prefix=reservations.prefix, first_used_at=utcnow()))
            db.session.flush()
        return new

    try:
        new = run_in_transaction(db.session, begin)
    except BaseException:
        # The record of the prefix did not commit, so the epoch set for it must not stay:
        # a later data loss would be taken for a new prefix.
        for value in started:
            reservations.undo_epoch(value)
        raise
    if started and new:
        log.info("Redis prefix %s is new: budget counters begin now", reservations.prefix)
    elif started:
        log.warning("Redis prefix %s has lost its data: budget counters begin in %d ms, once "
                    "every reservation made before has passed its deadline",
                    reservations.prefix, reservations.settle_ms)
