from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Enum, ForeignKey, Index, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from service.extensions import db
from service.types import utcnow


class ImportStatus(enum.StrEnum):
    running = "running"
    done = "done"
    failed = "failed"


class ImportJob(db.Model):
    """A CSV import of head counts: uploaded (its file kept here until a worker has run
    it) or run from the command line; its counts grow chunk by chunk as it runs."""

    __tablename__ = "import_jobs"
    __table_args__ = (Index("ix_import_jobs_status_created", "status", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id"))
    file_name: Mapped[str] = mapped_column(String(255))
    status: Mapped[ImportStatus] = mapped_column(
        Enum(ImportStatus, name="import_status", native_enum=False, length=16),
        default=ImportStatus.running,
    )
    # The uploaded file, until the import has run (then dropped: the reports are stored).
    content: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # When a worker last took the job; a job taken long ago and still running was lost.
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    # The rows in the file (known once it has been read whole), and what became of them.
    total_rows: Mapped[int | None]
    rows: Mapped[int] = mapped_column(default=0)
    stored: Mapped[int] = mapped_column(default=0)
    already_imported: Mapped[int] = mapped_column(default=0)
    failed: Mapped[int] = mapped_column(default=0)
    groups_created: Mapped[int] = mapped_column(default=0)
    # The first row errors, [{"row", "client_id", "field", "message"}], and whether more.
    errors: Mapped[list[dict[str, Any]]] = mapped_column(default=list)
    errors_truncated: Mapped[bool] = mapped_column(default=False)
    # Why the file as a whole was refused, or why the job stopped.
    error: Mapped[str | None] = mapped_column(Text)
