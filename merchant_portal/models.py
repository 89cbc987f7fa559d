"""The portal's tables: merchants, their logins and the bank's, and offers awaiting approval.

An offer is a campaign document (`spec`) that a merchant drafts; it becomes a campaign (a
`CampaignRecord` with source 'portal') only when a bank admin approves it, so a draft,
pending or rejected offer can never give a reward.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from promo_engine.ledger.extensions import db
from promo_engine.ledger.models import BigId, UTCDateTime, utcnow

MERCHANT, ADMIN = "merchant", "admin"
DRAFT, PENDING, APPROVED, REJECTED = "draft", "pending", "approved", "rejected"
OFFER_STATES = (DRAFT, PENDING, APPROVED, REJECTED)


class Merchant(db.Model):
    __tablename__ = "merchants"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # as in payment events
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class PortalLogin(db.Model):
    """A person who signs in to the portal: a merchant's login or a bank admin."""
    __tablename__ = "portal_logins"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)  # stored lower-case
    password_hash: Mapped[str] = mapped_column(String(255))  # Argon2id, PHC string
    role: Mapped[str] = mapped_column(String(16))  # merchant | admin
    merchant_id: Mapped[str | None] = mapped_column(ForeignKey("merchants.id"), nullable=True,
                                                    index=True)
    # Bumped at logout: a session cookie carrying an older epoch is no longer signed in.
    session_epoch: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN

    @property
    def actor(self) -> str:
        return f"portal:{self.email}"


class MerchantOffer(db.Model):
    """A merchant's offer: the campaign document and where it stands in approval.

    `spec["id"]` is the campaign id it will have (m-<merchant>-<offer id>); `campaign_id` is
    set once approved. Editing leaves the offer a draft again, while the approved campaign
    keeps running its approved version until the new one is approved."""
    __tablename__ = "merchant_offers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), index=True)
    spec: Mapped[dict] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), default=DRAFT, index=True)
    rejection_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    campaign_id: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(254), nullable=True)

    @property
    def name(self) -> str:
        return self.spec.get("name") or self.spec.get("id", "")

    @property
    def type(self) -> str:
        return self.spec.get("type", "")
