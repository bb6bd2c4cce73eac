from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import Column, Enum, ForeignKey, String, Table
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.extensions import db
from service.models.sites import Site
from service.types import utcnow


class Role(enum.StrEnum):
    admin = "admin"
    coordinator = "coordinator"
    reader = "reader"


token_sites = Table(
    "token_sites",
    db.metadata,
    Column("token_id", ForeignKey("api_tokens.id", ondelete="CASCADE"), primary_key=True),
    Column("site_id", ForeignKey("sites.id"), primary_key=True),
)


class ApiToken(db.Model):
    """A bearer token. Only its SHA-256 is stored; the secret is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(Enum(Role, name="role", native_enum=False, length=16))
    # The first characters of the token, so people can tell tokens apart in a listing.
    prefix: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]

    sites: Mapped[list[Site]] = relationship(secondary=token_sites, lazy="selectin")

    @property
    def site_ids(self) -> list[str]:
        return sorted(site.id for site in self.sites)


class DashboardSession(db.Model):
    """A browser signed in to the dashboard. Its signed cookie names this row (never the
    token); signing out ends the row, so a copy of the cookie is refused afterwards."""

    __tablename__ = "dashboard_sessions"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
