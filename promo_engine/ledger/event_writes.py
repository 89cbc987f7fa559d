"""The two database steps of recording a payment or activation, for each kind of database.

Recording an event takes two steps around the evaluation: first lock the user and read the
counters evaluation needs, then write the event, its rewards and the counters, and commit.
This is the hot path, and on PostgreSQL each statement is a round trip plus SQLAlchemy's
and psycopg's work per statement, which together cost more than the evaluation itself. So:

- `PostgresEventWrites` (`postgres_writes.py`) sends few statements of fixed SQL: the
  user's row (created if new) and its lock, then its counters and the stored copy of the
  event in one statement; the event, rewards, lots, vouchers, counters and user in one
  data-modifying statement, then COMMIT. Fixed SQL (arrays for the rows), so psycopg
  prepares it once per connection.
- `SqlEventWrites` does the same with SQLAlchemy Core statements built once per dialect
  (SQLite, and any database without the pipeline), one statement per table.

Both take the same locks in the same order and write the same rows: the suite runs the
whole contract against each. An event that names a device also locks the device's row after
the user's and reads its uses; where a risk policy is in force the risk counters are read
too; a rewarded event adds to both (`abuse_counts.py`). An event with neither device nor
policy reads nothing more; a rewarded one writes its counts in the same round trip.
"""
from __future__ import annotations

from datetime import datetime, timezone, tzinfo

from sqlalchemy import (Date, and_, bindparam, case, insert, null, or_, select, type_coerce,
                        union_all, update)
from sqlalchemy.dialects import postgresql, sqlite

from promo_engine.core.campaign_type import UserState
from promo_engine.core.event import CANCEL, REDEMPTION, REFUND
from promo_engine.ledger import abuse_counts
from promo_engine.ledger import lots as points_lots
from promo_engine.ledger.database import run_in_transaction
from promo_engine.ledger.denylist import directory as denylist
from promo_engine.ledger.event_rows import (AlreadyRecorded, EventRows,
                                            StoredEvent, day_range, use_counts,
                                            uses_from_rows)
from promo_engine.ledger.models import (CampaignUsage, EventRecord, PointsLot,
                                        RewardRecord, UserCampaignDailyUsage,
                                        UserCampaignUsage, UserRecord, UTCDateTime, Voucher,
                                        WebhookDelivery)
from promo_engine.ledger.postgres_writes import PostgresEventWrites
from promo_engine.ledger.webhook_outbox import (announce_thresholds, announced_thresholds,
                                                event_delivery_rows, thresholds_reached,
                                                used_up)

SESSION_EVENT_TYPES = frozenset({REFUND, REDEMPTION, CANCEL})


# -- SQLAlchemy Core: SQLite (and any other dialect) ----------------------------------

_users = UserRecord.__table__
_events = EventRecord.__table__
_rewards = RewardRecord.__table__
_uses = UserCampaignUsage.__table__
_daily_uses = UserCampaignDailyUsage.__table__
_campaign_usage = CampaignUsage.__table__
_lots = PointsLot.__table__
_vouchers = Voucher.__table__
_deliveries = WebhookDelivery.__table__


class _CoreStatements:
    """Built once per dialect, with bound parameters: building a statement, and the ORM's
    handling of it, cost more than the round trip itself."""

    def __init__(self, dialect: str):
        insert_for = postgresql.insert if dialect == "postgresql" else sqlite.insert
        # A no-op ON CONFLICT DO UPDATE locks an existing row as FOR UPDATE would.
        self.lock_user = (
            insert_for(_users).values(user_id=bindparam("user_id"), activations=0, payments=0,
                                      points_balance=0, created_at=bindparam("now"))
            .on_conflict_do_update(index_elements=["user_id"], set_={"user_id": _users.c.user_id})
            .returning(_users.c.activations, _users.c.payments, _users.c.points_balance,
                       _users.c.pending_points, _users.c.last_paid_at))
        self.campaign_uses = union_all(
            select(_uses.c.campaign_id, type_coerce(null(), Date).label("day"), _uses.c.uses)
            .where(_uses.c.user_id == bindparam("user_id")),
            select(_daily_uses.c.campaign_id, _daily_uses.c.day, _daily_uses.c.uses)
            .where(_daily_uses.c.user_id == bindparam("user_id"),
                   _daily_uses.c.day.between(bindparam("first_day", type_=Date),
                                             bindparam("last_day", type_=Date))))
        self.insert_event = (
            insert_for(_events).on_conflict_do_nothing(index_elements=["client_id", "event_id"])
            .returning(_events.c.id))
        self.insert_rewards = insert(_rewards).returning(_rewards.c.id, _rewards.c.reward_id,
                                                         sort_by_parameter_order=True)
        self.insert_lots = insert(_lots)
        self.insert_vouchers = insert(_vouchers)
        uses = insert_for(_uses)
        self.count_use = uses.on_conflict_do_update(
            index_elements=["campaign_id", "user_id"], set_={"uses": _uses.c.uses + uses.excluded.uses})
        daily = insert_for(_daily_uses)
        self.count_daily_use = daily.on_conflict_do_update(
            index_elements=["campaign_id", "user_id", "day"],
            set_={"uses": _daily_uses.c.uses + daily.excluded.uses})
        paid, paid_at = bindparam("paid"), bindparam("paid_at", type_=UTCDateTime())
        last_paid_at = _users.c.last_paid_at
        self.update_user = (
            update(_users).where(_users.c.user_id == bindparam("user_id_"))
            .values(activations=_users.c.activations + bindparam("activated"),
                    payments=_users.c.payments + paid,
                    points_balance=bindparam("balance"),
                    pending_points=bindparam("pending"),
                    # A payment keeps the latest occurred_at: one recorded late (an earlier
                    # occurred_at) leaves a later last payment as it is.
                    last_paid_at=case(
                        (and_(paid > 0, or_(last_paid_at.is_(None), last_paid_at < paid_at)),
                         paid_at), else_=last_paid_at)))


