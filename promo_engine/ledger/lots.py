"""Points as lots: what a user's points are made of, so that they are spent, reversed and
expired exactly, and the balance can always be derived from the ledger.

Every reward of positive points is a lot. A lot is pending until its `available_at`, then
available until its `expires_at` (never, without expiry). Each change of a lot after it was
made is a move (`points_lot_moves`) tied to the rewards row that made it, so a spend knows
the lots it drew from and its cancel or refund returns the points there; a refund takes a
reward's points back from its own lot first.

The user's row keeps the sums (`points_balance`: available, `pending_points`) in step with
the lots, under the user's lock, which every function here expects its caller to hold.

A balance goes negative only when a refund takes back points that were already spent (a
debt); the next points that become available pay it back first (`debt_paid`), so a user
with a debt has no available points in any lot.
"""
from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, cast, func, or_, select

from promo_engine.ledger.models import (EXPIRED, PointsLot, PointsLotMove, RewardRecord,
                                        UserRecord)
from promo_engine.ledger.reward_ids import new_reward_id
from promo_engine.ledger.webhook_outbox import announce, expired_message


@dataclass(frozen=True)
class LotPolicy:
    """When points become available and when they expire (PROMO_POINTS_PENDING_DAYS,
    PROMO_POINTS_EXPIRE_MONTHS, in PROMO_TIMEZONE)."""
    pending_days: int = 0
    expire_months: int = 0
    timezone: str = "Asia/Shanghai"

    @classmethod
    def from_settings(cls, settings) -> "LotPolicy":
        return cls(settings.points_pending_days, settings.points_expire_months,
                   settings.timezone)

    def available_at(self, event_type: str, occurred_at: datetime, now: datetime) -> datetime:
        """A payment's points wait `pending_days` after the payment; any other points are
        available when recorded."""
        if self.pending_days and event_type == "payment":
            return max(occurred_at + timedelta(days=self.pending_days), now)
        return now

    def expires_at(self, occurred_at: datetime) -> datetime | None:
        """Local midnight at the start of the day `expire_months` calendar months after the
        event's local date (a day past the end of the month is that month's last day)."""
        if not self.expire_months:
            return None
        zone = ZoneInfo(self.timezone)
        local_day = occurred_at.astimezone(zone).date()
        return start_of_day(add_months(local_day, self.expire_months), zone)


