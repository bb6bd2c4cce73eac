from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Column,
    Enum,
    ForeignKey,
    Index,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.extensions import db
from service.models.sites import Site
from service.types import utcnow

# The sites a subscription covers; none means all sites. A table rather than a JSON list,
# so a subscription can only name sites that exist.
subscription_sites = Table(
    "subscription_sites",
    db.metadata,
    Column("subscription_id", ForeignKey("subscriptions.id", ondelete="CASCADE"), primary_key=True),
    Column("site_id", ForeignKey("sites.id"), primary_key=True),
)


class Subscription(db.Model):
    """An email address that gets situation reports on a cron schedule in a time zone.

    Deleting one (by the API or its unsubscribe link) sets `deleted_at`: no more
    deliveries, and the delivery log stays. A suspended one (its address refused again
    and again) gets no scheduled deliveries until an admin resumes it. `last_checked_at`
    is the dispatcher's watermark: every scheduled moment up to it has been dealt with.
    """

    __tablename__ = "subscriptions"
    __table_args__ = (
        Index("ix_subscriptions_deleted_at", "deleted_at"),
        CheckConstraint("language IN ('en', 'hy', 'ru')", name="language_known"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(254))
    cron: Mapped[str] = mapped_column(String(100))
    timezone: Mapped[str] = mapped_column(String(64))
    # The exports attached to each email: "csv", "hxl".
    formats: Mapped[list[str]] = mapped_column(JSON().with_variant(JSONB(), "postgresql"))
    # The language its emails are written in (service/i18n.py LANGUAGES).
    language: Mapped[str] = mapped_column(String(8), default="en", server_default="en")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id"))
    deleted_at: Mapped[datetime | None]
    last_checked_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Permanent refusals (SMTP 5xx) in a row; a sent email sets it back to 0. At
    # SUBSCRIPTION_SUSPEND_AFTER the subscription is suspended: no scheduled deliveries
    # until an admin resumes it.
    permanent_failures: Mapped[int] = mapped_column(default=0)
    suspended_at: Mapped[datetime | None]
    suspended_reason: Mapped[str | None] = mapped_column(Text)

    sites: Mapped[list[Site]] = relationship(
        secondary=subscription_sites, lazy="selectin", order_by=Site.id
    )

    @property
    def site_ids(self) -> list[str]:
        return [site.id for site in self.sites]


class DeliveryStatus(enum.StrEnum):
    queued = "queued"
    sent = "sent"
    retrying = "retrying"
    failed = "failed"


class Delivery(db.Model):
    """One email of one subscription for one scheduled moment, and how sending it went.

    The unique (subscription, scheduled moment) pair is what makes a report go out once,
    however many schedulers fire or tasks are retried. A manual `send` is scheduled for
    the moment it was asked.
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint(
            "subscription_id", "scheduled_for", name="uq_deliveries_subscription_scheduled"
        ),
        Index("ix_deliveries_status_next_attempt", "status", "next_attempt_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    subscription_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("subscriptions.id"))
    scheduled_for: Mapped[datetime]
    manual: Mapped[bool] = mapped_column(default=False)
    # The summary the email carries: chosen at the first attempt, kept for the retries.
    summary_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("summaries.id"))
    status: Mapped[DeliveryStatus] = mapped_column(
        Enum(DeliveryStatus, name="delivery_status", native_enum=False, length=16),
        default=DeliveryStatus.queued,
    )
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # When the next attempt is due; a queued or retrying delivery long past it was lost
    # (broker, dead worker) and is handed out again by the dispatcher.
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=utcnow)
    # A worker sending it holds it until then, so two copies of the task never both send.
    claimed_until: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