_CORE_STATEMENTS: dict[str, _CoreStatements] = {}


def _core_statements(dialect: str) -> _CoreStatements:
    statements = _CORE_STATEMENTS.get(dialect)
    if statements is None:
        statements = _CORE_STATEMENTS[dialect] = _CoreStatements(dialect)
    return statements


def read_campaign_uses(session, user_id: str, occurred_at: datetime) -> tuple[dict, dict]:
    """The user's uses of each campaign, ever and per local day around the event, as
    committed now (no lock: quotes)."""
    first_day, last_day = day_range(occurred_at)
    rows = session.connection().execute(
        _core_statements(session.get_bind().dialect.name).campaign_uses,
        {"user_id": user_id, "first_day": first_day, "last_day": last_day}).all()
    return uses_from_rows(rows)


_STORED_EVENT = select(_events.c.request_hash, _events.c.response).where(
    _events.c.client_id == bindparam("client_id"), _events.c.event_id == bindparam("event_id"))


class SqlEventWrites:
    """One SQLAlchemy Core statement per table, in the session's transaction, which
    `run_in_transaction` commits."""

    finds_stored_event = False  # the caller looks the event up itself
    commit_in_doubt = False  # the caller commits, after these writes
    reserved_ahead = None  # the event evaluated before its turn (a batch's); never here

    def __init__(self, session):
        self.session = session
        self.statements = _core_statements(session.get_bind().dialect.name)
        self.endpoints = ()  # the webhook endpoints to write the event's deliveries for
        self.reached: list = []  # budget thresholds the event's reservations reached

    def run(self, work):
        """`work` in a write transaction of the session, committed, retried on conflicts."""
        return run_in_transaction(self.session, work)

    def find_stored(self, client_id: str, event_id: str) -> StoredEvent | None:
        row = self.session.connection().execute(
            _STORED_EVENT, {"client_id": client_id, "event_id": event_id}).first()
        return StoredEvent(*row) if row is not None else None

    def rollback(self) -> None:
        self.session.rollback()

    def close(self) -> None:
        """The session's transaction ends with `run_in_transaction`."""

    def take_from_campaign(self, campaign_id: str, cost: int, *, budget_limit: int | None,
                           max_redemptions: int | None) -> bool:
        """Budget and one redemption from the campaign's usage row, in one guarded UPDATE
        (never check-then-act); False when they do not fit."""
        usage = _campaign_usage
        conditions = [usage.c.campaign_id == campaign_id]
        if budget_limit is not None:
            conditions.append(usage.c.spent + cost <= budget_limit)
        if max_redemptions is not None:
            conditions.append(usage.c.redemptions + 1 <= max_redemptions)
        after = self.session.connection().execute(
            update(usage).where(*conditions)
            .values(spent=usage.c.spent + cost, redemptions=usage.c.redemptions + 1)
            .returning(usage.c.spent, usage.c.redemptions)).first()
        if after is None:
            self.reached += used_up(self.session.get_bind(), campaign_id, budget_limit,
                                    max_redemptions, lambda: self.session.connection().execute(
                                        select(usage.c.spent, usage.c.redemptions)
                                        .where(usage.c.campaign_id == campaign_id)).one())
            return False
        self.reached += thresholds_reached(campaign_id, after.spent, after.redemptions,
                                           budget_limit, max_redemptions)
        return True

    def lock_user(self, *, user_id: str, occurred_at: datetime, now: datetime,
                  client_id: str, event_id: str, find_stored: bool = False,
                  mature: bool = False, device_id: str | None = None,
                  zone: tzinfo = timezone.utc,
                  with_risk: bool = False) -> tuple[UserState, StoredEvent | None, int]:
        """Create the user's row if new and lock it until commit, in one statement; then
        its pending points that have come due made available, and the counters, read
        after the lock, so the user's last event is always counted. With a `device_id`, the
        device's row is locked next and its uses read; with `with_risk` (a risk policy is in
        force), the risk counters of the event's day in `zone` too. The caller looks for a
        stored copy of the event itself (`finds_stored_event`). Returns the user's state,
        None, and its pending points."""
        connection = self.session.connection()
        # Through the transaction's connection: on SQLite another one would wait for its
        # write lock. Read (every few seconds at most) before the user's lock is taken.
        denied = denylist.denied(connection, user_id, device_id)
        user = connection.execute(self.statements.lock_user,
                                  {"user_id": user_id, "now": now}).one()
        if device_id is not None:
            abuse_counts.lock_device(connection, device_id, now)
        balance, pending = user.points_balance, user.pending_points
        if pending:
            record = self.session.get(UserRecord, user_id, populate_existing=True)
            if points_lots.mature(self.session, record, now):
                self.session.flush()
                balance, pending = record.points_balance, record.pending_points
        uses, daily = read_campaign_uses(self.session, user_id, occurred_at)
        device_uses = device_daily = {}
        risk = None
        if device_id is not None or with_risk:
            device_uses, device_daily, risk = abuse_counts.read_device_and_risk(
                connection, user_id=user_id, device_id=device_id, occurred_at=occurred_at,
                zone=zone, with_risk=with_risk)
        return UserState(user_id=user_id, activations=user.activations, payments=user.payments,
                         points_balance=balance, campaign_uses=uses, daily_uses=daily,
                         last_payment_at=user.last_paid_at, device_uses=device_uses,
                         device_daily_uses=device_daily, denied=denied,
                         risk=risk), None, pending

    def write(self, rows: EventRows) -> tuple[int, dict[str, int]]:
        """The event's primary key, and each reward's by its reward_id."""
        connection, statements = self.session.connection(), self.statements
        event_pk = connection.execute(statements.insert_event, rows.event).scalar()
        if event_pk is None:
            raise AlreadyRecorded()
        pks: dict[str, int] = {}
        if rows.rewards:
            pks = {reward_id: pk for pk, reward_id in connection.execute(
                statements.insert_rewards,
                [dict(row, event_pk=event_pk) for row in rows.rewards]).all()}
            if rows.lots:
                connection.execute(statements.insert_lots, [
                    {key: value for key, value in dict(lot, reward_pk=pks[lot["reward_id"]]).items()
                     if key != "reward_id"} for lot in rows.lots])
            if rows.vouchers:
                connection.execute(statements.insert_vouchers, [
                    {key: value for key, value in dict(voucher, reward_pk=pks[voucher["reward_id"]]).items()
                     if key != "reward_id"} for voucher in rows.vouchers])
        user_id = rows.event["user_id"]
        per_campaign, per_day = use_counts(rows.uses)
        if per_campaign:
            connection.execute(statements.count_use, [
                {"campaign_id": campaign_id, "user_id": user_id, "uses": count}
                for campaign_id, count in per_campaign.items()])
            connection.execute(statements.count_daily_use, [
                {"campaign_id": campaign_id, "user_id": user_id, "day": day, "uses": count}
                for (campaign_id, day), count in per_day.items()])
        connection.execute(statements.update_user, {
            "user_id_": user_id, "activated": rows.activated, "paid": rows.paid,
            "paid_at": rows.event["occurred_at"], "balance": rows.balance,
            "pending": rows.pending})
        if rows.counts is not None or rows.held:
            abuse_counts.write_counts(connection, rows.counts, [
                (pks[reward_id], rows.event["created_at"]) for reward_id in rows.held])
        deliveries = event_delivery_rows(self.endpoints, rows)
        if deliveries:
            connection.execute(insert(_deliveries), deliveries)
        fresh = announced_thresholds.new(self.session.get_bind(), self.reached)
        if fresh:
            announce_thresholds(self.session, fresh, rows.event["created_at"])
        return event_pk, pks


EventWrites = SqlEventWrites | PostgresEventWrites


def needs_session(event) -> bool:
    """Refunds, redemptions, cancels and payments paid partly with points or vouchers read
    and change more than a plain event (lots, vouchers, earlier rewards): rarer, they go
    through the ORM session on every database."""
    return event.type in SESSION_EVENT_TYPES or bool(event.redeem_points or event.vouchers)


def finds_replays_itself(db, event) -> bool:
    """Whether this event's writes find a stored copy of it in a round trip they make
    anyway (PostgreSQL's user lock: `PostgresEventWrites.finds_stored_event`)."""
    return db.engine.dialect.name == "postgresql" and not needs_session(event)


def event_writes_for(db, event) -> EventWrites:
    """The writes for this event on the program's database (`needs_session`)."""
    if finds_replays_itself(db, event):
        return PostgresEventWrites(db.engine, db.session)
    return SqlEventWrites(db.session)
