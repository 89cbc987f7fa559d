"""Tables of the ledger of record: campaigns and their usage, users, events, rewards,
points lots and vouchers.

Rewards are append-only: a refund adds reversal rows, it never edits a granted reward.
Money is stored in integer minor units of `currency`.
"""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (JSON, BigInteger, Boolean, Date, DateTime, ForeignKey, Index, Integer,
                        PrimaryKeyConstraint, String, Text, UniqueConstraint, text)
from sqlalchemy.orm import Mapped, mapped_column

from promo_engine.ledger.extensions import db

# SQLite only auto-increments INTEGER PRIMARY KEY; BIGINT elsewhere.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(db.TypeDecorator):
    """Aware datetimes in, aware UTC datetimes out, on SQLite (which keeps no zone) too."""
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class CampaignRecord(db.Model):
    __tablename__ = "campaigns"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    # scheduled | open | paused | closed | retired; only `open` campaigns give rewards
    status: Mapped[str] = mapped_column(String(16), default="scheduled")
    source: Mapped[str] = mapped_column(String(16), default="yaml")  # yaml | portal
    spec: Mapped[dict] = mapped_column(JSON)  # the campaign document, timezone filled in
    spec_hash: Mapped[str] = mapped_column(String(64))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CampaignUsage(db.Model):
    """Shared counters of a campaign, changed only by guarded updates."""
    __tablename__ = "campaign_usage"

    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id"), primary_key=True)
    spent: Mapped[int] = mapped_column(BigInteger, default=0)  # minor units or points
    redemptions: Mapped[int] = mapped_column(Integer, default=0)


class ProgramState(db.Model):
    """One row: a revision bumped by every campaign change, which workers poll."""
    __tablename__ = "program_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaigns_revision: Mapped[int] = mapped_column(BigInteger, default=0)
    # The highest scheduler lease token that has acted: a deposed leader, holding a lower
    # token, finds it higher than its own and may not act (fencing).
    scheduler_fence: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Random, made with the row: the program whose counters a Redis prefix holds (see
    # reservations.py), so that two databases never share one prefix's counters.
    program_id: Mapped[str | None] = mapped_column(String(32))


class RedisCounterPrefix(db.Model):
    """A Redis prefix this database has begun counting budgets under (`counter_epochs.py`):
    only a prefix missing here, with an empty ledger, starts its counters without waiting."""
    __tablename__ = "redis_counter_prefixes"

    prefix: Mapped[str] = mapped_column(String(200), primary_key=True)
    first_used_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CampaignAudit(db.Model):
    """Every status change of a campaign: who, what, when and why. Append-only."""
    __tablename__ = "campaign_audit"
    __table_args__ = (Index("ix_campaign_audit_campaign_id_id", "campaign_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(String(64))
    from_status: Mapped[str | None] = mapped_column(String(16), nullable=True)  # None: created
    to_status: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(120))  # "scheduler", "cli", "portal:<login>"
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class UserRecord(db.Model):
    """Locked (FOR UPDATE) by each event of the user, which serialises that user's events."""
    __tablename__ = "users"

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    activations: Mapped[int] = mapped_column(Integer, default=0)
    payments: Mapped[int] = mapped_column(Integer, default=0)
    # Available points (negative only after a refund took back points already spent) and
    # pending points (lots not yet available): kept with every change of the user's lots.
    points_balance: Mapped[int] = mapped_column(BigInteger, default=0)
    pending_points: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # The latest occurred_at of the user's payments (None: never paid), kept by each
    # payment's write under the user's lock: targeting by inactivity reads it with the
    # counters instead of looking through the user's events.
    last_paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class UserCampaignUsage(db.Model):
    __tablename__ = "user_campaign_usage"
    # Keyed by user first: every event reads all of its user's counters (an index range,
    # not a scan of the table).
    __table_args__ = (PrimaryKeyConstraint("user_id", "campaign_id"),)

    campaign_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(64))
    uses: Mapped[int] = mapped_column(Integer, default=0)


class UserCampaignDailyUsage(db.Model):
    __tablename__ = "user_campaign_daily_usage"
    # Keyed by user, then day: every event reads its user's counters of the days around it.
    __table_args__ = (PrimaryKeyConstraint("user_id", "day", "campaign_id"),)

    campaign_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(64))
    day: Mapped[datetime] = mapped_column(Date)  # campaign-local day
    uses: Mapped[int] = mapped_column(Integer, default=0)


