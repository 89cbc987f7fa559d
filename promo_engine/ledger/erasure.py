"""Erasure of a user's personal data (`promo-engine users erase USER_ID`, docs/privacy.md).

The user's id is replaced, in every row that holds it, by a pseudonym drawn at random
("erased-" and 24 hex digits): not derived from the id, so nothing links the two once the
erasure has committed, while the ledger keeps every reward, points lot, voucher and counter
(so every campaign's sums and the program's totals stay as they were). The device ids of
the user's events are deleted (set NULL). One `user_erasures` row records the pseudonym,
when and by whom; never the id erased.

All in one transaction that first locks the user's row, the lock every event of the user
takes first: an event racing the erasure either commits before it (and is erased with the
rest) or waits for it and then finds no such user (and starts a new one).

Event attributes are not stored (only the ledger's columns are), so there are none to
delete. Redis holds nothing of a user's: campaign counters are campaign-wide, and the
replay cache holds responses, which name the event and its rewards but not the user.
"""
from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import bindparam, func, select, text, update

from promo_engine.ledger.database import run_in_transaction
from promo_engine.ledger.denylist import REMOVE, USER
from promo_engine.ledger.models import UTCDateTime, WebhookDelivery
from promo_engine.ledger.responses import dumps
from promo_engine.ledger.risk_models import DenylistChange, DenylistEntry, UserErasure

PSEUDONYM_PREFIX = "erased-"
ERASED_REASON = "user erased"

# Every column that holds a user id as it is, by table. `users` comes first: its row is the
# user's lock, and its counters move with the new key.
USER_ID_COLUMNS = (
    ("users", "user_id"),
    ("events", "user_id"),
    ("rewards", "user_id"),
    ("user_campaign_usage", "user_id"),
    ("user_campaign_daily_usage", "user_id"),
    ("points_lots", "user_id"),
    ("vouchers", "user_id"),
    ("device_day_users", "user_id"),
)


def new_pseudonym() -> str:
    """Random, not a hash of the id: a hash could be recomputed from a guessed id."""
    return PSEUDONYM_PREFIX + secrets.token_hex(12)


@dataclass
class Erasure:
    """An erasure done: the pseudonym and the rows changed, by table."""
    pseudonym: str
    rows: dict[str, int] = field(default_factory=dict)


class _NothingFound(Exception):
    """No row holds the id: the transaction is rolled back (the lock row included)."""


def erase_user(session, user_id: str, *, actor: str, now: datetime) -> Erasure | None:
    """Replace `user_id` by a new pseudonym everywhere, in one transaction; None when no
    row holds it (an unknown id, or one erased before)."""
    pseudonym = new_pseudonym()

    def work() -> Erasure:
        had_row = _lock_user(session, user_id, now)
        erasure = Erasure(pseudonym)
        rows = erasure.rows
        connection = session.connection()
        params = {"old": user_id, "new": pseudonym}
        # Device ids first, while the events are still found by the id.
        rows["events.device_id"] = connection.execute(text(
            "UPDATE events SET device_id = NULL WHERE user_id = :old "
            "AND device_id IS NOT NULL"), params).rowcount
        for table, column in USER_ID_COLUMNS:
            rows[table] = connection.execute(text(
                f"UPDATE {table} SET {column} = :new WHERE {column} = :old"), params).rowcount
        rows["risk_counters"] = connection.execute(text(
            "UPDATE risk_counters SET subject = :new WHERE subject = :old"),
            {"old": "user:" + user_id, "new": "user:" + pseudonym}).rowcount
        # Free-text notes about this user's own rows may name the user too.
        rows["reward_holds"] = connection.execute(text(
            "UPDATE reward_holds SET note = replace(note, :old, :new) WHERE reward_pk IN "
            "(SELECT id FROM rewards WHERE user_id = :new) AND note LIKE :like ESCAPE '\\'"),
            {**params, "like": _like(user_id)}).rowcount
        rows["denylist"] = _rename_denylist(session, user_id, pseudonym, actor, now)
        rows["webhook_deliveries"] = _rewrite_payloads(session, user_id, pseudonym)
        if not had_row:
            # Made only to hold the lock: a user with no events has no counters to keep.
            connection.execute(text("DELETE FROM users WHERE user_id = :new"), params)
            rows["users"] = 0
        if not any(rows.values()):
            raise _NothingFound
        session.add(UserErasure(pseudonym=pseudonym, erased_at=now, actor=actor))
        session.flush()
        return erasure

    try:
        return run_in_transaction(session, work)
    except _NothingFound:
        return None


def _lock_user(session, user_id: str, now: datetime) -> bool:
    """Lock the user's row as every event of the user does; when there is none, make one
    to lock (an event arriving meanwhile waits on it). Returns whether it was there."""
    connection = session.connection()
    found = connection.execute(text(
        "SELECT user_id FROM users WHERE user_id = :id"
        + (" FOR UPDATE" if connection.dialect.name == "postgresql" else "")),
        {"id": user_id}).first()
    if found is not None:
        return True
    # A conflict means an event made the row since, and committed: the no-op update then
    # locks that row, and it is erased like any other.
    made = connection.execute(text(
        "INSERT INTO users (user_id, activations, payments, points_balance, pending_points, "
        "created_at) VALUES (:id, 0, 0, 0, 0, :now) "
        "ON CONFLICT (user_id) DO UPDATE SET user_id = excluded.user_id WHERE false "
        "RETURNING user_id").bindparams(bindparam("now", type_=UTCDateTime())),
        {"id": user_id, "now": now}).first()
    return made is None


def _rename_denylist(session, user_id: str, pseudonym: str, actor: str, now: datetime) -> int:
    """The user's denylist entry and its history under the pseudonym. An entry is then
    taken off the list (no event can name a pseudonym), with a change row that makes every
    worker read the list again, so no process keeps the erased id in memory."""
    changed = session.execute(
        update(DenylistChange).where(DenylistChange.kind == USER,
                                     DenylistChange.value == user_id)
        .values(value=pseudonym, reason=func.replace(DenylistChange.reason, user_id, pseudonym))
        .execution_options(synchronize_session=False)).rowcount
    entry = session.execute(select(DenylistEntry).where(
        DenylistEntry.kind == USER, DenylistEntry.value == user_id)).scalar_one_or_none()
    if entry is not None:
        session.delete(entry)
        session.add(DenylistChange(action=REMOVE, kind=USER, value=pseudonym,
                                   reason=ERASED_REASON, actor=actor, at=now))
        session.flush()
        changed += 1
    return changed


def _rewrite_payloads(session, user_id: str, pseudonym: str) -> int:
    """Webhook messages about the user (pending ones too, which are then sent under the
    pseudonym): `data.user_id` rewritten, the rest of the body as it was."""
    needle = dumps({"user_id": user_id})[1:-1]  # '"user_id": "ID"', as payloads write it
    changed = 0
    for delivery_id, payload in session.execute(
            select(WebhookDelivery.id, WebhookDelivery.payload)
            .where(WebhookDelivery.payload.like(_like(needle), escape="\\"))).all():
        body = json.loads(payload)
        data = body.get("data")
        if not isinstance(data, dict) or data.get("user_id") != user_id:
            continue
        data["user_id"] = pseudonym
        session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id)
                        .values(payload=dumps(body))
                        .execution_options(synchronize_session=False))
        changed += 1
    return changed


def _like(value: str) -> str:
    """A LIKE pattern finding `value` anywhere, its wildcards escaped (ids may hold "_")."""
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
