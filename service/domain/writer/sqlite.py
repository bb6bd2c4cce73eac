"""The writer on SQLite: executemany, with the report ids assigned here.

Every SQLite transaction that may write takes the write lock when it begins (BEGIN
IMMEDIATE, see service/sqlite.py), so nothing else writes between the look-ups and the
inserts: a key found free is still free when its report goes in, and the next ids are
the largest one plus one, in the order of the rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from service.domain.callers import Caller
from service.domain.headcounts import HeadCount
from service.domain.writer import Found, NewReport, Stored, Written, report_audit, storable
from service.extensions import db
from service.models import SADD_KEYS, VULNERABLE_KEYS, AuditEvent, Group, Report, ReportNeed

_reports = Report.__table__
_needs = ReportNeed.__table__
_audit = AuditEvent.__table__
_EMPTY_SADD = dict.fromkeys(SADD_KEYS)
_EMPTY_VULNERABLE = dict.fromkeys(VULNERABLE_KEYS)


class SqliteWriter:
    def write(
        self, caller: Caller, received_at: datetime, reports: Sequence[HeadCount]
    ) -> list[Written]:
        found = self._look_up(caller.token_id, reports)
        chosen = [
            n for n, (r, f) in enumerate(zip(reports, found, strict=True)) if storable(caller, r, f)
        ]
        rows = []
        for n in chosen:
            report, site_id = reports[n], found[n].site_id
            assert report.group_id is not None and site_id is not None
            rows.append(NewReport(report, report.client_id, report.group_id, site_id))
        ids: list[int | None] = [None] * len(reports)
        for n, report_id in zip(
            chosen, self.store(caller, received_at, rows, audit=True), strict=True
        ):
            ids[n] = report_id
        return [Written(f, report_id) for f, report_id in zip(found, ids, strict=True)]

    def _look_up(self, token_id: int | None, reports: Sequence[HeadCount]) -> list[Found]:
        sites = self.group_sites([r.group_id for r in reports if r.group_id is not None])
        corrected = [r.supersedes for r in reports if r.supersedes is not None]
        groups_of = (
            dict(
                db.session.execute(
                    select(Report.id, Report.group_id).where(Report.id.in_(corrected))
                ).all()
            )
            if corrected
            else {}
        )
        stored = self.stored_keys(token_id, [r.client_id for r in reports if r.client_id])
        return [
            Found(
                site_id=sites.get(r.group_id) if r.group_id is not None else None,
                supersedes_group=groups_of.get(r.supersedes) if r.supersedes else None,
                stored=stored.get(r.client_id) if r.client_id is not None else None,
            )
            for r in reports
        ]

    def stored_keys(self, token_id: int | None, keys: Sequence[str]) -> dict[str, Stored]:
        if not keys:
            return {}
        found: dict[str, Stored] = {}
        # At most 500 parameters a query, well inside SQLite's limit.
        for start in range(0, len(keys), 500):
            rows = db.session.execute(
                select(Report.client_id, Report.id, Report.fingerprint).where(
                    Report.token_id == token_id, Report.client_id.in_(keys[start : start + 500])
                )
            )
            found.update({key: Stored(report_id, fp) for key, report_id, fp in rows})
        return found

    def group_sites(self, group_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
        if not group_ids:
            return {}
        wanted = list(set(group_ids))
        sites: dict[uuid.UUID, str] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            sites.update(
                db.session.execute(select(Group.id, Group.site_id).where(Group.id.in_(chunk))).all()
            )
        return sites

    def store(
        self,
        caller: Caller,
        received_at: datetime,
        rows: Sequence[NewReport],
        *,
        audit: bool,
    ) -> list[int | None]:
        if not rows:
            return []
        first = db.session.execute(select(func.coalesce(func.max(Report.id), 0))).scalar_one() + 1
        ids = list(range(first, first + len(rows)))
        reports: list[dict[str, Any]] = []
        needs: list[dict[str, Any]] = []
        for row, report_id in zip(rows, ids, strict=True):
            report = row.report
            reports.append(
                {
                    "id": report_id,
                    "group_id": row.group_id,
                    "site_id": row.site_id,
                    "observed_at": report.observed_at,
                    "received_at": received_at,
                    "total": report.total,
                    **(report.sadd or _EMPTY_SADD),
                    **_EMPTY_VULNERABLE,
                    **(report.vulnerable or {}),
                    "note": report.note,
                    "supersedes_id": report.supersedes,
                    "client_id": row.key,
                    "fingerprint": report.fingerprint if row.key is not None else None,
                    "token_id": caller.token_id,
                }
            )
            needs.extend(
                {"report_id": report_id, "sector": n.sector, "severity": n.severity, "note": n.note}
                for n in report.needs
            )
        db.session.execute(_reports.insert(), reports)
        if needs:
            db.session.execute(_needs.insert(), needs)
        if audit:
            db.session.execute(
                _audit.insert(),
                [
                    {
                        "at": received_at,
                        "token_id": caller.token_id,
                        "actor": caller.name,
                        "action": "report.create",
                        "entity_type": "report",
                        "entity_id": str(report_id),
                        "before": None,
                        "after": report_audit(row),
                    }
                    for row, report_id in zip(rows, ids, strict=True)
                ],
            )
        return list(ids)


WRITER = SqliteWriter()
