"""Tables of the abuse controls: devices and what they were rewarded, the risk policy's
counters, the denylist and its history, rewards held for review, the risk policy in force,
and the record of erasures.

Apart from `models.py` because they serve one idea, keeping reward hunters out, and are
read and written by the ledger under the same locks as a user's counters: a device's rows
under its `devices` row, a user's counters under the user's row.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Date, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from promo_engine.ledger.extensions import db
from promo_engine.ledger.models import BigId, UTCDateTime, utcnow


class DeviceRecord(db.Model):
    """A device an event named: its row is the lock that serialises the device's events,
    as the user's row does the user's, so per-device limits are exact."""
    __tablename__ = "devices"

    device_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class DeviceCampaignUsage(db.Model):
    """A campaign's rewards on a device, not fully refunded (`limits.per_device`)."""
    __tablename__ = "device_campaign_usage"

    campaign_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    uses: Mapped[int] = mapped_column(Integer, default=0)


class DeviceCampaignDailyUsage(db.Model):
    """A campaign's rewards on a device per campaign-local day (`per_device_daily`)."""
    __tablename__ = "device_campaign_daily_usage"

    campaign_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    day: Mapped[datetime] = mapped_column(Date, primary_key=True)
    uses: Mapped[int] = mapped_column(Integer, default=0)


class RiskCounter(db.Model):
    """What the risk policy counts for one user or device in one period of the program's
    timezone: `subject` is "user:ID" or "device:ID", `period` a day ("2026-12-06") or a
    month ("2026-12"). Counted for every event a campaign rewarded, policy or not, so a
    policy applied mid-day sees the whole day."""
    __tablename__ = "risk_counters"

    subject: Mapped[str] = mapped_column(String(140), primary_key=True)
    period: Mapped[str] = mapped_column(String(10), primary_key=True)
    rewarded_events: Mapped[int] = mapped_column(Integer, default=0)
    reward_minor: Mapped[int] = mapped_column(BigInteger, default=0)  # campaign money rewards
    cashback_minor: Mapped[int] = mapped_column(BigInteger, default=0)


class DeviceDayUser(db.Model):
    """A user rewarded on a device on a day of the program's timezone (distinct users per
    device, `device_daily_users`)."""
    __tablename__ = "device_day_users"

    device_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    day: Mapped[datetime] = mapped_column(Date, primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)


class DenylistEntry(db.Model):
    """A user or device that earns no campaign rewards (base points still)."""
    __tablename__ = "denylist"

    kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # user | device
    value: Mapped[str] = mapped_column(String(128), primary_key=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    added_by: Mapped[str] = mapped_column(String(120))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class DenylistChange(db.Model):
    """Every change to the denylist: who added or removed whom, when and why."""
    __tablename__ = "denylist_changes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    action: Mapped[str] = mapped_column(String(8))  # add | remove
    kind: Mapped[str] = mapped_column(String(8))
    value: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(120))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RewardHold(db.Model):
    """A reward the risk policy held for review: `held` until an admin releases it (the
    wallet pays it) or voids it (a reversal row undoes it and its budget goes back)."""
    __tablename__ = "reward_holds"
    __table_args__ = (Index("ix_reward_holds_status_held_at", "status", "held_at"),)

    reward_pk: Mapped[int] = mapped_column(ForeignKey("rewards.id"), primary_key=True,
                                           autoincrement=False)
    status: Mapped[str] = mapped_column(String(8), default="held")  # held|released|voided
    held_at: Mapped[datetime] = mapped_column(UTCDateTime())
    decided_by: Mapped[str | None] = mapped_column(String(120), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")


class RiskPolicyRecord(db.Model):
    """The risk policy in force (one row, id 1), as applied from its YAML document."""
    __tablename__ = "risk_policy"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    spec: Mapped[dict] = mapped_column(JSON)
    spec_hash: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class UserErasure(db.Model):
    """An erasure done (`users erase`): the pseudonym that replaced the user's id, when and
    by whom. The erased id itself is kept nowhere."""
    __tablename__ = "user_erasures"

    pseudonym: Mapped[str] = mapped_column(String(64), primary_key=True)
    erased_at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(120))
