from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import JSON, Enum, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from service.extensions import db
from service.types import utcnow

_JSON = JSON().with_variant(JSONB(), "postgresql")


class WebhookEndpoint(db.Model):
    """A URL that gets signed events (Standard Webhooks), registered by an admin, or by a
    reader for itself (`owner_token_id`): what it carries is what that token would see.

    The secret signs every delivery; after a rotation the previous one signs too, until
    `previous_secret_until`. A deleted endpoint (`deleted_at`) gets nothing more and
    keeps its delivery log; a disabled one (failures in a row) says why.
    """

    __tablename__ = "webhook_endpoints"
    __table_args__ = (Index("ix_webhook_endpoints_owner", "owner_token_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    owner_token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id"))
    url: Mapped[str] = mapped_column(String(2048))
    # Empty: every site.
    site_ids: Mapped[list[str]] = mapped_column(_JSON)
    formats: Mapped[list[str]] = mapped_column(_JSON)
    events: Mapped[list[str]] = mapped_column(_JSON)
    secret: Mapped[str] = mapped_column(String(100))
    previous_secret: Mapped[str | None] = mapped_column(String(100))
    previous_secret_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None]
    # Deliveries failed for good in a row; a delivered one sets it back to 0.
    consecutive_failures: Mapped[int] = mapped_column(default=0)
    disabled_at: Mapped[datetime | None]
    disabled_reason: Mapped[str | None] = mapped_column(Text)


class WebhookDeliveryStatus(enum.StrEnum):
    queued = "queued"
    delivering = "delivering"
    retrying = "retrying"
    delivered = "delivered"
    failed = "failed"


class WebhookDelivery(db.Model):
    """One event for one endpoint. The unique (endpoint, event, subject) key makes an
    event one delivery however many workers or schedulers create it; its `message_id` is
    the `webhook-id` of every attempt, so a receiver can drop repeats."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint(
            "endpoint_id", "event_type", "subject", name="uq_webhook_deliveries_event"
        ),
        UniqueConstraint("message_id", name="uq_webhook_deliveries_message_id"),
        Index("ix_webhook_deliveries_status_next_attempt", "status", "next_attempt_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    message_id: Mapped[str] = mapped_column(String(64))
    endpoint_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_endpoints.id"))
    event_type: Mapped[str] = mapped_column(String(32))
    # The summary's id, or "<summary id>:<flag key>" for a flag.
    subject: Mapped[str] = mapped_column(String(300))
    summary_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("summaries.id"))
    payload: Mapped[dict] = mapped_column(_JSON)
    status: Mapped[WebhookDeliveryStatus] = mapped_column(
        Enum(WebhookDeliveryStatus, name="webhook_delivery_status", native_enum=False, length=16),
        default=WebhookDeliveryStatus.queued,
    )
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=utcnow)
    # A worker sending it holds it until then, so two copies of the task never both send.
    claimed_until: Mapped[datetime | None]
    last_response_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None]


class WebhookAttempt(db.Model):
    """One try at a delivery: when, how long, and the answer (a status code) or error."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_delivery", "delivery_id", "attempted_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE")
    )
    attempted_at: Mapped[datetime] = mapped_column(default=utcnow)
    duration_ms: Mapped[int]
    response_code: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
