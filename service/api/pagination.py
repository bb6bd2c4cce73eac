"""Paging a SQLAlchemy select in the database (flask-smorest's X-Pagination header)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flask_smorest import Page
from sqlalchemy import func, select

from service.extensions import db

_MAX_OFFSET = 2**63 - 1


class QueryPage(Page):
    """Pages a `select(Model)`; subclasses may `present` each page's rows."""

    def present(self, rows: Sequence[Any]) -> Sequence[Any]:
        return rows

    @property
    def items(self) -> Sequence[Any]:
        first = self.page_params.first_item
        size = self.page_params.last_item + 1 - first
        if first > _MAX_OFFSET:
            # No table holds that many rows; and PostgreSQL refuses an OFFSET past bigint.
            return self.present([])
        rows = db.session.execute(self.collection.offset(first).limit(size)).scalars().all()
        return self.present(rows)

    @property
    def item_count(self) -> int:
        counted = select(func.count()).select_from(self.collection.order_by(None).subquery())
        return db.session.execute(counted).scalar_one()