def add_months(day: date, months: int) -> date:
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def start_of_day(day: date, zone: ZoneInfo) -> datetime:
    """The first instant of `day` in `zone`, as aware UTC. Where a clock change skips
    midnight, the day starts at the first local time that exists (zoneinfo gives the skipped
    midnight the offset before the change, which is that instant)."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(ZoneInfo("UTC"))


def new_lots(rewards: list[dict], policy: LotPolicy, *, event_type: str,
             occurred_at: datetime, now: datetime, balance: int,
             pending: int) -> tuple[list[dict], int, int]:
    """The lot of each positive points reward among `rewards` (rows keyed by reward_id),
    and the user's balance and pending points after them. A negative balance is paid
    back first from what becomes available at once."""
    lots = []
    available_at = policy.available_at(event_type, occurred_at, now)
    is_pending = available_at > now
    expires_at = policy.expires_at(occurred_at) if rewards else None
    for row in rewards:
        points = row["points"]
        if row["kind"] != "points" or points is None or points <= 0:
            continue
        paid = 0
        if is_pending:
            pending += points
        else:
            paid = min(points, max(0, -balance))
            balance += points
        lots.append({"reward_id": row["reward_id"], "user_id": row["user_id"],
                     "points": points, "remaining": points - paid, "debt_paid": paid,
                     "available_at": available_at, "pending": is_pending,
                     "expires_at": expires_at})
    return lots, balance, pending


# -- changes of a locked user's lots, in the session's transaction ---------------------

def db_sum(column):
    """SUM as an integer: PostgreSQL's SUM of BIGINT is NUMERIC (a Decimal in Python), which
    would leak into balances and points rows and make the response unserialisable."""
    return cast(func.coalesce(func.sum(column), 0), BigInteger)


def _debt(user: UserRecord) -> int:
    return max(0, -user.points_balance)


def _move(session, lot: PointsLot, entry: RewardRecord | int, points: int) -> None:
    """`entry`: the rewards row that moves the points, or its primary key."""
    lot.remaining += points
    session.add(PointsLotMove(lot_pk=lot.reward_pk, points=points,
                              entry_pk=entry if isinstance(entry, int) else entry.id))


def _spendable(session, user_id: str, now: datetime, *, exclude: int | None = None):
    """The user's available lots with points left, in spending order: soonest expiry
    first (never-expiring last), then the oldest; locked."""
    query = (select(PointsLot)
             .where(PointsLot.user_id == user_id, PointsLot.remaining > 0,
                    PointsLot.pending.is_(False),
                    or_(PointsLot.expires_at.is_(None), PointsLot.expires_at > now))
             .order_by(PointsLot.expires_at.is_(None), PointsLot.expires_at,
                       PointsLot.reward_pk)
             .with_for_update())
    if exclude is not None:
        query = query.where(PointsLot.reward_pk != exclude)
    return session.execute(query).scalars()


def mature(session, user: UserRecord, now: datetime) -> int:
    """Make the user's pending lots whose time has come available; the points matured."""
    lots = session.execute(
        select(PointsLot).where(PointsLot.user_id == user.user_id, PointsLot.pending.is_(True),
                                PointsLot.available_at <= now)
        .order_by(PointsLot.available_at, PointsLot.reward_pk).with_for_update()).scalars().all()
    matured = 0
    for lot in lots:
        paid = min(lot.remaining, _debt(user))
        lot.remaining -= paid
        lot.debt_paid += paid
        lot.pending = False
        user.pending_points -= lot.remaining + paid
        user.points_balance += lot.remaining + paid
        matured += lot.remaining + paid
    return matured


def expire(session, user: UserRecord, now: datetime) -> int:
    """Write the expiry of the user's lots that are due (the scheduler does the same for
    every user in batches, `lot_expiry.py`; whichever comes first writes it, once)."""
    lots = session.execute(
        select(PointsLot).where(PointsLot.user_id == user.user_id, PointsLot.remaining > 0,
                                PointsLot.expires_at <= now)
        .order_by(PointsLot.expires_at, PointsLot.reward_pk).with_for_update()).scalars().all()
    expired, entries = 0, []
    for lot in lots:
        entry = RewardRecord(reward_id=new_reward_id(), event_pk=None, user_id=user.user_id,
                             campaign_id=None, kind="points", points=-lot.remaining,
                             reason=EXPIRED, created_at=now)
        session.add(entry)
        session.flush()
        if lot.pending:
            user.pending_points -= lot.remaining
        else:
            user.points_balance -= lot.remaining
        expired += lot.remaining
        entries.append(entry.reward_id)
        _move(session, lot, entry, -lot.remaining)
    if expired:
        announce(session, [expired_message(user.user_id, expired, entries, now)], now)
    return expired


def catch_up(session, user: UserRecord, now: datetime) -> None:
    """Mature, then expire, what is due at `now`, as the sweep and every event do (in the
    order it happens: a lot becomes available before it expires), so an event of the user
    (a refund, a cancel) sees the points as they are at its instant even before the sweep
    ran: a refund must take points that came due before it makes a debt, and
    points_balance must count them."""
    mature(session, user, now)
    expire(session, user, now)
    session.flush()


def draw(session, user_id: str, points: int, entry: RewardRecord | int,
         now: datetime) -> None:
    """Draw `points` from the user's available lots in spending order, recorded as moves of
    `entry` (the spent row); the caller changes the balance. It has checked the balance
    after `mature` and `expire`: with no debt, the available lots hold exactly the balance."""
    left = points
    for lot in _spendable(session, user_id, now):
        taken = min(left, lot.remaining)
        _move(session, lot, entry, -taken)
        left -= taken
        if not left:
            break
    if left:  # the balance said there were enough: the lots disagree with the user's row
        raise AssertionError(f"user {user_id}: lots hold {points - left} of the "
                             f"{points} points the balance allows")


