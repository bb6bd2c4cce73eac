from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from service.extensions import db
from service.types import utcnow


class IdempotencyRecord(db.Model):
    """An Idempotency-Key (or batch `client_id`) claimed by one token.

    The unique (token, key) pair is what decides between simultaneous resends.
    `response_status` is NULL while the first request is still in flight; the answer to a
    resend is rendered again from `report_id` (reports are append-only).
    """

    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("token_id", "key", name="uq_idempotency_records_token_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id"))
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    claimed_at: Mapped[datetime] = mapped_column(default=utcnow)
    response_status: Mapped[int | None]
    report_id: Mapped[int | None] = mapped_column(ForeignKey("reports.id"))
