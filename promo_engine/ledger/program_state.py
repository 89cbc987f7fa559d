"""The program's one row of state (`ProgramState`): made on first use, locked by whatever
changes program-wide state, and the program id that binds a Redis prefix to this database."""
from __future__ import annotations

import secrets

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from promo_engine.ledger.models import ProgramState


def ensure_program_state(session) -> None:
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(insert(ProgramState).values(id=1, campaigns_revision=0, scheduler_fence=0,
                                                program_id=secrets.token_hex(16))
                    .on_conflict_do_nothing(index_elements=["id"]))


def program_id(session) -> str:
    """This program database's id: made by migration 0005 and never changed, or made here
    if the row was lost since (a write: run it in a transaction of its own)."""
    ensure_program_state(session)
    session.execute(update(ProgramState)
                    .where(ProgramState.id == 1, ProgramState.program_id.is_(None))
                    .values(program_id=secrets.token_hex(16)))
    return session.execute(select(ProgramState.program_id).where(ProgramState.id == 1)).scalar_one()


def lock_program_state(session) -> None:
    """Lock the single ProgramState row (creating it if needed). Whatever changes campaigns
    or program-wide state takes it first (applies, schedule transitions, the fence check,
    the judgement of a new Redis prefix), so such transactions queue instead of
    interleaving, and take their locks in the same order."""
    ensure_program_state(session)
    session.execute(select(ProgramState.id).where(ProgramState.id == 1).with_for_update())
