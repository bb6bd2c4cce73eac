from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.extensions import db
from service.types import utcnow


class GroupStatus(enum.StrEnum):
    waiting = "waiting"
    in_transit = "in_transit"
    departed = "departed"
    closed = "closed"


class Group(db.Model):
    """People waiting together at a site: a convoy, a village, families in one hangar."""

    __tablename__ = "groups"
    __table_args__ = (Index("ix_groups_site_status", "site_id", "status"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"))
    label: Mapped[str] = mapped_column(String(200))
    origin: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[GroupStatus] = mapped_column(
        Enum(GroupStatus, name="group_status", native_enum=False, length=32),
        default=GroupStatus.waiting,
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    # Loaded when read (a group's own page, a move): not with every group, so a report's
    # POST and a page of groups do not pay a query for it.
    moves: Mapped[list[GroupMove]] = relationship(
        back_populates="group", order_by="GroupMove.moved_at", cascade="all"
    )


class GroupMove(db.Model):
    """A group's move from one site to another; the group's site history."""

    __tablename__ = "group_moves"
    __table_args__ = (Index("ix_group_moves_group_moved", "group_id", "moved_at", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("groups.id"))
    from_site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"))
    to_site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"))
    moved_at: Mapped[datetime] = mapped_column(default=utcnow)
    token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id"))

    group: Mapped[Group] = relationship(back_populates="moves")


class GroupStatusChange(db.Model):
    """A group's change of status, so a summary as of a past moment sees the status then."""

    __tablename__ = "group_status_changes"
    __table_args__ = (
        Index("ix_group_status_changes_group_changed", "group_id", "changed_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("groups.id"))
    from_status: Mapped[GroupStatus] = mapped_column(
        Enum(GroupStatus, name="group_status", native_enum=False, length=32)
    )
    to_status: Mapped[GroupStatus] = mapped_column(
        Enum(GroupStatus, name="group_status", native_enum=False, length=32)
    )
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id"))