def _expired_from(session, lot: PointsLot) -> list[tuple[RewardRecord, int]]:
    """The expiry entries of a lot, with what each took and has not been handed back."""
    rows = session.execute(
        select(RewardRecord, PointsLotMove.points)
        .join(PointsLotMove, PointsLotMove.entry_pk == RewardRecord.id)
        .where(PointsLotMove.lot_pk == lot.reward_pk, RewardRecord.reason == EXPIRED)
        .order_by(RewardRecord.id.desc())).all()
    result = []
    for entry, taken in rows:
        back = session.execute(
            select(db_sum(RewardRecord.points)).where(RewardRecord.reverses_id == entry.id)
        ).scalar_one()
        if -taken - back > 0:
            result.append((entry, -taken - back))
    return result


def take_back(session, user: UserRecord, lot: PointsLot, points: int, entry: RewardRecord,
              now: datetime, *, make_entry) -> None:
    """A refund reverses `points` of the lot's reward (`entry`, the reversal row).

    They come from what is left of the lot first, pending or not; then from what of it
    expired (those points already left the balance: a returned row hands them back to be
    reversed, so the balance does not lose them twice); the rest was spent, and comes from
    the user's other available points, or else makes the balance negative."""
    taken = min(points, lot.remaining)
    if taken:
        if lot.pending:
            user.pending_points -= taken
        else:
            user.points_balance -= taken
        _move(session, lot, entry, -taken)
    left = points - taken
    if left:
        for expiry, unreturned in _expired_from(session, lot):
            back = min(left, unreturned)
            returned = make_entry(points=back, reverses_id=expiry.id)
            _move(session, lot, returned, back)
            _move(session, lot, entry, -back)
            left -= back
            if not left:
                break
    for other in (_spendable(session, user.user_id, now, exclude=lot.reward_pk)
                  if left and user.points_balance > 0 else ()):
        drawn = min(left, other.remaining)
        _move(session, other, entry, -drawn)
        user.points_balance -= drawn
        left -= drawn
        if not left:
            break
    user.points_balance -= left  # a debt: points spent that are no longer earned


def give_back(session, user: UserRecord, spent: RewardRecord, points: int,
              entry: RewardRecord) -> None:
    """Return `points` of the spend `spent` to the lots it drew from (the last drawn first,
    those that live longest), as moves of `entry` (the returned row). A lot past its expiry
    gets them too; the scheduler expires them again. A debt is paid from them first."""
    moves = session.execute(
        select(PointsLotMove.lot_pk, PointsLotMove.points)
        .where(PointsLotMove.entry_pk == spent.id).order_by(PointsLotMove.id.desc())).all()
    returned = dict(session.execute(
        select(PointsLotMove.lot_pk, db_sum(PointsLotMove.points))
        .join(RewardRecord, RewardRecord.id == PointsLotMove.entry_pk)
        .where(RewardRecord.reverses_id == spent.id)
        .group_by(PointsLotMove.lot_pk)).all())
    left = points
    for lot_pk, drawn in moves:
        room = -drawn - int(returned.get(lot_pk, 0))
        back = min(left, room)
        if back <= 0:
            continue
        lot = session.execute(select(PointsLot).where(PointsLot.reward_pk == lot_pk)
                              .with_for_update()).scalar_one()
        paid = min(back, _debt(user))
        _move(session, lot, entry, back)
        lot.remaining -= paid
        lot.debt_paid += paid
        user.points_balance += back
        left -= back
        if not left:
            break
    if left:
        raise AssertionError(f"spend {spent.reward_id}: {left} points have no lot to go back to")


def lot_of(session, reward: RewardRecord) -> PointsLot | None:
    return session.execute(select(PointsLot).where(PointsLot.reward_pk == reward.id)
                           .with_for_update()).scalar_one_or_none()

