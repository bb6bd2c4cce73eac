from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.extensions import db
from service.types import utcnow

SADD_KEYS = (
    "female_0_4",
    "female_5_17",
    "female_18_59",
    "female_60_plus",
    "male_0_4",
    "male_5_17",
    "male_18_59",
    "male_60_plus",
)
VULNERABLE_KEYS = (
    "pregnant_lactating",
    "disabled",
    "unaccompanied_minors",
    "injured",
    "chronically_ill",
)
NEEDS_SECTORS = (
    "water",
    "food",
    "shelter",
    "health",
    "wash",
    "protection",
    "transport",
    "fuel",
    "nfi",
)

_sadd_all_or_none = " AND ".join(f"{k} IS NULL" for k in SADD_KEYS)
_sadd_sum = " + ".join(SADD_KEYS)


def _report_constraints() -> tuple[CheckConstraint, ...]:
    checks = [CheckConstraint("total >= 0", name="total_non_negative")]
    for key in SADD_KEYS:
        checks.append(CheckConstraint(f"{key} IS NULL OR {key} >= 0", name=f"{key}_non_negative"))
    checks.append(
        CheckConstraint(
            f"({_sadd_all_or_none}) OR ({_sadd_sum} = total)", name="sadd_sums_to_total"
        )
    )
    for key in VULNERABLE_KEYS:
        checks.append(
            CheckConstraint(
                f"{key} IS NULL OR ({key} >= 0 AND {key} <= total)", name=f"{key}_range"
            )
        )
    return tuple(checks)


class Report(db.Model):
    """One head count of one group at one moment. Append-only: corrections are new rows.

    The integer id doubles as the order of receipt, the tie-breaker of the counting rule.

    `client_id` is the report's idempotency key (the Idempotency-Key header, a batch
    item's or an import row's client_id, or a key an import derives from the row), and
    `fingerprint` the hash of what was sent with it. The unique (token, key) pair is what
    makes "stored once" hold: no timing, retry or takeover can store a second report for
    one token's key, and a resend is answered from the report the key names.
    """

    __tablename__ = "reports"
    __table_args__ = (
        *_report_constraints(),
        UniqueConstraint("token_id", "client_id", name="uq_reports_token_key"),
        # The counting rule walks this index: latest observation per group, at or before T.
        Index("ix_reports_group_observed", "group_id", "observed_at", "id"),
        Index("ix_reports_site_observed", "site_id", "observed_at"),
        Index("ix_reports_received", "received_at"),
        # "Is this report corrected by a later one?" (conflict flags) without a scan.
        Index(
            "ix_reports_supersedes",
            "supersedes_id",
            postgresql_where=text("supersedes_id IS NOT NULL"),
            sqlite_where=text("supersedes_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("groups.id"))
    # The group's site when the report was received (groups move; reports do not).
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"))
    observed_at: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    total: Mapped[int]
    female_0_4: Mapped[int | None]
    female_5_17: Mapped[int | None]
    female_18_59: Mapped[int | None]
    female_60_plus: Mapped[int | None]
    male_0_4: Mapped[int | None]
    male_5_17: Mapped[int | None]
    male_18_59: Mapped[int | None]
    male_60_plus: Mapped[int | None]
    pregnant_lactating: Mapped[int | None]
    disabled: Mapped[int | None]
    unaccompanied_minors: Mapped[int | None]
    injured: Mapped[int | None]
    chronically_ill: Mapped[int | None]
    note: Mapped[str | None] = mapped_column(Text)
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("reports.id"))
    client_id: Mapped[str | None] = mapped_column(String(255))
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id"))

    needs: Mapped[list[ReportNeed]] = relationship(
        cascade="all", lazy="selectin", order_by="ReportNeed.id"
    )

    @property
    def sadd(self) -> dict[str, int] | None:
        values = {k: getattr(self, k) for k in SADD_KEYS}
        return None if all(v is None for v in values.values()) else values

    @property
    def vulnerable(self) -> dict[str, int] | None:
        values = {k: getattr(self, k) for k in VULNERABLE_KEYS if getattr(self, k) is not None}
        return values or None


class ReportNeed(db.Model):
    """A need reported with a head count: sector, severity 1-5 and a note."""

    __tablename__ = "report_needs"
    __table_args__ = (
        CheckConstraint("severity BETWEEN 1 AND 5", name="severity_range"),
        CheckConstraint(
            "sector IN (" + ", ".join(f"'{s}'" for s in NEEDS_SECTORS) + ")", name="sector_known"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id"), index=True)
    sector: Mapped[str] = mapped_column(String(32))
    severity: Mapped[int]
    note: Mapped[str | None] = mapped_column(Text)