class EventRecord(db.Model):
    """An accepted event and its idempotency record: the stored response is replayed."""
    __tablename__ = "events"
    __table_args__ = (UniqueConstraint("client_id", "event_id"),
                      # A device's events, for the risk view's links and erasure.
                      Index("ix_events_device_id", "device_id",
                            postgresql_where=text("device_id IS NOT NULL"),
                            sqlite_where=text("device_id IS NOT NULL")))

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    client_id: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    merchant_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    amount_minor: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    currency: Mapped[str | None] = mapped_column(String(3), nullable=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    original_event_id: Mapped[int | None] = mapped_column(ForeignKey("events.id"), nullable=True)
    refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0)  # payments only
    # Redemptions only: the cancel event that undid it.
    cancelled_by_pk: Mapped[int | None] = mapped_column(ForeignKey("events.id"), nullable=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    response: Mapped[str] = mapped_column(Text)  # the exact JSON body first returned
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # The user's device as the wallet knows it; purged after PROMO_RETENTION_DAYS.
    device_id: Mapped[str | None] = mapped_column(String(128), nullable=True)


class RewardRecord(db.Model):
    __tablename__ = "rewards"
    __table_args__ = (Index("ix_rewards_user_id_id", "user_id", "id"),
                      Index("ix_rewards_campaign_id_created_at", "campaign_id", "created_at"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    reward_id: Mapped[str] = mapped_column(String(40), unique=True)
    # None only for entries no event caused: points expiring.
    event_pk: Mapped[int | None] = mapped_column(ForeignKey("events.id"), index=True,
                                                 nullable=True)
    user_id: Mapped[str] = mapped_column(String(64))
    campaign_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    kind: Mapped[str] = mapped_column(String(16))
    points: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    amount_minor: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    currency: Mapped[str | None] = mapped_column(String(3), nullable=True)
    voucher_code: Mapped[str | None] = mapped_column(String(32), nullable=True)
    voucher_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    local_day: Mapped[datetime | None] = mapped_column(Date, nullable=True)
    reverses_id: Mapped[int | None] = mapped_column(ForeignKey("rewards.id"), nullable=True,
                                                    index=True)
    # None for what a campaign (or base earning) gives and its reversals; otherwise what
    # the row is instead (the reasons below). Campaign budgets and results count only rows
    # without a reason.
    reason: Mapped[str | None] = mapped_column(String(16), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


# Reasons of rows that are no campaign grant: points spent (a redemption, or points paying
# part of a payment), points returned (a spend reversed by a cancel or refund, or expired
# points handed back to be reversed), points expired, and a voucher's discount on the
# payment that used it (the voucher's grant already counted in its campaign's budget).
SPENT, RETURNED, EXPIRED, VOUCHER_USED = "spent", "returned", "expired", "voucher"


class PointsLot(db.Model):
    """The points of one positive points reward, spent, reversed and expired on their own.

    `remaining` is what is left of the lot; every change of it but the first is a row of
    `points_lot_moves`, so `points - debt_paid + sum(moves) == remaining` always holds and
    a user's balance can be derived from the ledger alone. A pending lot's remaining counts
    in the user's `pending_points` until it matures, then in `points_balance`.
    """
    __tablename__ = "points_lots"
    __table_args__ = (
        # Spending order: soonest expiry first (never-expiring last), then the oldest.
        Index("ix_points_lots_user_spending", "user_id", "expires_at", "reward_pk",
              postgresql_where=text("remaining > 0"), sqlite_where=text("remaining > 0")),
        Index("ix_points_lots_due", "expires_at", "reward_pk",
              postgresql_where=text("remaining > 0 AND expires_at IS NOT NULL"),
              sqlite_where=text("remaining > 0 AND expires_at IS NOT NULL")),
        # A user's pending lots (matured with the user's next event), and every pending
        # lot by the instant it matures (the scheduler's sweep).
        Index("ix_points_lots_user_pending", "user_id", "available_at",
              postgresql_where=text("pending"), sqlite_where=text("pending")),
        Index("ix_points_lots_maturing", "available_at", "reward_pk",
              postgresql_where=text("pending"), sqlite_where=text("pending")),
    )

    reward_pk: Mapped[int] = mapped_column(ForeignKey("rewards.id"), primary_key=True,
                                           autoincrement=False)
    user_id: Mapped[str] = mapped_column(String(64))
    points: Mapped[int] = mapped_column(BigInteger)
    remaining: Mapped[int] = mapped_column(BigInteger)
    # What a negative balance took of the lot when it arrived (points earned after a
    # refund took back spent points first make the balance whole again).
    debt_paid: Mapped[int] = mapped_column(BigInteger, default=0)
    available_at: Mapped[datetime] = mapped_column(UTCDateTime())
    pending: Mapped[bool] = mapped_column(Boolean, default=False)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class PointsLotMove(db.Model):
    """One change of a lot after it was made: points drawn (negative) by a spend, a refund
    or expiry, or given back (positive) by a cancel or a refund of a spend. `entry_pk` is
    the rewards row that moved them."""
    __tablename__ = "points_lot_moves"
    __table_args__ = (Index("ix_points_lot_moves_entry", "entry_pk"),
                      Index("ix_points_lot_moves_lot", "lot_pk"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    lot_pk: Mapped[int] = mapped_column(ForeignKey("points_lots.reward_pk"))
    entry_pk: Mapped[int] = mapped_column(ForeignKey("rewards.id"))
    points: Mapped[int] = mapped_column(BigInteger)


class Voucher(db.Model):
    """A voucher reward's state: single use, owned by its user. The reward row is the
    record of the grant; this row changes when the voucher is used, freed by a full refund
    of the payment that used it, or voided by the cancel of the redemption that gave it."""
    __tablename__ = "vouchers"
    __table_args__ = (Index("ix_vouchers_user_id_issued", "user_id", "reward_pk"),)

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    reward_pk: Mapped[int] = mapped_column(ForeignKey("rewards.id"), unique=True)
    user_id: Mapped[str] = mapped_column(String(64))
    campaign_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    min_amount_minor: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_by_event_pk: Mapped[int | None] = mapped_column(ForeignKey("events.id"), nullable=True,
                                                         index=True)
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class WebhookEndpoint(db.Model):
    """Where webhooks go: a URL, the types it wants (NULL: all) and its signing secret,
    stored only as ciphertext (`webhooks/endpoints.py`). Removing one keeps its row (and its
    deliveries' history) with `removed_at` set."""
    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    event_types: Mapped[str | None] = mapped_column(Text, nullable=True)  # comma-separated
    secret_ciphertext: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    def __repr__(self) -> str:  # never the ciphertext
        return f"<WebhookEndpoint {self.id} {self.url!r}>"


class WebhookDelivery(db.Model):
    """The outbox: one message for one endpoint, written in the transaction of the change it
    reports (`webhook_outbox.py`), then sent and retried by a dispatcher until delivered or
    failed. A dispatcher claims a delivery by moving its `next_attempt_at` past the time a
    send may take, so a dispatcher that dies mid-send leaves it due again, never lost."""
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "next_attempt_at", "id",
              postgresql_where=text("status = 'pending'"),
              sqlite_where=text("status = 'pending'")),
        Index("ix_webhook_deliveries_endpoint", "endpoint_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(40))  # the webhook-id header
    endpoint_id: Mapped[str] = mapped_column(String(40))
    type: Mapped[str] = mapped_column(String(40))
    payload: Mapped[str] = mapped_column(Text)  # the body, sent byte for byte
    status: Mapped[str] = mapped_column(String(12), default="pending")  # pending|delivered|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)  # HTTP status
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class CampaignThreshold(db.Model):
    """A budget threshold a campaign has reached, announced once: the row's primary key
    makes the first transaction to reach it the only one that writes its webhook."""
    __tablename__ = "campaign_thresholds"

    campaign_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    threshold: Mapped[str] = mapped_column(String(4), primary_key=True)  # "0.8" | "1.0"
    measure: Mapped[str] = mapped_column(String(16))  # budget | max_redemptions
    reached_at: Mapped[datetime] = mapped_column(UTCDateTime())
