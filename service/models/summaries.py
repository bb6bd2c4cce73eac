from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Enum, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from service.extensions import db
from service.types import utcnow


class SummaryStatus(enum.StrEnum):
    pending = "pending"
    ready = "ready"
    failed = "failed"


class Summary(db.Model):
    """A situation summary: requested, then built once by a worker into an immutable document.

    Scheduled summaries carry their `period` (the period boundary); its uniqueness is what
    makes "one summary per period" hold however many schedulers fire. Summaries asked
    for (no period) are unique by `as_of`: the same moment asked twice is one summary.
    """

    __tablename__ = "summaries"
    __table_args__ = (
        Index("ix_summaries_status_as_of", "status", "as_of"),
        Index("ix_summaries_as_of", "as_of"),
        Index(
            "uq_summaries_on_demand_as_of",
            "as_of",
            unique=True,
            sqlite_where=text("period IS NULL"),
            postgresql_where=text("period IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    as_of: Mapped[datetime]
    period: Mapped[datetime | None] = mapped_column(unique=True)
    status: Mapped[SummaryStatus] = mapped_column(
        Enum(SummaryStatus, name="summary_status", native_enum=False, length=16),
        default=SummaryStatus.pending,
    )
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    requested_by: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id"))
    # When a build was last handed to the broker; the sweep re-sends stale ones.
    enqueued_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    generated_at: Mapped[datetime | None]
    document: Mapped[dict[str, Any] | None]
    etag: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
